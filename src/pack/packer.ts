import fs from 'node:fs/promises'
import path from 'node:path'
import { CID } from 'multiformats/cid'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { BLOCK_RECORD_SIZE, INDEX_FILE } from '../car/block-index.js'
import { writeFileDurably } from '../car/durable-file.js'
import { MANIFEST_FILE, MANIFEST_VERSION, encodeManifest, readManifest, setIdOf, type CarRecord, type Manifest } from '../format/manifest.js'
import { encodeTableEntry, encodeTableHeader, type TableEntry } from '../format/file-table.js'
import { displayPath } from '../format/stored-path.js'
import { formatSize } from '../format/size.js'
import { sourceStat, walkSource, type SourceEntry } from '../source/walk.js'
import { SourceChangedError, SourceVanishedError, openSourceFile, sourceProblemError } from '../source/file-reader.js'
import { importDirectories, importFile, importLeaves, singleLeaf, type ImportedFile } from './unixfs.js'
import { LeafWorkers, defaultJobs } from './leaf-workers.js'
import { fileLeaves, freshSeal, leafSeal, type Leaf } from './leaves.js'
import { OneLeafFiles, type OneLeafFile } from './one-leaf-files.js'
import type { SetEncryption } from './set-encryption.js'
import { PackJournal, sameArgs, type JournalFile, type JournalState } from './journal.js'
import { OutDirLock, LOCK_FILE } from './out-dir-lock.js'
import { checkCompleteCar } from './car-check.js'
import { faultPoint } from '../fault.js'
import { VERSION } from '../version.js'
import { collectGarbage, flatten, trimMalloc } from '../memory.js'
import { encodeDescriptor } from '../format/descriptor.js'

/** What to do with a source file that changes or vanishes while it is packed. */
export type OnChange = 'retry' | 'fail' | 'skip'
const RETRIES = 3
/** Files packed between full garbage collections (each ~10–40 ms here; 20 000 files: peak RSS −60 MB). */
const GC_EVERY_FILES = 4096

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
  skipped: Array<{ path: string, reason: string }>
  /** Set when this run continued an interrupted one. */
  resumed: { cars: number, files: number } | null
  /** True when OUTDIR already held the set these arguments make: nothing was done. */
  nothingToDo: boolean
}

export const TABLE_FILE_PLAIN = 'table.jsonl'
export const TABLE_FILE_ENCRYPTED = 'table.jsonl.age'

/** Name a file gets in the flat UnixFS tree of a hidden-names set: its position, base 36, fixed width. */
function storedName (n: number): string { return n.toString(36).padStart(8, '0') }

/** The string path the importer gets. Names that are not UTF-8 show lossily in the UnixFS tree; the file table keeps the bytes. */
function importPath (p: Buffer): string { return p.toString('utf8') }

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

function sourceId (e: SourceEntry): JournalFile['src'] {
  return { dev: e.stat.dev.toString(), ino: e.stat.ino.toString(), size: e.stat.size.toString(), mtimeNs: e.stat.mtimeNs.toString() }
}

/** Written at the end of every pack, before the manifest: a resumed pack writes them again. */
const REWRITTEN = new Set([INDEX_FILE, TABLE_FILE_PLAIN, TABLE_FILE_ENCRYPTED])
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
 * pack: SOURCE → CAR set in OUT. One pass over the source: each byte is read once, each CAR byte written once and
 * hashed for its piece CID as it is written. Files are imported one by one (phase 1), then the directory nodes are
 * built over their CIDs (phase 2), then the file table and the set descriptor are added. manifest.json is written
 * last: its presence means the set is complete. Complete CARs are journaled, so a rerun after a crash continues.
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
      return { manifest, files: 0, bytes: 0, skipped: [], resumed: null, nothingToDo: true }
    }
    throw new PackerError('OUTPUT', `output ${opts.out} already holds a packer set (manifest.json); choose an empty directory`, { subject: opts.out })
  }

  let state = await journal.load()
  // A journal is stale when OUTDIR holds nothing packer wrote (it was emptied or removed): start afresh.
  if (state && !present.some((n) => isLeftover(n) || isOurCar(n) || REWRITTEN.has(n))) state = null
  const kept = state ? await keepCompleteCars(opts.out, state) : 0
  if (state && !sameArgs(state.header, args)) {
    throw new PackerError('OUTPUT', `output ${opts.out} holds an interrupted pack made with other arguments (source ${state.header.source}); rerun it with those arguments, or choose an empty directory`, { subject: opts.out })
  }
  const keptCars = state ? state.cars.slice(0, kept) : []
  const keptNames = new Set(keptCars.map((c) => c.file))
  for (const n of present) {
    if (n === LOCK_FILE || keptNames.has(n)) continue
    if (isLeftover(n) || (state && (isOurCar(n) || REWRITTEN.has(n)))) await fs.rm(path.join(opts.out, n), { force: true })
    else throw new PackerError('OUTPUT', `output ${opts.out} is not empty (it holds ${n}); choose an empty or new directory`, { subject: opts.out })
  }
  if (enc?.withSetIdentity && state?.header.setIdentity) enc = enc.withSetIdentity(state.header.setIdentity)
  await journal.open({ out: await fs.realpath(opts.out), ...args, setIdentity: enc?.setIdentity }, state ?? undefined, kept)

  const tree = await walkSource(source, opts.warn, (files, bytes) => opts.progress?.({ type: 'scan', files, bytes, done: false }))
  opts.progress?.({ type: 'scan', files: tree.fileCount, bytes: tree.totalBytes, done: true })

  const resumable = resumableFiles(state, kept)
  const writer = new CarSetWriter({
    dir: opts.out,
    binSize: opts.binSize,
    onCarDone: async (car, index, records) => {
      faultPoint('car-done')
      await journal.addCar(car, records)
      faultPoint('car-journaled')
      opts.progress?.({ type: 'car', car, index })
    },
  })
  if (kept > 0) writer.resume(keptCars, state!.blocks.subarray(0, state!.blockCounts[kept - 1] * BLOCK_RECORD_SIZE))

  const hidden = enc?.names === 'hidden'
  const table: TableEntry[] = []
  const imported = new Map<TableEntry, ImportedFile>()
  const skipped: PackResult['skipped'] = []
  let resumedFiles = 0
  let fileNo = 0
  const jobs = Math.max(1, Math.floor(opts.jobs ?? defaultJobs()))
  const fileEnc = enc
  const pool = new LeafWorkers(jobs > 1 ? jobs : 0, fileEnc === null ? null : { fresh: () => freshSeal(fileEnc.newFile()), recipients: fileEnc.fileRecipients })
  const oneLeaf = new OneLeafFiles(tree.entries.filter((e) => !resumable.has(e.path.toString('latin1'))), pool, enc)
  try {
    // Phase 1: every file's blocks, in walk order.
    for (const e of tree.entries) {
      if (e.type !== 'file') { table.push(tableEntryOf(e)); continue }
      const name = hidden ? storedName(fileNo) : undefined
      const done = resumable.get(e.path.toString('latin1'))
      if (done && done.entry.storedName === name && sameSource(done.src, e)) {
        table.push(done.entry)
        imported.set(done.entry, { cid: CID.parse(done.entry.cid!), dagSize: done.dagSize })
        resumedFiles++
        fileNo++
        opts.progress?.({ type: 'file', path: e.path, bytes: done.entry.size! })
        continue
      }
      const packed = await packFile(e, name, writer, enc, onChange, opts, oneLeaf.take(e), pool)
      if (packed === null) {
        skipped.push({ path: displayPath(e.path), reason: 'changed or vanished while packed' })
        continue
      }
      fileNo++
      table.push(packed.entry)
      imported.set(packed.entry, packed.file)
      await journal.addFile({ entry: packed.entry, dagSize: packed.file.dagSize, src: sourceId(e) })
      opts.progress?.({ type: 'file', path: e.path, bytes: packed.entry.size! })
      // Each small file leaves a few KB of garbage that V8 lets pile up (its heap limit grows with the live set, which
      // grows with the file table): a full collection every few thousand files keeps the heap near the live set.
      if (fileNo % GC_EVERY_FILES === 0) collectGarbage('major')
    }
    if (kept > 0) opts.progress?.({ type: 'resume', cars: kept, files: resumedFiles, bytes: 0 })

    // The leaf workers are done: their heaps and the ~50 MB malloc arena each leaves go back to the system. Each
    // final stage makes tens of MB of garbage per 10 000 files, which V8 would let the heap grow by: a full
    // collection before each keeps peak memory near the live set.
    await pool.close()
    collectGarbage('major')
    trimMalloc()
    // Phase 2: directory nodes over the files' CIDs.
    let root: CID
    if (tree.single) {
      const only = table[0]
      if (only === undefined) throw new PackerError('SOURCE', `${source} was not packed (${skipped[0]?.reason ?? 'nothing to pack'})`, { subject: source })
      root = imported.get(only)!.cid
    } else {
      const entries = table.flatMap((t) => t.type === 'file'
        ? [{ path: t.storedName ?? importPath(t.path), file: imported.get(t)! }]
        : t.type === 'dir' && !hidden ? [{ path: importPath(t.path) }] : [])
      root = await importDirectories(entries, writer)
    }

    collectGarbage('major')
    // The file table, inside the set and beside the manifest.
    const { cid: tableCid, size: tableSize, file: tableFile } = await writeTable(opts.out, table, enc, writer)

    // The set descriptor, the last block: lets the CARs alone say what the set is (FORMAT.md §7).
    const { cid: descriptor, bytes: descriptorBytes } = await encodeDescriptor({
      root, table: tableCid, encrypted: enc !== null, names: enc ? enc.names : 'clear', binSize: opts.binSize, cars: writer.carRoots(),
    })
    await writer.put(descriptor, descriptorBytes)

    collectGarbage('major')
    const cars = await writer.finish()
    await writeFileDurably(path.join(opts.out, INDEX_FILE), writer.index.encode())
    const manifest: Manifest = {
      format: 'packer-car-set',
      version: MANIFEST_VERSION,
      createdBy: `packer ${VERSION}`,
      root: root.toString(),
      table: { cid: tableCid.toString(), file: tableFile, size: tableSize },
      descriptor: descriptor.toString(),
      index: { file: INDEX_FILE, blocks: writer.index.count },
      encryption: enc ? { scheme: 'age-v1', names: enc.names, recipients: enc.recipientKinds } : null,
      binSize: opts.binSize,
      cars,
    }
    faultPoint('manifest')
    await writeFileDurably(path.join(opts.out, MANIFEST_FILE), encodeManifest(manifest))
    await journal.finish({ ...args, setId: setIdOf(manifest) })
    const files = table.filter((t) => t.type === 'file')
    return {
      manifest,
      files: files.length,
      bytes: files.reduce((n, t) => n + t.size!, 0),
      skipped,
      resumed: kept > 0 ? { cars: kept, files: resumedFiles } : null,
      nothingToDo: false,
    }
  } catch (err) {
    await writer.abort()
    if (isErrno(err, 'ENOSPC')) {
      throw new PackerError('NO_SPACE', `no space left on the device of ${opts.out} (the set needs about ${formatSize(tree.totalBytes)} plus 1%); free space and rerun: packer continues where it stopped`, { subject: opts.out, cause: err })
    }
    throw err
  } finally {
    await pool.close()
  }
}

function sameSource (src: JournalFile['src'], e: SourceEntry): boolean {
  const now = sourceId(e)
  return src.dev === now.dev && src.ino === now.ino && src.size === now.size && src.mtimeNs === now.mtimeNs
}

/** The files of a journal whose blocks all lie in the CARs kept, by path. */
function resumableFiles (state: JournalState | null, kept: number): Map<string, JournalFile> {
  const out = new Map<string, JournalFile>()
  for (const f of state?.files ?? []) {
    if (f.entry.cars!.every((c) => c < kept)) out.set(f.entry.path.toString('latin1'), f)
  }
  return out
}

/** How many of the journal's CARs are present and intact (cheap checks); the rest are redone. */
async function keepCompleteCars (dir: string, state: JournalState): Promise<number> {
  for (let i = 0; i < state.cars.length; i++) {
    const from = i === 0 ? 0 : state.blockCounts[i - 1]
    const records = state.blocks.subarray(from * BLOCK_RECORD_SIZE, state.blockCounts[i] * BLOCK_RECORD_SIZE)
    if (!await checkCompleteCar(dir, state.cars[i], records)) return i
  }
  return state.cars.length
}

/** Phase 1 for one file: read (and encrypt) it into the CAR set; reread or skip it if it changes, as asked. */
async function packFile (e: SourceEntry, name: string | undefined, writer: CarSetWriter, enc: SetEncryption | null, onChange: OnChange,
  opts: PackOptions, ahead: Promise<OneLeafFile> | null, pool: LeafWorkers): Promise<{ entry: TableEntry, file: ImportedFile } | null> {
  for (let attempt = 1; ; attempt++) {
    const t = tableEntryOf(e)
    if (name !== undefined) t.storedName = name
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

async function writeTable (out: string, table: TableEntry[], enc: SetEncryption | null, writer: CarSetWriter): Promise<{ cid: CID, size: number, file: string }> {
  const text = (async function * () {
    yield Buffer.from(encodeTableHeader({ setIdentity: enc?.setIdentity }))
    let batch = ''
    for (const t of table) {
      batch += encodeTableEntry(t)
      if (batch.length > 1 << 20) { yield Buffer.from(batch); batch = '' }
    }
    if (batch) yield Buffer.from(batch)
  })()
  const file = enc ? TABLE_FILE_ENCRYPTED : TABLE_FILE_PLAIN
  const bytes = enc ? enc.sealTable(text) : text
  const tmp = path.join(out, `.${file}.tmp`)
  const fh = await fs.open(tmp, 'w')
  let size = 0
  let cid: CID
  try {
    const teed = (async function * () {
      for await (const chunk of bytes) {
        await fh.write(chunk)
        size += chunk.length
        yield chunk
      }
    })()
    cid = (await importFile(teed, writer)).cid
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await fs.rename(tmp, path.join(out, file))
  return { cid, size, file }
}
