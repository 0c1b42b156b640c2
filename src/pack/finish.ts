import fs from 'node:fs/promises'
import path from 'node:path'
import { CID } from 'multiformats/cid'
import type { CarSetWriter } from '../car/car-set-writer.js'
import { INDEX_FILE, writeBlockIndex } from '../car/block-index.js'
import type { SetOutput } from '../car/set-output.js'
import { MANIFEST_FILE, MANIFEST_VERSION, encodeManifest, type Manifest } from '../format/manifest.js'
import { MAX_INLINE_CARS, encodeCarList, encodeDescriptor } from '../format/descriptor.js'
import { TableChunker, encodeChunkRecord, encodeTableIndexHeader, hiddenName, isWithin, splitEntryPath, type ChunkText } from '../format/table.js'
import type { TableEntry } from '../format/table-entry.js'
import { ExternalSorter, SharedSortBudget } from '../spill/external-sort.js'
import { Appender, readLines } from '../spill/lines.js'
import { VERSION } from '../version.js'
import { collectGarbage } from '../memory.js'
import { faultPoint } from '../fault.js'
import { LIMITS } from '../limits.js'
import { DirectoryTree } from './directory-tree.js'
import { UnixfsDirectory } from './unixfs-directory.js'
import { importFile } from './unixfs.js'
import { sealTablePart, type SetEncryption } from './set-encryption.js'
import type { JournalItem } from './journal.js'


export interface FinishOptions {
  output: SetOutput
  /** The writer the files' blocks went to: the final stage's blocks follow them. */
  writer: CarSetWriter
  /** The set's directories and entries in table order (a pack's journal): read twice. */
  items: () => AsyncIterable<JournalItem>
  /** The block-index records of every block written, in write order (read once, after the last CAR). */
  records: () => AsyncIterable<Buffer>
  enc: SetEncryption | null
  single: boolean
  binSize: number
  /** A private directory for temporary files (spilled directories, sorted runs). */
  workDir: string
}

/**
 * The final stage of a pack (and of a join): from the entries of the set in table order, writes the directory nodes,
 * the file table (chunks and index), the set descriptor, then the block index and manifest.json, last (its presence
 * means the set is complete). Everything streams: memory does not grow with the number of entries.
 */
export async function finishSet (o: FinishOptions): Promise<Manifest> {
  const root = o.single ? await singleRoot(o.items()) : o.enc?.names === 'hidden'
    ? await hiddenTree(collecting(o.items()), o.writer, path.join(o.workDir, 'hidden'))
    : await plainTree(collecting(o.items()), o.writer, path.join(o.workDir, 'tree'))
  collectGarbage('major')
  const table = await writeTable(o)
  collectGarbage('major')

  // The set descriptor, the last block: lets the CARs alone say what the set is (FORMAT.md §7).
  const roots = o.writer.carRoots()
  const carLists: CID[] = []
  if (roots.length > MAX_INLINE_CARS) {
    for (let i = 0; i < roots.length; i += MAX_INLINE_CARS) {
      const list = await encodeCarList(roots.slice(i, i + MAX_INLINE_CARS))
      await o.writer.put(list.cid, list.bytes)
      carLists.push(list.cid)
    }
  }
  const descriptor = await encodeDescriptor({
    root, table, encrypted: o.enc !== null, names: o.enc ? o.enc.names : 'clear', single: o.single, binSize: o.binSize,
    cars: carLists.length > 0 ? [] : roots, carLists,
  })
  await o.writer.put(descriptor.cid, descriptor.bytes)
  const cars = await o.writer.finish()

  const blocks = await writeIndex(o)
  const manifest: Manifest = {
    format: 'packer-car-set',
    version: MANIFEST_VERSION,
    createdBy: `packer ${VERSION}`,
    root: root.toString(),
    single: o.single,
    table: { cid: table.toString() },
    descriptor: descriptor.cid.toString(),
    index: { file: INDEX_FILE, blocks },
    encryption: o.enc ? { scheme: 'age-v1', names: o.enc.names, recipients: o.enc.recipientKinds } : null,
    binSize: o.binSize,
    cars,
  }
  faultPoint('manifest')
  await o.output.putBytes(MANIFEST_FILE, Buffer.from(encodeManifest(manifest)))
  return manifest
}

/** Journal items read between full garbage collections in the final stage (~20–40 ms each). */
const GC_EVERY_ITEMS = 65536

/**
 * The journal's items, with a full garbage collection every GC_EVERY_ITEMS: each pass parses an object per entry that
 * outlives the young generation, and V8 let them pile up in the old one (pack of 5,000,000 files peaked at 308 MB in
 * this stage, 184 MB while packing the files, which collects every 4096).
 */
async function * collecting<T> (items: AsyncIterable<T>): AsyncGenerator<T> {
  let n = 0
  for await (const item of items) {
    yield item
    if (++n % GC_EVERY_ITEMS === 0) collectGarbage('major')
  }
}

async function * entriesOf (items: AsyncIterable<JournalItem>): AsyncGenerator<{ entry: TableEntry, dagSize?: number }> {
  for await (const item of items) if ('entry' in item) yield item
}

/** A single-file source: the root is that file. */
async function singleRoot (items: AsyncIterable<JournalItem>): Promise<CID> {
  for await (const { entry } of entriesOf(items)) if (entry.type === 'file') return CID.parse(entry.cid!)
  throw new Error('finishSet: a single-file set without its file')
}

/** Hidden names: one flat directory (a HAMT when large) of every file, the n-th named hiddenName(n) (FORMAT.md §1). */
async function hiddenTree (items: AsyncIterable<JournalItem>, writer: CarSetWriter, tmpDir: string): Promise<CID> {
  const dir = new UnixfsDirectory({ tmpDir, budget: new SharedSortBudget(LIMITS.directoryBudget) })
  try {
    let n = 0
    for await (const { entry, dagSize } of entriesOf(items)) {
      if (entry.type === 'file') await dir.addFile(hiddenName(n++), CID.parse(entry.cid!), dagSize!)
    }
    return (await dir.finish(writer)).cid
  } finally {
    await dir.dispose()
  }
}

/**
 * The tree of a set in clear or with plain names: its directories (symlinks are only in the table). Names go to UnixFS
 * as strings, lossily for names that are not UTF-8; should two names of one directory become equal that way, only
 * the first is linked (and a directory left out takes its whole subtree with it): the table keeps the exact bytes.
 */
async function plainTree (items: AsyncIterable<JournalItem>, writer: CarSetWriter, tmpDir: string): Promise<CID> {
  const tree = new DirectoryTree({ sink: writer, tmpDir, memoryBudget: LIMITS.directoryBudget })
  try {
    const left: Buffer[] = [] // directories left out, rare
    let skipping = false
    let lossyNames = new Set<string>()
    for await (const item of items) {
      if ('dir' in item) {
        skipping = left.some((d) => isWithin(item.dir, d))
        lossyNames = new Set()
        if (!skipping) await tree.beginDirectory(item.dir.toString('utf8'))
        continue
      }
      const e = item.entry
      if (skipping || e.type === 'symlink') continue
      const name = splitEntryPath(e.path).name.toString('utf8')
      if (name.includes('\uFFFD')) {
        if (lossyNames.has(name)) {
          if (e.type === 'dir') left.push(e.path)
          continue
        }
        lossyNames.add(name)
      }
      if (e.type === 'file') await tree.addFile(name, CID.parse(e.cid!), item.dagSize!)
      else tree.addDirectory(name)
    }
    return (await tree.finish()).cid
  } finally {
    await tree.dispose()
  }
}

/** The file table: its chunks (each an age file when encrypted), then the index, whose CID is the set ID. */
async function writeTable (o: FinishOptions): Promise<CID> {
  const records = new Appender(path.join(o.workDir, 'table-index.jsonl'))
  await fs.writeFile(records.file, '', { mode: 0o600 })
  const chunker = new TableChunker()
  let entries = 0
  let files = 0
  let chunks = 0
  const store = async (c: ChunkText): Promise<void> => {
    const plain = Buffer.from(c.text)
    let stored = 0
    const count = async function * (bytes: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
      for await (const b of bytes) { stored += b.length; yield b }
    }
    let cid: CID
    let enc
    if (o.enc !== null) {
      const sealed = sealTablePart(o.enc, plain)
      cid = (await importFile(count(sealed.bytes), o.writer)).cid
      enc = sealed.enc
    } else {
      cid = (await importFile(count([plain]), o.writer)).cid
    }
    await records.write(encodeChunkRecord({ cid: cid.toString(), size: stored, entries: c.entries, files: c.files, first: c.first, enc }))
    entries += c.entries
    files += c.files
    chunks++
  }
  for await (const { entry } of entriesOf(collecting(o.items()))) {
    const done = chunker.add(entry)
    if (done !== null) await store(done)
  }
  const last = chunker.finish()
  if (last !== null) await store(last)
  await records.close()

  const header = encodeTableIndexHeader({ entries, files, chunks, setIdentity: o.enc?.setIdentity })
  const text = (async function * () {
    yield Buffer.from(header)
    let batch: string[] = []
    let size = 0
    for await (const line of readLines(records.file)) {
      if (line === '') continue
      batch.push(line + '\n')
      size += line.length + 1
      if (size >= 1 << 20) { yield Buffer.from(batch.join('')); batch = []; size = 0 }
    }
    if (batch.length > 0) yield Buffer.from(batch.join(''))
  })()
  const cid = (await importFile(o.enc ? o.enc.sealTable(text) : text, o.writer)).cid
  await fs.rm(records.file, { force: true })
  return cid
}

/** blocks.idx from every block's record: sorted on disk, written with its fence, put in place whole. */
async function writeIndex (o: FinishOptions): Promise<number> {
  const sorter = new ExternalSorter({ dir: path.join(o.workDir, 'index'), memoryLimit: LIMITS.sortMemory, keyBytes: 32 })
  try {
    for await (const r of o.records()) await sorter.add(r)
    let count = 0
    await o.output.putFile(INDEX_FILE, async (file) => { count = await writeBlockIndex(file, sorter.sorted()) }, o.workDir)
    return count
  } finally {
    await sorter.dispose()
  }
}
