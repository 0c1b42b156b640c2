import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { INDEX_FILE } from '../car/block-index.js'
import { MANIFEST_FILE, readManifest, setIdOf, type CarRecord, type Manifest } from '../format/manifest.js'
import type { TableEntry } from '../format/table-entry.js'
import { compareTableOrder } from '../format/table.js'
import { displayPath } from '../format/stored-path.js'
import { formatSize } from '../format/size.js'
import { sourceStat, walkSource, type SourceEntry } from '../source/walk.js'
import { SourceChangedError, SourceVanishedError, openSourceFile, sourceProblemError } from '../source/file-reader.js'
import { importLeaves, singleLeaf, type ImportedFile } from './unixfs.js'
import { LeafWorkers, defaultJobs } from './leaf-workers.js'
import { fileLeaves, freshSeal, leafSeal, type Leaf } from './leaves.js'
import { OneLeafFiles, type OneLeafFile } from './one-leaf-files.js'
import type { SetEncryption } from './set-encryption.js'
import { PackJournal, sameArgs, type JournalEntry, type JournalState, type SourceId } from './journal.js'
import { OutDirLock, LOCK_FILE } from './out-dir-lock.js'
import { checkCompleteCar } from './car-check.js'
import { finishSet } from './finish.js'
import { faultPoint } from '../fault.js'
import { collectGarbage, flatten, trimMalloc } from '../memory.js'

/** What to do with a source file that changes or vanishes while it is packed. */
export type OnChange = 'retry' | 'fail' | 'skip'
const RETRIES = 3
/** Files packed between full garbage collections (each ~10–40 ms here; 20 000 files: peak RSS −60 MB). */
const GC_EVERY_FILES = 4096
/** Files the walk may run ahead of the packing (read ahead by the leaf workers when small), and entries in all. */
const WALK_AHEAD_FILES = 256
const WALK_AHEAD_ENTRIES = 4096
/** Skipped files named in the result (the rest are counted). */
const SKIPPED_NAMED = 100

export interface PackOptions {
  source: string
  out: string
  binSize: number
  /** null: files are stored in clear (`--no-encrypt`). */
  encryption: SetEncryption | null
  onChange?: OnChange
  /**
   * Threads that hash and encrypt leaves (`--jobs`; default: the cores available). 1: all on the main thread.
   * The set's bytes do not depend on it (for --no-encrypt they are identical whatever the value).
   */
  jobs?: number
  /** Where the pack journal lives (default: the user's state directory, never OUTDIR). */
  stateDir?: string
  warn: (msg: string) => void
  progress?: (event: PackEvent) => void
}

export type PackEvent =
  | { type: 'scan', files: number, bytes: number, done: boolean }
  | { type: 'resume', cars: number, files: number, bytes: number }
  | { type: 'read', bytes: number }
  | { type: 'file', path: Buffer, bytes: number }
  | { type: 'skip', path: Buffer, reason: string }
  | { type: 'car', car: CarRecord, index: number }

export interface PackResult {
  manifest: Manifest
  files: number
  bytes: number
  /** The first files left out (changed or vanished while packed, with --on-change skip), and how many in all. */
  skipped: Array<{ path: string, reason: string }>
  skippedCount: number
  /** Set when this run continued an interrupted one. */
  resumed: { cars: number, files: number } | null
  /** True when OUTDIR already held the set these arguments make: nothing was done. */
  nothingToDo: boolean
}

function tableEntryOf (e: SourceEntry): TableEntry {
  return {
    path: e.path,
    type: e.type,
    mode: Number(e.stat.mode & 0o7777n),
    mtimeNs: e.stat.mtimeNs,
    uid: Number(e.stat.uid),
    gid: Number(e.stat.gid),
    target: e.target,
    size: e.type === 'file' ? Number(e.stat.size) : undefined,
  }
}

function sourceId (e: SourceEntry): SourceId {
  return { dev: e.stat.dev.toString(), ino: e.stat.ino.toString(), size: e.stat.size.toString(), mtimeNs: e.stat.mtimeNs.toString() }
}

/** Written at the end of every pack, before the manifest: a resumed pack writes it again. */
const REWRITTEN = new Set([INDEX_FILE])
const isLeftover = (n: string): boolean => n.startsWith('.partial-') || (n.startsWith('.') && n.endsWith('.tmp'))
const isOurCar = (n: string): boolean => /^baga[a-z2-7]+\.car$/.test(n)

async function ensureDir (out: string): Promise<void> {
  try {
    await fs.mkdir(out, { recursive: true })
    if (!(await fs.stat(out)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    if (isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) throw new PackerError('OUTPUT', `output ${out} exists and is not a directory; choose a directory`, { subject: out })
    throw new PackerError('OUTPUT', `cannot create output directory ${out}: ${(err as Error).message}`, { subject: out, cause: err })
  }
}

/**
 * pack: SOURCE → CAR set in OUT (docs/FORMAT.md). One pass over the source, walked in the file table's order: each
 * byte is read once, each CAR byte written once and hashed for its piece CID as it is written. Every entry goes to the
 * journal as it is packed (on disk: memory does not grow with the number of files); the final stage (finish.ts) then
 * builds the directory nodes, the file table, the descriptor and the block index from the journal. manifest.json is
 * written last: its presence means the set is complete. Complete CARs are journaled, so a rerun after a crash
 * continues.
 */
export async function pack (opts: PackOptions): Promise<PackResult> {
  const source = path.resolve(opts.source)
  const onChange = opts.onChange ?? 'retry'
  await ensureDir(opts.out)
  const lock = await OutDirLock.acquire(opts.out)
  try {
    return await packLocked(opts, source, onChange)
  } finally {
    await lock.release()
  }
}

async function packLocked (opts: PackOptions, source: string, onChange: OnChange): Promise<PackResult> {
  const journal = await PackJournal.for(opts.out, opts.stateDir)
  let enc = opts.encryption
  const args = { source, binSize: opts.binSize, encryption: enc?.fingerprint ?? 'none', names: enc ? enc.names : 'clear' as const }
  const present = await fs.readdir(opts.out)

  if (present.includes(MANIFEST_FILE)) {
    const done = await journal.done()
    const manifest = await readManifest(opts.out).catch(() => null)
    if (done && manifest && sameArgs(done as any, args) && done.setId === setIdOf(manifest)) {
      return { manifest, files: 0, bytes: 0, skipped: [], skippedCount: 0, resumed: null, nothingToDo: true }
    }
    throw new PackerError('OUTPUT', `output ${opts.out} already holds a packer set (manifest.json); choose an empty directory`, { subject: opts.out })
  }

  let state = await journal.load()
  // A journal is stale when OUTDIR holds nothing packer wrote (it was emptied or removed): start afresh.
  if (state && !present.some((n) => isLeftover(n) || isOurCar(n) || REWRITTEN.has(n))) state = null
  if (state && !sameArgs(state.header, args)) {
    throw new PackerError('OUTPUT', `output ${opts.out} holds an interrupted pack made with other arguments (source ${state.header.source}); rerun it with those arguments, or choose an empty directory`, { subject: opts.out })
  }
  const kept = state ? await keepCompleteCars(opts.out, state, journal) : 0
  const keptCars = state ? state.cars.slice(0, kept) : []
  const keptNames = new Set(keptCars.map((c) => c.file))
  for (const n of present) {
    if (n === LOCK_FILE || keptNames.has(n)) continue
    if (isLeftover(n) || (state && (isOurCar(n) || REWRITTEN.has(n)))) await fs.rm(path.join(opts.out, n), { force: true })
    else throw new PackerError('OUTPUT', `output ${opts.out} is not empty (it holds ${n}); choose an empty or new directory`, { subject: opts.out })
  }
  if (enc?.withSetIdentity && state?.header.setIdentity) enc = enc.withSetIdentity(state.header.setIdentity)
  await journal.open({ out: await fs.realpath(opts.out), ...args, setIdentity: enc?.setIdentity }, state ?? undefined, kept)

  const writer = new CarSetWriter({
    dir: opts.out,
    binSize: opts.binSize,
    onRecord: async (r) => { await journal.addRecord(r) },
    onCarDone: async (car, index) => {
      faultPoint('car-done')
      await journal.addCar(car)
      faultPoint('car-journaled')
      opts.progress?.({ type: 'car', car, index })
    },
  })
  if (kept > 0) await writer.resume(keptCars, journal.records())

  const jobs = Math.max(1, Math.floor(opts.jobs ?? defaultJobs()))
  const fileEnc = enc
  const pool = new LeafWorkers(jobs > 1 ? jobs : 0, fileEnc === null ? null : { fresh: () => freshSeal(fileEnc.newFile()), recipients: fileEnc.fileRecipients })
  const oneLeaf = new OneLeafFiles(pool, enc)
  const reuse = new Reusable(journal.previousEntries(), kept)
  const skipped: PackResult['skipped'] = []
  let skippedCount = 0
  let files = 0
  let bytes = 0
  let resumedFiles = 0
  let single = false
  let walked = { files: 0, bytes: 0 }
  try {
    const walk = await walkSource(source, { warn: opts.warn, tmpDir: path.join(journal.workDir, 'walk') })
    single = walk.single
    // Phase 1: every file's blocks, in table order. The walk runs ahead (its files offered to the read-ahead);
    // entries are handed on strictly in order.
    type Item = { dir: Buffer } | { e: SourceEntry, reused: JournalEntry | null }
    const queue: Item[] = []
    let queuedFiles = 0
    const runs = walk.runs[Symbol.asyncIterator]()
    let walkDone = false
    const pull = async (): Promise<void> => {
      while (!walkDone && queuedFiles < WALK_AHEAD_FILES && queue.length < WALK_AHEAD_ENTRIES) {
        const r = await runs.next()
        if (r.done === true) { walkDone = true; opts.progress?.({ type: 'scan', ...walked, done: true }); break }
        queue.push({ dir: r.value.dir })
        for (const e of r.value.entries) if (e.type === 'file') walked = { files: walked.files + 1, bytes: walked.bytes + Number(e.stat.size) }
        opts.progress?.({ type: 'scan', ...walked, done: false }) // listed, none of them read yet
        for (const e of r.value.entries) {
          if (e.type !== 'file') { queue.push({ e, reused: null }); continue }
          const reused = await reuse.take(e)
          queue.push({ e, reused })
          queuedFiles++
          if (reused === null) oneLeaf.offer(e)
        }
      }
    }
    let lastDir: Buffer | null = null
    for (;;) {
      if (queue.length === 0 || (queuedFiles < WALK_AHEAD_FILES / 2 && queue.length < WALK_AHEAD_ENTRIES / 2)) await pull()
      const item = queue.shift()
      if (item === undefined) break
      if ('dir' in item) {
        // A directory's runs may come in parts: the journal lists it once.
        if (lastDir === null || !lastDir.equals(item.dir)) await journal.addDir(item.dir)
        lastDir = item.dir
        continue
      }
      const { e, reused } = item
      if (e.type !== 'file') { await journal.addEntry({ entry: tableEntryOf(e) }); continue }
      queuedFiles--
      if (reused !== null) {
        await journal.addEntry(reused)
        resumedFiles++
        files++
        bytes += reused.entry.size!
        opts.progress?.({ type: 'read', bytes: reused.entry.size! })
        opts.progress?.({ type: 'file', path: e.path, bytes: reused.entry.size! })
        continue
      }
      const packed = await packFile(e, writer, enc, onChange, opts, oneLeaf.take(e), pool)
      if (packed === null) {
        if (skipped.length < SKIPPED_NAMED) skipped.push({ path: displayPath(e.path), reason: 'changed or vanished while packed' })
        skippedCount++
        continue
      }
      files++
      bytes += packed.entry.size!
      await journal.addEntry({ entry: packed.entry, dagSize: packed.file.dagSize, src: sourceId(e) })
      opts.progress?.({ type: 'file', path: e.path, bytes: packed.entry.size! })
      // Each small file leaves a few KB of garbage that V8 lets pile up: a full collection every few thousand files
      // keeps the heap near the live set.
      if (files % GC_EVERY_FILES === 0) collectGarbage('major')
    }
    if (kept > 0) opts.progress?.({ type: 'resume', cars: kept, files: resumedFiles, bytes: 0 })
    if (single && files === 0) {
      throw new PackerError('SOURCE', `${source} was not packed (${skipped[0]?.reason ?? 'nothing to pack'})`, { subject: source })
    }

    // The leaf workers are done: their heaps and the ~50 MB malloc arena each leaves go back to the system.
    await pool.close()
    collectGarbage('major')
    trimMalloc()
    const manifest = await finishSet({
      out: opts.out,
      writer,
      items: () => journal.items(),
      records: () => journal.records(),
      enc,
      single,
      binSize: opts.binSize,
      workDir: journal.workDir,
    })
    await journal.finish({ ...args, setId: setIdOf(manifest) })
    return {
      manifest,
      files,
      bytes,
      skipped,
      skippedCount,
      resumed: kept > 0 ? { cars: kept, files: resumedFiles } : null,
      nothingToDo: false,
    }
  } catch (err) {
    await writer.abort()
    await journal.close()
    if (isErrno(err, 'ENOSPC')) {
      throw new PackerError('NO_SPACE', `no space left on the device of ${opts.out} or of the state directory (the set needs about ${formatSize(walked.bytes)} plus 1% so far); free space and rerun: packer continues where it stopped`, { subject: opts.out, cause: err })
    }
    throw err
  } finally {
    await pool.close()
  }
}

/**
 * The files of the interrupted pack that can be reused, taken in table order: from the start of the table, while
 * each file is the next one journaled, its blocks are all in kept CARs and its source is unchanged. Past the first
 * that is not, everything is packed again (FORMAT.md §9): the journal of this run stays in table order.
 */
class Reusable {
  readonly #it: AsyncIterator<JournalEntry>
  readonly #kept: number
  #next: JournalEntry | null | undefined
  #stopped: boolean

  constructor (previous: AsyncIterable<JournalEntry>, kept: number) {
    this.#it = previous[Symbol.asyncIterator]()
    this.#kept = kept
    this.#stopped = kept === 0
  }

  async #peek (): Promise<JournalEntry | null> {
    if (this.#next === undefined) {
      for (;;) {
        const r = await this.#it.next()
        if (r.done === true) { this.#next = null; break }
        if (r.value.entry.type === 'file') { this.#next = r.value; break }
      }
    }
    return this.#next
  }

  async take (e: SourceEntry): Promise<JournalEntry | null> {
    if (this.#stopped) return null
    const j = await this.#peek()
    // A file journaled earlier in the order and gone from the source now: skip past it.
    if (j !== null && compareTableOrder(j.entry.path, e.path) < 0) {
      this.#next = undefined
      return await this.take(e)
    }
    const ok = j !== null && j.entry.path.equals(e.path) && j.entry.cars!.every((c) => c < this.#kept) && j.src !== undefined && sameSource(j.src, e)
    if (!ok) {
      this.#stopped = true
      await this.#it.return?.()
      return null
    }
    this.#next = undefined
    return j
  }
}

function sameSource (src: SourceId, e: SourceEntry): boolean {
  const now = sourceId(e)
  return src.dev === now.dev && src.ino === now.ino && src.size === now.size && src.mtimeNs === now.mtimeNs
}

/** How many of the journal's CARs are present and intact (cheap checks); the rest are redone. */
async function keepCompleteCars (dir: string, state: JournalState, journal: PackJournal): Promise<number> {
  for (let i = 0; i < state.cars.length; i++) {
    if (!await checkCompleteCar(dir, state.cars[i]!, await journal.record(state.blockCounts[i]! - 1))) return i
  }
  return state.cars.length
}

/** Phase 1 for one file: read (and encrypt) it into the CAR set; reread or skip it if it changes, as asked. */
async function packFile (e: SourceEntry, writer: CarSetWriter, enc: SetEncryption | null, onChange: OnChange,
  opts: PackOptions, ahead: Promise<OneLeafFile> | null, pool: LeafWorkers): Promise<{ entry: TableEntry, file: ImportedFile } | null> {
  for (let attempt = 1; ; attempt++) {
    const t = tableEntryOf(e)
    try {
      writer.takeTouchedCars() // blocks put before this file's first byte belong to something else
      let file: ImportedFile
      let storedSize = 0
      if (attempt === 1 && ahead !== null) {
        const one = await ahead
        opts.progress?.({ type: 'read', bytes: t.size! })
        if (one.enc !== null) t.enc = one.enc
        file = await singleLeaf(one.leaf, writer)
        storedSize = one.leaf.bytes.length
      } else {
        const src = await openSourceFile(e)
        try {
          let seal = null
          if (enc !== null) {
            const started = enc.newFile()
            t.enc = { key: started.fileKey, headerLength: started.header.length }
            seal = leafSeal(started)
          }
          const leaves = fileLeaves(src.fd, Number(e.stat.size), seal, pool, (p) => sourceProblemError(e, p), (n) => opts.progress?.({ type: 'read', bytes: n }))
          file = await importLeaves((async function * (): AsyncGenerator<Leaf> { for await (const l of leaves) { storedSize += l.bytes.length; yield l } })(), writer)
          await src.check('while being read')
        } finally {
          await src.close()
        }
      }
      t.cid = flatten(file.cid.toString())
      t.storedSize = storedSize
      t.cars = writer.takeTouchedCars()
      return { entry: t, file }
    } catch (err) {
      const changed = err instanceof SourceChangedError
      if (!changed && !(err instanceof SourceVanishedError)) throw err
      if (onChange === 'skip') {
        opts.warn(`skipping ${(err as Error).message.replace(/;.*$/, '')}`)
        opts.progress?.({ type: 'skip', path: e.path, reason: (err as Error).message })
        return null
      }
      if (onChange === 'fail' || !changed || attempt >= RETRIES) throw err
      // Reread it as it is now (its blocks already written stay unreferenced, harmless).
      let now: import('node:fs').BigIntStats
      try { now = await fs.lstat(e.abs, { bigint: true }) } catch { throw new SourceVanishedError(e) }
      if (!now.isFile()) throw new SourceChangedError(e, 'it is no longer a regular file')
      e.stat = sourceStat(now)
      opts.warn(`${displayPath(e.abs)} changed while being packed; reading it again (attempt ${attempt + 1} of ${RETRIES})`)
    }
  }
}
