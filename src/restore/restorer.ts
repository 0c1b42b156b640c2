import fs from 'node:fs/promises'
import { constants, type BigIntStats } from 'node:fs'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import { formatSize } from '../format/size.js'
import type { TableEntry } from '../format/table-entry.js'
import { setFileTimesNs } from '../native-addon.js'
import { faultPoint } from '../fault.js'
import { WriteQueue } from '../car/write-queue.js'
import type { CarSet } from './car-set.js'
import { subtree, type NumberedEntry } from './set-table.js'
import { MountReader } from '../mount/reader.js'

export interface RestoreOptions {
  dest: string
  /** Archive paths to restore (with everything below them); empty: the whole tree. */
  paths: Buffer[]
  overwrite: boolean
  /** Restore owners (needs root). */
  sameOwner: boolean
  warn: (msg: string) => void
  progress?: (event: { type: 'file', path: Buffer, bytes: number } | { type: 'read', bytes: number }) => void
}

export interface RestoreResult {
  files: number
  bytes: number
  dirs: number
  symlinks: number
  /** Files and symlinks found already restored (an earlier, interrupted unpack into the same DEST). */
  already: number
  failed: Array<{ path: string, error: string }>
}

/** True when `p` (whose lstat is `st`) already holds exactly what `e` restores: what an interrupted unpack left complete. */
async function alreadyRestored (p: Buffer, st: BigIntStats, e: TableEntry): Promise<boolean> {
  if (e.type === 'symlink') return st.isSymbolicLink() && (await fs.readlink(p, { encoding: 'buffer' })).equals(e.target!)
  return st.isFile() && Number(st.size) === e.size && st.mtimeNs === e.mtimeNs && Number(st.mode & 0o7777n) === e.mode
}

const SLASH = 0x2f

function parentOf (p: Buffer): Buffer | null {
  const i = p.lastIndexOf(SLASH)
  return i < 0 ? null : p.subarray(0, i)
}

/**
 * unpack: restores entries of a set under DEST. Files are written under a temporary name and renamed only when
 * complete and verified; symlinks are created last and never followed (every parent is a directory this run made or
 * found as a real directory), so a stored `a -> /etc` cannot make a later `a/x` write outside DEST. A file that cannot
 * be restored (missing CAR, damaged block) leaves nothing behind under its name and does not stop the others.
 */
export async function restore (set: CarSet, opts: RestoreOptions): Promise<RestoreResult> {
  const chosen = await selectEntries(set, opts.paths)
  const dest = path.resolve(opts.dest)
  const created = await fs.mkdir(dest, { recursive: true }).catch((err) => {
    throw new PackerError('OUTPUT', `cannot create destination ${dest}: ${(err as Error).message}`, { subject: dest, cause: err })
  })
  const target = (e: TableEntry): Buffer => Buffer.concat([Buffer.from(dest + '/'), e.path])

  // A file that is already there, complete and with its mtime set, was restored by an interrupted run: skip it.
  // (Nothing is there when DEST was made just now.)
  const done = new Set<TableEntry>()
  if (created === undefined) {
    const present = chosen.filter((e) => e.type !== 'dir')
    for (let i = 0; i < present.length; i += 64) { // lstats 64 at a time: one at a time cost seconds for 20 000 files
      const batch = present.slice(i, i + 64)
      const stats = await Promise.all(batch.map(async (e) => await fs.lstat(target(e), { bigint: true }).catch(() => null)))
      for (const [j, e] of batch.entries()) {
        const st = stats[j]
        if (st === null || st === undefined) continue
        if (await alreadyRestored(target(e), st, e)) { done.add(e); continue }
        if (!opts.overwrite) throw new PackerError('EXISTS', `${displayPath(target(e))} already exists; remove it, restore elsewhere, or pass --overwrite`, { subject: displayPath(target(e)) })
      }
    }
    await removeStaleTemporaries(dest, chosen, target)
  }
  const result: RestoreResult = { files: 0, bytes: 0, dirs: 0, symlinks: 0, already: done.size, failed: [] }
  // The mount's reader: worker threads pread, hash-check and decrypt leaves ahead of each file being written, so this
  // thread only moves plaintext to the files (reading through FileView.stream decrypted here: unpack ran at ~0.6 of
  // the speed). 32 MiB of slots hold what the 8 files in progress read ahead (64 MiB: as fast, 30 MB more RSS).
  const view = new MountReader(set, { cacheSize: 32 << 20, readAhead: 2 << 20 })
  try {
    for (const e of chosen) {
      if (e.type !== 'dir') continue
      const p = target(e)
      try {
        await fs.mkdir(p, { mode: 0o700 })
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err
        const st = await fs.lstat(p)
        if (!st.isDirectory()) throw new PackerError('EXISTS', `${displayPath(p)} exists and is not a directory; remove it or restore elsewhere`, { subject: displayPath(p) })
      }
      await fs.chmod(p, 0o700 | e.mode) // writable by us until its own mode is set at the end
      result.dirs++
    }
    const files = chosen.filter((e) => e.type === 'file')
    const restored = new Set<TableEntry>()
    await forEachBounded(files, (e) => Math.min(e.size!, 16 << 20), async (e) => {
      if (done.has(e)) { opts.progress?.({ type: 'read', bytes: e.size! }); return }
      try {
        await restoreFile(view, e, target(e), opts)
        restored.add(e)
        result.files++
        result.bytes += e.size!
        opts.progress?.({ type: 'file', path: e.path, bytes: e.size! })
      } catch (err) {
        if (isErrno(err, 'ENOSPC')) {
          const left = files.reduce((n, f) => n + (done.has(f) || restored.has(f) ? 0 : f.size!), 0)
          throw new PackerError('NO_SPACE', `no space left in ${dest} while restoring ${displayPath(e.path)} (the files not yet restored need about ${formatSize(left)}); free space and rerun: restored files are kept`, { subject: dest, cause: err })
        }
        if (!(err instanceof PackerError) || err.code === 'USAGE' || err.code === 'EXISTS') throw err
        result.failed.push({ path: displayPath(e.path), error: err.message })
        opts.warn(`not restored: ${err.message}`)
      }
    })
    for (const e of chosen) {
      if (e.type !== 'symlink' || done.has(e)) continue
      const p = target(e)
      if (opts.overwrite) await fs.rm(p, { force: true })
      await fs.symlink(e.target!, p)
      await applyMetadata(p, e, opts, false)
      result.symlinks++
    }
    // Directories last and deepest first: writing into a directory changes its mtime.
    for (const e of [...chosen].reverse()) {
      if (e.type === 'dir') await applyMetadata(target(e), e, opts, true)
    }
  } catch (err) {
    if (isErrno(err, 'ENOSPC')) throw new PackerError('NO_SPACE', `no space left in ${dest}; free space and rerun`, { subject: dest, cause: err })
    throw err
  } finally {
    await view.close()
    await set.close()
  }
  return result
}

const TMP_PREFIX = '.packer-tmp-'

/**
 * Runs `fn` over `items`, several at a time (small files' open/write/rename round trips overlap), with at most 8 at
 * once and at most 48 MiB of `weight` (bytes a file may hold in memory) in flight. The first error stops new work
 * and is thrown once the running ones have finished, so no temporary file is left behind by a half-stopped run.
 */
async function forEachBounded<T> (items: T[], weight: (t: T) => number, fn: (t: T) => Promise<void>): Promise<void> {
  const MAX_RUNNING = 8
  const MAX_WEIGHT = 48 << 20
  let next = 0
  let running = 0
  let inFlight = 0
  let failure: { err: unknown } | undefined
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (failure === undefined && next < items.length && running < MAX_RUNNING &&
             (running === 0 || inFlight + weight(items[next]) <= MAX_WEIGHT)) {
        const item = items[next++]
        const w = weight(item)
        running++
        inFlight += w
        fn(item).catch((err) => { failure ??= { err } }).finally(() => {
          running--
          inFlight -= w
          pump()
        })
      }
      if (running === 0 && (failure !== undefined || next >= items.length)) resolve()
    }
    pump()
  })
  if (failure) throw failure.err
}

function processAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return isErrno(err, 'EPERM') }
}

/** Removes the temporary files of an unpack that was killed (its pid is gone) from the directories this one writes. */
async function removeStaleTemporaries (dest: string, chosen: TableEntry[], target: (e: TableEntry) => Buffer): Promise<void> {
  const dirs = [Buffer.from(dest), ...chosen.filter((e) => e.type === 'dir').map(target)]
  for (const dir of dirs) {
    const names = await fs.readdir(dir, { encoding: 'buffer' }).catch(() => [] as Buffer[])
    for (const n of names) {
      const m = /^\.packer-tmp-(\d+)-/.exec(n.toString('latin1'))
      if (m && !processAlive(Number(m[1]))) await fs.rm(Buffer.concat([dir, Buffer.from('/'), n]), { force: true })
    }
  }
}

async function selectEntries (set: CarSet, paths: Buffer[]): Promise<TableEntry[]> {
  const table = set.files
  const keep = new Map<number, NumberedEntry>()
  for (const p of paths.length === 0 ? [Buffer.alloc(0)] : paths) {
    const clean = Buffer.from(p.toString('latin1').replace(/^\/+|\/+$/g, ''), 'latin1')
    let any = false
    for await (const e of subtree(table, clean)) { any = true; keep.set(e.number, e) }
    if (!any && paths.length > 0) throw new PackerError('USAGE', `${displayPath(p)} is not in the set (see 'packer ls')`, { subject: displayPath(p) })
    // Parents of a chosen path are restored as directories too, with their stored metadata.
    for (let q = parentOf(clean); q !== null; q = parentOf(q)) {
      const e = await table.lookup(q)
      if (e !== undefined) keep.set(e.number, e)
    }
  }
  return [...keep.values()].sort((a, b) => a.number - b.number)
}

async function restoreFile (view: MountReader, e: TableEntry, p: Buffer, opts: RestoreOptions): Promise<void> {
  const dir = path.dirname(p.toString('latin1'))
  const tmp = Buffer.concat([Buffer.from(dir, 'latin1'), Buffer.from(`/${TMP_PREFIX}${process.pid}-`), p.subarray(dir.length + 1)])
  const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  let ok = false
  try {
    let written = 0
    const writes = new WriteQueue(fh)
    try {
      const h = view.open()
      try {
        while (written < e.size!) {
          const chunk = Buffer.allocUnsafe(Math.min(1 << 20, e.size! - written))
          const n = await view.read(e, h, chunk, chunk.length, written)
          if (n === 0) break
          await writes.write(n === chunk.length ? chunk : chunk.subarray(0, n), written)
          written += n
          opts.progress?.({ type: 'read', bytes: n })
        }
      } finally {
        view.release(h)
      }
    } catch (err) {
      await writes.drain().catch(() => {}) // the stream's error is the one to report
      throw err
    }
    await writes.drain()
    if (written !== e.size) throw new PackerError('CORRUPT', `${displayPath(e.path)}: restored ${written} bytes, the file table says ${e.size}`)
    faultPoint('restore-write')
    await fh.chmod(e.mode)
    if (opts.sameOwner) await fh.chown(e.uid, e.gid)
    ok = true
  } finally {
    await fh.close()
    if (!ok) await fs.rm(tmp, { force: true })
  }
  await setFileTimesNs(tmp, e.mtimeNs, e.mtimeNs)
  await fs.rename(tmp, p)
}

async function applyMetadata (p: Buffer, e: TableEntry, opts: RestoreOptions, isDir: boolean): Promise<void> {
  if (opts.sameOwner) await fs.lchown(p, e.uid, e.gid)
  if (isDir) await fs.chmod(p, e.mode)
  await setFileTimesNs(p, e.mtimeNs, e.mtimeNs)
}
