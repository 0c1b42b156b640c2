import type { CarSetWriter } from '../car/car-set-writer.js'
import type { CarRecord } from '../format/manifest.js'
import type { TableEntry } from '../format/table-entry.js'
import { compareTableOrder } from '../format/table.js'
import { displayPath } from '../format/stored-path.js'
import type { SourceEntry, SourceRun } from '../source/walk.js'
import { SourceChangedError, SourceVanishedError, sourceProblemError, type SourceProblem } from '../source/file-reader.js'
import type { TreeSource } from '../source/tree-source.js'
import { importLeaves, singleLeaf, type BlockSink, type ImportedFile } from './unixfs.js'
import { LeafWorkers, type Compress } from './leaf-workers.js'
import { fileLeaves, freshSeal, leafSeal, chunkSealer, wholeFileSealer, zstdCompressor, type Leaf } from './leaves.js'
import { compressLarge, type CompressedFile } from './compress.js'
import { OneLeafFiles, type OneLeafFile } from './one-leaf-files.js'
import type { SetEncryption } from './set-encryption.js'
import type { JournalEntry, PackJournal, SourceId } from './journal.js'
import { collectGarbage, flatten } from '../memory.js'

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

export type PackEvent =
  | { type: 'scan', files: number, bytes: number, done: boolean }
  | { type: 'resume', cars: number, files: number, bytes: number }
  | { type: 'read', bytes: number }
  | { type: 'file', path: Buffer, bytes: number }
  | { type: 'skip', path: Buffer, reason: string }
  | { type: 'car', car: CarRecord, index: number }

export interface PackFilesOptions {
  /** Where the files' bytes are read from. */
  source: TreeSource
  /** The entries to pack, in table order (a walk of the source, or a shard's part of a plan). */
  runs: AsyncIterable<SourceRun>
  writer: CarSetWriter
  journal: PackJournal
  enc: SetEncryption | null
  onChange: OnChange
  /** Leaf worker threads (1: none besides the main thread). */
  jobs: number
  /** CARs kept from an interrupted run: the files journaled then, wholly in them, can be reused. */
  kept: number
  /** How files are compressed before they are sealed (null: not at all). */
  compress: Compress | null
  /** A private directory for temporary files (a large file's compressed stream). */
  tmpDir: string
  warn: (msg: string) => void
  progress?: (event: PackEvent) => void
}

export interface PackFilesResult {
  files: number
  bytes: number
  /** The first files left out (changed or vanished while packed, with --on-change skip), and how many in all. */
  skipped: Array<{ path: string, reason: string }>
  skippedCount: number
  /** Files reused from the interrupted run. */
  resumedFiles: number
}

export function tableEntryOf (e: SourceEntry): TableEntry {
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
  const id: SourceId = { dev: e.stat.dev.toString(), ino: e.stat.ino.toString(), size: e.stat.size.toString(), mtimeNs: e.stat.mtimeNs.toString() }
  if (e.version !== undefined) id.version = e.version
  return id
}

/** Whether a journaled file's source is the one listed now: same device, inode, size, mtime and version (ETag). */
function sameSource (src: SourceId, e: SourceEntry): boolean {
  const now = sourceId(e)
  return src.dev === now.dev && src.ino === now.ino && src.size === now.size && src.mtimeNs === now.mtimeNs && src.version === now.version
}

/**
 * Phase 1 of a pack: every entry of `runs` to the journal, in table order, and every file's blocks to the CARs. The
 * walk runs ahead (its small files read ahead by the leaf workers); entries are handed on strictly in order, so the set
 * does not depend on timing. Memory does not grow with the number of files: entries go to the journal as they come.
 */
export async function packFiles (o: PackFilesOptions): Promise<PackFilesResult> {
  const { writer, journal, enc } = o
  const fileEnc = enc
  const pool = new LeafWorkers(o.jobs > 1 ? o.jobs : 0,
    fileEnc === null ? null : { fresh: () => freshSeal(fileEnc.newFile()), recipients: fileEnc.fileRecipients, whole: wholeFileSealer(fileEnc.fileRecipients), chunks: chunkSealer() },
    o.compress === null ? null : zstdCompressor())
  const oneLeaf = new OneLeafFiles(pool, o.source, enc, { compress: o.compress })
  const reuse = new Reusable(journal.previousEntries(), o.kept)
  const result: PackFilesResult = { files: 0, bytes: 0, skipped: [], skippedCount: 0, resumedFiles: 0 }
  let walked = { files: 0, bytes: 0 }
  try {
    type Item = { dir: Buffer } | { e: SourceEntry, reused: JournalEntry | null }
    const queue: Item[] = []
    let queuedFiles = 0
    const runs = o.runs[Symbol.asyncIterator]()
    let walkDone = false
    const pull = async (): Promise<void> => {
      while (!walkDone && queuedFiles < WALK_AHEAD_FILES && queue.length < WALK_AHEAD_ENTRIES) {
        const r = await runs.next()
        if (r.done === true) { walkDone = true; o.progress?.({ type: 'scan', ...walked, done: true }); break }
        queue.push({ dir: r.value.dir })
        for (const e of r.value.entries) if (e.type === 'file') walked = { files: walked.files + 1, bytes: walked.bytes + Number(e.stat.size) }
        o.progress?.({ type: 'scan', ...walked, done: false }) // listed, none of them read yet
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
        result.resumedFiles++
        result.files++
        result.bytes += reused.entry.size!
        o.progress?.({ type: 'read', bytes: reused.entry.size! })
        o.progress?.({ type: 'file', path: e.path, bytes: reused.entry.size! })
        continue
      }
      const packed = await packFile(e, writer, enc, o, oneLeaf.take(e), pool)
      if (packed === null) {
        if (result.skipped.length < SKIPPED_NAMED) result.skipped.push({ path: displayPath(e.path), reason: 'changed or vanished while packed' })
        result.skippedCount++
        continue
      }
      result.files++
      result.bytes += packed.entry.size!
      await journal.addEntry({ ...packed, src: sourceId(e) })
      o.progress?.({ type: 'file', path: e.path, bytes: packed.entry.size! })
      // Each small file leaves a few KB of garbage that V8 lets pile up: a full collection every few thousand files
      // keeps the heap near the live set.
      if (result.files % GC_EVERY_FILES === 0) collectGarbage('major')
    }
    if (o.kept > 0) o.progress?.({ type: 'resume', cars: o.kept, files: result.resumedFiles, bytes: 0 })
    return result
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

/** The CAR writer as the importer's sink, handing each leaf's buffer back to the workers once it is written. */
function recycling (writer: CarSetWriter, pool: LeafWorkers): BlockSink {
  return { put: async (cid, bytes) => await writer.put(cid, bytes, () => { pool.recycle(bytes) }) }
}

/** One file: read (and encrypt) it into the CAR set; reread or skip it if it changes, as asked. */
async function packFile (e: SourceEntry, writer: CarSetWriter, enc: SetEncryption | null, o: PackFilesOptions,
  ahead: Promise<OneLeafFile> | null, pool: LeafWorkers): Promise<{ entry: TableEntry, dagSize: number, records: [number, number], refs: number[] } | null> {
  for (let attempt = 1; ; attempt++) {
    const t = tableEntryOf(e)
    try {
      // Blocks put before this file's first byte belong to something else.
      writer.takeTouchedCars()
      writer.takeRefs()
      const first = writer.records
      let file: ImportedFile
      let storedSize = 0
      if (attempt === 1 && ahead !== null) {
        const one = await ahead
        o.progress?.({ type: 'read', bytes: t.size! })
        if (one.enc !== null) t.enc = one.enc
        if (one.compressed) t.compression = 'zstd'
        storedSize = one.leaf.bytes.length
        file = await singleLeaf(one.leaf, recycling(writer, pool))
      } else {
        const src = await o.source.open(e)
        let compressed: CompressedFile | null = null
        try {
          const problem = (p: SourceProblem): Error => sourceProblemError(e, p)
          const onRead = (n: number): void => o.progress?.({ type: 'read', bytes: n })
          const inFlight = o.source.readsInFlight
          // A compressed file is its seekable stream, made first (its size is needed before it is sealed).
          if (o.compress !== null && e.stat.size > 0n) compressed = await compressLarge(src, o.compress, pool, o.tmpDir, problem, onRead, inFlight)
          let seal = null
          if (enc !== null) {
            const started = enc.newFile()
            t.enc = { key: started.fileKey, headerLength: started.header.length }
            seal = leafSeal(started)
          }
          const leaves = compressed === null
            ? fileLeaves(src, seal, pool, problem, onRead, inFlight)
            : fileLeaves(compressed, seal, pool, problem)
          if (compressed !== null) t.compression = 'zstd'
          file = await importLeaves((async function * (): AsyncGenerator<Leaf> { for await (const l of leaves) { storedSize += l.bytes.length; yield l } })(), recycling(writer, pool))
          await src.check('while being read')
        } finally {
          await compressed?.remove()
          await src.close()
        }
      }
      t.cid = flatten(file.cid.toString())
      t.storedSize = storedSize
      t.cars = writer.takeTouchedCars()
      return { entry: t, dagSize: file.dagSize, records: [first, writer.records], refs: writer.takeRefs() }
    } catch (err) {
      const changed = err instanceof SourceChangedError
      if (!changed && !(err instanceof SourceVanishedError)) throw err
      if (o.onChange === 'skip') {
        o.warn(`skipping ${(err as Error).message.replace(/;.*$/, '')}`)
        o.progress?.({ type: 'skip', path: e.path, reason: (err as Error).message })
        return null
      }
      if (o.onChange === 'fail' || !changed || attempt >= RETRIES) throw err
      // Reread it as it is now (its blocks already written stay unreferenced, harmless).
      await o.source.refresh(e)
      o.warn(`${displayPath(e.abs)} changed while being packed; reading it again (attempt ${attempt + 1} of ${RETRIES})`)
    }
  }
}
