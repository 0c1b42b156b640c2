import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { displayPath } from '../format/stored-path.js'

export type SourceType = 'file' | 'dir' | 'symlink'

/**
 * What packer keeps of a source entry's lstat: the fields it stores or checks. (A whole BigIntStats, with its four
 * Dates, is about 1 KB; for millions of files that mattered.)
 */
export interface SourceStat {
  dev: bigint
  ino: bigint
  size: bigint
  mtimeNs: bigint
  mode: bigint
  uid: bigint
  gid: bigint
}

export function sourceStat (st: import('node:fs').BigIntStats): SourceStat {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, mode: st.mode, uid: st.uid, gid: st.gid }
}

export interface SourceEntry {
  /** Path inside the archive, as bytes ('/'-separated, never empty). */
  path: Buffer
  /** Where to read it on disk. */
  abs: Buffer
  type: SourceType
  stat: SourceStat
  /** symlink: its target, never followed. */
  target?: Buffer
}

export interface SourceTree {
  entries: SourceEntry[]
  /** True when SOURCE is a single file rather than a directory. */
  single: boolean
  fileCount: number
  totalBytes: number
}

const SLASH = Buffer.from('/')

function typeOf (st: import('node:fs').BigIntStats): SourceType | string {
  if (st.isFile()) return 'file'
  if (st.isDirectory()) return 'dir'
  if (st.isSymbolicLink()) return 'symlink'
  if (st.isFIFO()) return 'FIFO'
  if (st.isSocket()) return 'socket'
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device'
  return 'special file'
}

function sourceError (what: Buffer | string, err: unknown): PackerError {
  const shown = typeof what === 'string' ? what : displayPath(what)
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT') return new PackerError('SOURCE', `${shown}: vanished while packing (it was listed, then removed); rerun when the source is stable`, { subject: shown, cause: err })
  if (e.code === 'EACCES' || e.code === 'EPERM') return new PackerError('SOURCE', `${shown}: permission denied; run packer as a user who can read it, or move it out of the source`, { subject: shown, cause: err })
  return new PackerError('SOURCE', `${shown}: cannot read (${e.code ?? e.message})`, { subject: shown, cause: err })
}

/**
 * Lists the source tree: depth-first, parents before children, siblings in byte order of their names, so the same
 * tree always packs the same way. Symlinks are recorded, never followed; devices, FIFOs and sockets are skipped with
 * a warning naming each.
 */
export async function walkSource (source: string, warn: (msg: string) => void, onProgress?: (files: number, bytes: number) => void): Promise<SourceTree> {
  let top: import('node:fs').BigIntStats
  try {
    top = await fs.stat(source, { bigint: true })
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new PackerError('SOURCE', `source ${source} does not exist; give an existing directory or file`, { subject: source })
    throw sourceError(source, err)
  }
  const tree: SourceTree = { entries: [], single: false, fileCount: 0, totalBytes: 0 }
  if (top.isFile()) {
    tree.single = true
    tree.entries.push({ path: Buffer.from(path.basename(source)), abs: Buffer.from(path.resolve(source)), type: 'file', stat: sourceStat(top) })
    tree.fileCount = 1
    tree.totalBytes = Number(top.size)
    return tree
  }
  if (!top.isDirectory()) throw new PackerError('SOURCE', `source ${source} is a ${typeOf(top)}, not a directory or regular file`, { subject: source })

  const visit = async (absDir: Buffer, relDir: Buffer | null): Promise<void> => {
    let names: Buffer[]
    try {
      names = await fs.readdir(absDir, { encoding: 'buffer' })
    } catch (err) {
      throw sourceError(absDir, err)
    }
    names.sort(Buffer.compare)
    for (const name of names) {
      const abs = Buffer.concat([absDir, SLASH, name])
      const rel = relDir === null ? name : Buffer.concat([relDir, SLASH, name])
      let st: import('node:fs').BigIntStats
      try {
        st = await fs.lstat(abs, { bigint: true })
      } catch (err) {
        throw sourceError(abs, err)
      }
      const type = typeOf(st)
      if (type === 'file') {
        tree.entries.push({ path: rel, abs, type, stat: sourceStat(st) })
        tree.fileCount++
        tree.totalBytes += Number(st.size)
        if (tree.fileCount % 1000 === 0) onProgress?.(tree.fileCount, tree.totalBytes)
      } else if (type === 'symlink') {
        let target: Buffer
        try { target = await fs.readlink(abs, { encoding: 'buffer' }) } catch (err) { throw sourceError(abs, err) }
        tree.entries.push({ path: rel, abs, type, stat: sourceStat(st), target })
      } else if (type === 'dir') {
        tree.entries.push({ path: rel, abs, type, stat: sourceStat(st) })
        await visit(abs, rel)
      } else {
        warn(`skipping ${displayPath(abs)}: a ${type} cannot be stored`)
      }
    }
  }
  await visit(Buffer.from(path.resolve(source)), null)
  return tree
}
