import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno, type ErrorCode } from '../errors.js'
import { decodePath, displayPath } from '../format/stored-path.js'
import { formatSize } from '../format/size.js'
import { entryJsonText, parseEntryFields, type TableEntry } from '../format/table-entry.js'
import { splitEntryPath } from '../format/table.js'
import { setFileTimesNs } from '../native-addon.js'
import { Appender, readLines, readLinesBackward } from '../spill/lines.js'
import type { CarSet } from '../read/car-set.js'
import { selection } from './selection.js'
import { TaskWindow } from './task-window.js'
import { WHOLE_FILE_MAX, WholeFiles, alreadyRestored, matches, readWhole, removeStaleTemporaries, restoreFile, type FileWriteError } from './dest-files.js'
import { SetReader, streamingReaderOptions } from '../read/reader.js'

export interface RestoreOptions {
  dest: string
  /** Archive paths to restore (with everything below them); empty: the whole tree. */
  paths: Buffer[]
  overwrite: boolean
  /** Restore owners (needs root). */
  sameOwner: boolean
  warn: (msg: string) => void
  /** What will be restored, known after the first pass over the table and before anything is written. */
  onPlan?: (plan: RestorePlan) => void
  progress?: (event: { type: 'file', path: Buffer, bytes: number } | { type: 'read', bytes: number }) => void
}

export interface RestorePlan { files: number, bytes: number }

export interface RestoreResult {
  files: number
  bytes: number
  dirs: number
  symlinks: number
  /** Files and symlinks found already restored (an earlier, interrupted unpack into the same DEST). */
  already: number
  /** Files that could not be restored (each was passed to `warn`), and the first one's error. */
  failed: number
  firstFailure: { code: ErrorCode, message: string } | null
}

/**
 * unpack: restores entries of a set under DEST, in two passes over the table, holding no list of entries:
 * 1. Before anything is written, every chosen entry is read (so a table that is damaged or would lead outside DEST is
 *    refused first), its files counted, and, when DEST already existed, every path checked: already restored by an
 *    interrupted run (kept), or in the way (refused unless `overwrite`).
 * 2. Directories are made as their entries come (an entry always comes before its directory's own entries) and files
 *    restored, several at once; each file is written under a temporary name and renamed only when complete and
 *    verified. Before the entries of a directory are written, it must be a real directory (one this run made or
 *    found), never a symlink. Symlinks are kept aside (a spill file) and created after every file, so a stored
 *    `a -> /etc` cannot make a later `a/x` write outside DEST; directories' modes and mtimes are set last, deepest
 *    first (from the directories spilled in table order, read back in reverse), as writing into a directory changes
 *    its mtime and a directory without `x` for its owner can no longer be entered.
 * A file that cannot be restored (missing CAR, damaged block) leaves nothing behind under its name and does not stop
 * the others.
 */
export async function restore (set: CarSet, opts: RestoreOptions): Promise<RestoreResult> {
  const dest = path.resolve(opts.dest)
  const destBytes = Buffer.from(dest)
  const target = (p: Buffer): Buffer => p.length === 0 ? destBytes : Buffer.concat([destBytes, SLASH_BYTE, p])
  const entries = (): AsyncGenerator<TableEntry> => selection(set.files, opts.paths)
  const result: RestoreResult = { files: 0, bytes: 0, dirs: 0, symlinks: 0, already: 0, failed: 0, firstFailure: null }
  let work: string | undefined
  try {
    // Nothing can be in the way when DEST is new or empty: then no path is checked.
    const resumable = await holdsSomething(dest)
    const plan = await planRestore(entries(), target, resumable, opts.overwrite)
    opts.onPlan?.(plan)
    await fs.mkdir(dest, { recursive: true }).catch((err) => {
      throw new PackerError('OUTPUT', `cannot create destination ${dest}: ${(err as Error).message}`, { subject: dest, cause: err })
    })
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'packer-unpack-'))
    const dirs = new Appender(path.join(work, 'directories.jsonl'))
    const symlinks = new Appender(path.join(work, 'symlinks.jsonl'))
    for (const spill of [dirs, symlinks]) await fs.writeFile(spill.file, '', { mode: 0o600 })
    let alreadyBytes = 0
    // The mount's reader: worker threads pread, hash-check and decrypt leaves ahead of each file being written, so
    // this thread only moves plaintext to the files (reading through FileView.stream decrypted here: unpack ran at
    // ~0.6 of the speed). From local disks 32 MiB of slots hold what the 8 files in progress read ahead (64 MiB: as
    // fast, 30 MB more); a store far away reads further ahead (streamingReaderOptions).
    const view = new SetReader(set, streamingReaderOptions(set))
    try {
      const files = new TaskWindow(8, 48 << 20)
      const restored = (e: TableEntry): void => {
        result.files++
        result.bytes += e.size!
        opts.progress?.({ type: 'file', path: e.path, bytes: e.size! })
      }
      const whole = WholeFiles.create(opts.sameOwner, restored)
      /** A write that failed stops the unpack (a full disk says what is left to restore); a file that cannot be read does not. */
      const failed = (err: unknown, e: TableEntry): void => {
        if (isErrno(err, 'ENOSPC')) {
          const left = plan.bytes - result.bytes - alreadyBytes
          const which = (err as Partial<FileWriteError>).entry ?? e
          throw new PackerError('NO_SPACE', `no space left in ${dest} while restoring ${displayPath(which.path)} (the files not yet restored need about ${formatSize(left)}); free space and rerun: restored files are kept`, { subject: dest, cause: err })
        }
        if (!(err instanceof PackerError) || err.code === 'USAGE' || err.code === 'EXISTS') throw err
        result.failed++
        result.firstFailure ??= { code: err.code, message: err.message }
        opts.warn(`not restored: ${err.message}`)
      }
      /** Skips what an interrupted run restored already (resuming); the files left to restore. */
      const toRestore = async (batch: TableEntry[]): Promise<TableEntry[]> => {
        if (!resumable) return batch
        const done = await Promise.all(batch.map(async (e) => await alreadyRestored(target(e.path), e)))
        return batch.filter((e, i) => {
          if (!done[i]) return true
          result.already++
          alreadyBytes += e.size!
          opts.progress?.({ type: 'read', bytes: e.size! })
          return false
        })
      }
      /** A file streamed through the reader into its file (large files; every file without the native addon). */
      const restoreOne = async (e: TableEntry): Promise<void> => {
        if ((await toRestore([e])).length === 0) return
        try {
          await restoreFile(view, e, target(e.path), opts.sameOwner, (n) => opts.progress?.({ type: 'read', bytes: n }))
          restored(e)
        } catch (err) {
          failed(err, e)
        }
      }
      /** Small files, a group at a time: their blocks read together, then written in batches (WholeFiles). */
      const restoreSmall = async (group: TableEntry[]): Promise<void> => {
        const todo = await toRestore(group)
        const plain = await view.readSmall(todo)
        for (const [i, e] of todo.entries()) {
          try {
            const data = plain[i] ?? await readWhole(view, e) // null: not one raw block, read through the reader
            if (data instanceof PackerError) throw data
            opts.progress?.({ type: 'read', bytes: data.length })
            await whole!.add(e, target(e.path), data)
          } catch (err) {
            failed(err, e)
          }
        }
      }
      let small: TableEntry[] = []
      let smallBytes = 0
      const sendSmall = async (): Promise<boolean> => {
        const group = small
        small = []
        smallBytes = 0
        return group.length === 0 || await files.add(group.reduce((n, e) => n + e.size!, 0), async () => await restoreSmall(group))
      }
      let current: Buffer | null = null
      const made = new MadeDirectories()
      try {
        for await (const e of entries()) {
          const dir = splitEntryPath(e.path).dir
          if (current === null || !dir.equals(current)) {
            await enterDirectory(target(dir), dir, made, resumable)
            current = dir
          }
          if (e.type === 'dir') {
            await makeDirectory(target(e.path), e, made)
            await dirs.write(spillLine(e))
            result.dirs++
          } else if (e.type === 'symlink') {
            await symlinks.write(spillLine(e))
          } else if (whole !== null && e.size! <= WHOLE_FILE_MAX) {
            small.push(e)
            smallBytes += e.size!
            if ((small.length >= SMALL_GROUP || smallBytes >= SMALL_GROUP_BYTES) && !await sendSmall()) break
          } else if (!await files.add(Math.min(e.size!, 16 << 20), async () => await restoreOne(e))) {
            break
          }
        }
        await sendSmall()
        await files.finish()
        await whole?.finish().catch((err: unknown) => { failed(err, (err as FileWriteError).entry) })
      } catch (err) {
        // The files being written end first (a failed one leaves no temporary).
        await files.finish().catch(() => {})
        await whole?.finish().catch(() => {})
        throw err
      }
      await symlinks.close()
      await dirs.close()
      for await (const line of readLines(symlinks.file)) {
        const e = spilled(line)
        const p = target(e.path)
        if (resumable && await alreadyRestored(p, e)) { result.already++; continue }
        if (opts.overwrite) await fs.rm(p, { force: true })
        await fs.symlink(e.target!, p).catch((err: unknown) => {
          // checked free before anything was written: something else made it since
          if (isErrno(err, 'EEXIST')) throw new PackerError('EXISTS', `${displayPath(p)} already exists (it appeared while unpack ran); remove it, restore elsewhere, or pass --overwrite`, { subject: displayPath(p) })
          throw err
        })
        await applyMetadata(p, e, opts, false)
        result.symlinks++
      }
      for await (const line of readLinesBackward(dirs.file)) {
        const e = spilled(line)
        await applyMetadata(target(e.path), e, opts, true)
      }
    } finally {
      await view.close()
    }
  } catch (err) {
    if (isErrno(err, 'ENOSPC')) throw new PackerError('NO_SPACE', `no space left in ${dest}; free space and rerun`, { subject: dest, cause: err })
    throw err
  } finally {
    if (work !== undefined) await fs.rm(work, { recursive: true, force: true })
    await set.close()
  }
  return result
}

/** True when `dir` is a directory with at least one entry. */
async function holdsSomething (dir: string): Promise<boolean> {
  const d = await fs.opendir(dir, { bufferSize: 1 }).catch(() => null)
  if (d === null) return false
  try { return await d.read() !== null } finally { await d.close() }
}

const SLASH_BYTE = Buffer.from('/')
/** Small files read together: at most this many, or this many bytes. */
const SMALL_GROUP = 64
const SMALL_GROUP_BYTES = 4 << 20

/** Directories and symlinks kept aside on disk until their turn (their metadata, as the table has it). */
function spillLine (e: TableEntry): string {
  return entryJsonText('path', e.path, e) + '\n'
}

function spilled (line: string): TableEntry {
  const o = JSON.parse(line) as Record<string, unknown>
  return parseEntryFields(o, decodePath(o, 'unpack spill file'), 'unpack spill file', 0, 2)
}

/**
 * The first pass: reads every chosen entry before anything is written (the table reader refuses a damaged or unsafe
 * table; a path that is not in the set is a USAGE error), counts what will be restored and, when DEST already
 * existed, refuses an entry whose path is taken by something else (unless `overwrite`, which replaces files and
 * symlinks but never a directory's place). lstats go 64 at a time: one at a time cost seconds for 20 000 files.
 */
async function planRestore (entries: AsyncIterable<TableEntry>, target: (p: Buffer) => Buffer, resumable: boolean, overwrite: boolean): Promise<RestorePlan> {
  const plan: RestorePlan = { files: 0, bytes: 0 }
  let batch: TableEntry[] = []
  const check = async (): Promise<void> => {
    const stats = await Promise.all(batch.map(async (e) => await fs.lstat(target(e.path), { bigint: true }).catch(() => null)))
    for (const [i, e] of batch.entries()) {
      const st = stats[i]
      if (st === null || st === undefined) continue
      const p = displayPath(target(e.path))
      if (e.type === 'dir') {
        if (!st.isDirectory()) throw new PackerError('EXISTS', `${p} exists and is not a directory; remove it or restore elsewhere`, { subject: p })
      } else if (!overwrite && !await matches(target(e.path), st, e)) {
        throw new PackerError('EXISTS', `${p} already exists; remove it, restore elsewhere, or pass --overwrite`, { subject: p })
      }
    }
    batch = []
  }
  for await (const e of entries) {
    if (e.type === 'file') {
      plan.files++
      plan.bytes += e.size!
    }
    if (!resumable) continue
    batch.push(e)
    if (batch.length === 64) await check()
  }
  await check()
  return plan
}

/**
 * The directories this run made (or found there as real directories), the last few thousand: a directory's entries
 * come soon after its own entry, so checking that it is a real directory rarely costs an lstat. Nothing but
 * symlinks (made last, after every file) could put something else in a directory's place meanwhile.
 */
class MadeDirectories {
  readonly #recent = new Set<string>()

  add (dir: Buffer): void {
    this.#recent.add(dir.toString('latin1'))
    if (this.#recent.size > 4096) this.#recent.delete(this.#recent.values().next().value!)
  }

  has (dir: Buffer): boolean { return this.#recent.has(dir.toString('latin1')) }
}

/**
 * Before the entries of directory `dir` are written: it must be a real directory, one this run made as its entry came
 * (or found there), never a symlink or anything else: so no path leads out of DEST. Temporaries a killed unpack left
 * in it are removed.
 */
async function enterDirectory (p: Buffer, dir: Buffer, made: MadeDirectories, resumable: boolean): Promise<void> {
  if (dir.length > 0 && !made.has(dir)) {
    const st = await fs.lstat(p).catch(() => null)
    if (st === null || !st.isDirectory()) {
      throw new PackerError('UNSAFE_PATH', `the set has entries in ${JSON.stringify(displayPath(dir))}, which is not a directory this unpack made; refusing this set`)
    }
  }
  if (resumable) await removeStaleTemporaries(p)
}

async function makeDirectory (p: Buffer, e: TableEntry, made: MadeDirectories): Promise<void> {
  try {
    await fs.mkdir(p, { mode: 0o700 }) // its own mode is set at the end: until then it stays writable by us
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err
    const st = await fs.lstat(p)
    if (!st.isDirectory()) throw new PackerError('EXISTS', `${displayPath(p)} exists and is not a directory; remove it or restore elsewhere`, { subject: displayPath(p) })
    await fs.chmod(p, 0o700 | e.mode) // found there: perhaps with its final mode already, from an interrupted run
  }
  made.add(e.path)
}

async function applyMetadata (p: Buffer, e: TableEntry, opts: RestoreOptions, isDir: boolean): Promise<void> {
  if (opts.sameOwner) await fs.lchown(p, e.uid, e.gid)
  if (isDir) await fs.chmod(p, e.mode)
  await setFileTimesNs(p, e.mtimeNs, e.mtimeNs)
}
