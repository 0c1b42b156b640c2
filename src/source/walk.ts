import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import { ExternalSorter } from '../spill/external-sort.js'
import { LIMITS } from '../limits.js'
import { lstatFiles } from '../native-addon.js'

export type SourceType = 'file' | 'dir' | 'symlink'

/**
 * What packer keeps of a source entry's lstat: the fields it stores or checks. (A whole BigIntStats, with its four
 * Dates, is about 1 KB.)
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
  /** Where to read it: a path on disk, or an object's `s3://BUCKET/KEY`. */
  abs: Buffer
  type: SourceType
  /** For an object (no device or inode: both 0), its size, mtime and the mode and owner packer gives it. */
  stat: SourceStat
  /**
   * What names this version of the content where the source has such a name (an S3 ETag): with size and mtime, what
   * a read and a resumed pack check instead of device and inode.
   */
  version?: string
  /** symlink: its target, never followed. */
  target?: Buffer
}

/**
 * Entries of one directory (`dir`, '' for the root), in name order: all of them, or the next part of them. Every
 * directory has at least one run (an empty directory, one without entries).
 */
export interface SourceRun { dir: Buffer, entries: SourceEntry[] }

export interface WalkedSource {
  /** True when SOURCE is a single file rather than a directory: one run of one entry. */
  single: boolean
  /** The tree in the file table's order (FORMAT.md §5): each directory's entries, directories depth-first. */
  runs: AsyncIterable<SourceRun>
}

export interface WalkOptions {
  warn: (msg: string) => void
  /** A private directory for the names of directories too large to sort in memory. */
  tmpDir: string
  /** Names of one directory held in memory before they are sorted on disk. */
  namesInMemory?: number
}

const SLASH = Buffer.from('/')
const NUL = Buffer.from([0])
/** Entries handed on at a time (and lstat'ed together). */
const RUN = 256
/** Names one native lstat call takes: a run goes out in several, so that libuv's threads share a cold disk's waits. */
const LSTAT_GROUP = 32

function typeOf (st: import('node:fs').BigIntStats): SourceType | string {
  return typeOfMode(st.mode)
}

/** An entry's type from its mode's format bits (S_IFMT). */
function typeOfMode (mode: bigint): SourceType | string {
  switch (Number(mode) & 0o170000) {
    case 0o100000: return 'file'
    case 0o040000: return 'dir'
    case 0o120000: return 'symlink'
    case 0o010000: return 'FIFO'
    case 0o140000: return 'socket'
    case 0o020000: case 0o060000: return 'device'
    default: return 'special file'
  }
}

function sourceError (what: Buffer | string, err: unknown): PackerError {
  const shown = typeof what === 'string' ? what : displayPath(what)
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT') return new PackerError('SOURCE', `${shown}: vanished while packing (it was listed, then removed); rerun when the source is stable`, { subject: shown, cause: err })
  if (e.code === 'EACCES' || e.code === 'EPERM') return new PackerError('SOURCE', `${shown}: permission denied; run packer as a user who can read it, or move it out of the source`, { subject: shown, cause: err })
  return new PackerError('SOURCE', `${shown}: cannot read (${e.code ?? e.message})`, { subject: shown, cause: err })
}

/**
 * A directory's names in byte order, whatever their number: sorted in memory, or on disk past `limit` names.
 * `sorted()` may be read once.
 */
class SortedNames {
  readonly #limit: number
  readonly #tmpDir: string
  #names: Buffer[] = []
  #sorter: ExternalSorter | null = null

  constructor (limit: number, tmpDir: string) { this.#limit = limit; this.#tmpDir = tmpDir }

  async add (name: Buffer): Promise<void> {
    if (this.#sorter !== null) return await this.#sorter.add(name)
    this.#names.push(name)
    if (this.#names.length > this.#limit) {
      this.#sorter = new ExternalSorter({ dir: this.#tmpDir, memoryLimit: LIMITS.sortMemory, keyBytes: Infinity })
      for (const n of this.#names) await this.#sorter.add(n)
      this.#names = []
    }
  }

  async * sorted (): AsyncGenerator<Buffer> {
    if (this.#sorter === null) {
      yield * this.#names.sort(Buffer.compare)
      return
    }
    for await (const n of this.#sorter.sorted()) yield Buffer.from(n)
  }

  async dispose (): Promise<void> { await this.#sorter?.dispose() }
}

/**
 * Walks SOURCE in the file table's order: the root's entries, then each directory's, depth-first, names by bytes, so
 * the same tree always packs the same way. Memory does not grow with the tree: a directory is read with opendir (its
 * names sorted on disk when there are very many), its entries handed on RUN at a time, and the names of its
 * subdirectories kept (on disk too when many) only until they are walked. Symlinks are recorded, never followed;
 * devices, FIFOs and sockets are skipped with a warning naming each.
 */
export async function walkSource (source: string, opts: WalkOptions): Promise<WalkedSource> {
  let top: import('node:fs').BigIntStats
  try {
    top = await fs.stat(source, { bigint: true })
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new PackerError('SOURCE', `source ${source} does not exist; give an existing directory or file`, { subject: source })
    throw sourceError(source, err)
  }
  const abs = Buffer.from(path.resolve(source))
  if (top.isFile()) {
    const entry: SourceEntry = { path: Buffer.from(path.basename(source)), abs, type: 'file', stat: sourceStat(top) }
    return { single: true, runs: (async function * () { yield { dir: Buffer.alloc(0), entries: [entry] } })() }
  }
  if (!top.isDirectory()) throw new PackerError('SOURCE', `source ${source} is a ${typeOf(top)}, not a directory or regular file`, { subject: source })
  return { single: false, runs: walkTree((relDir) => listLocalDirectory(abs, relDir, opts), opts) }
}

/**
 * One directory's entries (`relDir`, '' for the root), in name order, in batches: what a source lists a directory as.
 * Subdirectories are entries of type 'dir'; walkTree visits them afterwards.
 */
export type ListDirectory = (relDir: Buffer) => AsyncIterable<SourceEntry[]>

/** The last component of an entry's path in directory `relDir`. */
function nameIn (relDir: Buffer, e: SourceEntry): Buffer {
  return relDir.length === 0 ? e.path : e.path.subarray(relDir.length + 1)
}

/**
 * Any source's tree in the file table's order, from a way to list one directory: each directory's entries as they
 * come, then its subdirectories depth-first in name order. The names of subdirectories still to walk are kept on disk
 * past `namesInMemory` per directory.
 */
export async function * walkTree (list: ListDirectory, opts: WalkOptions): AsyncGenerator<SourceRun> {
  const limit = opts.namesInMemory ?? LIMITS.namesInMemory
  // Directories left to walk, depth-first: each level's subdirectories in name order.
  const stack: Array<{ relDir: Buffer, subdirs: AsyncIterator<Buffer>, list: SortedNames }> = []
  const visit = async function * (relDir: Buffer): AsyncGenerator<SourceRun> {
    const subdirs = new SortedNames(limit, opts.tmpDir)
    try {
      let yielded = false
      for await (const entries of list(relDir)) {
        for (const e of entries) if (e.type === 'dir') await subdirs.add(nameIn(relDir, e))
        if (entries.length === 0) continue
        yielded = true
        yield { dir: relDir, entries }
      }
      if (!yielded) yield { dir: relDir, entries: [] }
    } catch (err) {
      await subdirs.dispose()
      throw err
    }
    stack.push({ relDir, subdirs: subdirs.sorted()[Symbol.asyncIterator](), list: subdirs })
  }
  try {
    yield * visit(Buffer.alloc(0))
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!
      const next = await top.subdirs.next()
      if (next.done === true) {
        await top.list.dispose()
        stack.pop()
        continue
      }
      const name = next.value
      yield * visit(top.relDir.length === 0 ? Buffer.from(name) : Buffer.concat([top.relDir, SLASH, name]))
    }
  } finally {
    for (const s of stack) await s.list.dispose()
  }
}

/** A local directory's entries in name order, RUN at a time (its names sorted on disk when very many). */
async function * listLocalDirectory (rootAbs: Buffer, relDir: Buffer, opts: WalkOptions): AsyncGenerator<SourceEntry[]> {
  const absDir = relDir.length === 0 ? rootAbs : Buffer.concat([rootAbs, SLASH, relDir])
  const names = new SortedNames(opts.namesInMemory ?? LIMITS.namesInMemory, opts.tmpDir)
  try {
    let dir: import('node:fs').Dir
    try {
      dir = await fs.opendir(absDir, { encoding: 'buffer' as any, bufferSize: 256 })
    } catch (err) { throw sourceError(absDir, err) }
    try {
      for await (const d of dir) await names.add(d.name as unknown as Buffer)
    } catch (err) { throw sourceError(absDir, err) }
    let batch: Buffer[] = []
    for await (const name of names.sorted()) {
      batch.push(name)
      if (batch.length === RUN) {
        yield (await statBatch(absDir, relDir, batch, opts.warn)).filter((e) => e !== null)
        batch = []
      }
    }
    if (batch.length > 0) yield (await statBatch(absDir, relDir, batch, opts.warn)).filter((e) => e !== null)
  } finally {
    await names.dispose()
  }
}

/**
 * lstat (and readlink) a batch of names of one directory together: an entry per name, null for specials (skipped).
 * With the addon, LSTAT_GROUP names a call (one promise, no BigIntStats per name: for a tree of small files these
 * were ~10 % of pack's main thread); a name it cannot stat is done again by fs.promises, whose error is reported.
 */
async function statBatch (absDir: Buffer, relDir: Buffer, names: Buffer[], warn: (m: string) => void): Promise<Array<SourceEntry | null>> {
  const groups: Array<Promise<Array<SourceEntry | null>>> = []
  for (let i = 0; i < names.length; i += LSTAT_GROUP) groups.push(statGroup(absDir, relDir, names.slice(i, i + LSTAT_GROUP), warn))
  return (await Promise.all(groups)).flat()
}

async function statGroup (absDir: Buffer, relDir: Buffer, names: Buffer[], warn: (m: string) => void): Promise<Array<SourceEntry | null>> {
  const joined = Buffer.concat(names.flatMap((name) => [absDir, SLASH, name, NUL]))
  const abs: Buffer[] = []
  for (let at = 0, i = 0; i < names.length; i++) {
    const end = at + absDir.length + 1 + names[i]!.length
    abs.push(joined.subarray(at, end))
    at = end + 1
  }
  const rel = (name: Buffer): Buffer => relDir.length === 0 ? Buffer.from(name) : Buffer.concat([relDir, SLASH, name])
  const batch = await lstatFiles(joined, names.length)
  if (batch === null) return await Promise.all(names.map(async (name, i) => await statOne(abs[i]!, rel(name), warn)))
  const failed = new Set(batch.failures.map(([i]) => i))
  const s = batch.stats
  const entries = names.map((name, i): SourceEntry | null => {
    if (failed.has(i)) return null
    const k = i * 7
    const stat: SourceStat = { dev: s[k]!, ino: s[k + 1]!, size: s[k + 2]!, mtimeNs: s[k + 3]!, mode: s[k + 4]!, uid: s[k + 5]!, gid: s[k + 6]! }
    return entryOf(abs[i]!, rel(name), stat, batch.targets[i], warn)
  })
  for (const i of failed) entries[i] = await statOne(abs[i]!, rel(names[i]!), warn)
  return entries
}

/** One name's lstat (and readlink) through fs.promises: without the addon, or again where it failed. */
async function statOne (abs: Buffer, rel: Buffer, warn: (m: string) => void): Promise<SourceEntry | null> {
  let st: import('node:fs').BigIntStats
  try {
    st = await fs.lstat(abs, { bigint: true })
  } catch (err) {
    throw sourceError(abs, err)
  }
  let target: Buffer | undefined
  if (st.isSymbolicLink()) {
    try { target = await fs.readlink(abs, { encoding: 'buffer' }) } catch (err) { throw sourceError(abs, err) }
  }
  return entryOf(abs, rel, sourceStat(st), target, warn)
}

/** The entry of a name lstat'ed as `stat` (a symlink with its target), or null (with a warning) for a special file. */
function entryOf (abs: Buffer, rel: Buffer, stat: SourceStat, target: Buffer | undefined, warn: (m: string) => void): SourceEntry | null {
  const type = typeOfMode(stat.mode)
  if (type === 'file' || type === 'dir') return { path: rel, abs, type, stat }
  if (type === 'symlink') return { path: rel, abs, type, stat, target: target! }
  warn(`skipping ${displayPath(abs)}: a ${type} cannot be stored`)
  return null
}
