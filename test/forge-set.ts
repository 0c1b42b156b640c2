/**
 * Hand-made version-2 sets, built with packer's own writers (CAR set writer, UnixFS import, table index and chunk
 * records, descriptor, block index, manifest) from table text a test writes line by line: so a test can make the
 * damaged or malicious sets pack never writes (a name '..', a directory line naming a symlink, entries out of order,
 * a chunk whose counts disagree with the index…) and check what the readers do with them.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { CarSetWriter } from '../src/car/car-set-writer.js'
import { dirCarSink } from '../src/car/dir-sink.js'
import { INDEX_FILE, compareBlockRecords, writeBlockIndex } from '../src/car/block-index.js'
import { encodeCarList, encodeDescriptor } from '../src/format/descriptor.js'
import { MANIFEST_FILE, encodeManifest, type Manifest } from '../src/format/manifest.js'
import { encodeChunkRecord, encodeTableIndexHeader } from '../src/format/table.js'
import { importFile } from '../src/pack/unixfs.js'

type Json = Record<string, unknown>

/**
 * One line of a chunk: a directory line (`{dir}`), or an entry line whose missing fields get defaults; a file given
 * as `data` is stored in the set and gets its `cid`, `size` and `cars`.
 */
export type ForgedLine = { dir: string } | ({ name: string, type: 'file' | 'dir' | 'symlink', data?: Buffer } & Json)

export interface ForgeOptions {
  /** The table: its chunks, each a list of lines. */
  chunks: ForgedLine[][]
  /** Changes a chunk's index record before it is written (`first` is `{dir, name}`). */
  record?: (record: Json, chunk: number) => void
  /** Changes the index's header line. */
  header?: (header: Json) => void
  /** Largest CAR (default: one CAR for everything). */
  binSize?: number
  /** List the CARs through CAR-list blocks (as a set of more than 16,384 CARs does), this many to a list. */
  carListSize?: number
}

const DEFAULTS: Record<string, Json> = {
  file: { mode: 0o644 },
  dir: { mode: 0o755 },
  symlink: { mode: 0o777, target: 'elsewhere' },
}

/** Writes a version-2 set into `dir` (new or empty) and returns its manifest. */
export async function forgeSet (dir: string, o: ForgeOptions): Promise<Manifest> {
  await fs.mkdir(dir, { recursive: true })
  const records: Buffer[] = []
  const writer = new CarSetWriter({ sink: dirCarSink(dir), binSize: o.binSize ?? 1 << 30, onRecord: (r) => records.push(r) })
  const put = async (bytes: Buffer): Promise<{ cid: string, cars: number[] }> => {
    writer.takeTouchedCars()
    const { cid } = await importFile([bytes], writer)
    return { cid: cid.toString(), cars: writer.takeTouchedCars() }
  }
  const texts: Array<{ text: string, entries: number, files: number, first: Json }> = []
  for (const chunk of o.chunks) {
    let entries = 0
    let files = 0
    let dirLine = ''
    let first: Json | undefined
    const lines: string[] = []
    for (const line of chunk) {
      if ('dir' in line) {
        dirLine = line.dir
        lines.push(JSON.stringify(line))
        continue
      }
      const { data, ...fields } = line
      const e: Json = { ...DEFAULTS[line.type], mtime: '1700000000000000000', uid: 0, gid: 0, ...fields }
      if (data !== undefined) {
        const stored = await put(data)
        Object.assign(e, { size: data.length, cid: stored.cid, cars: stored.cars }, fields)
      }
      first ??= { dir: dirLine, name: line.name }
      entries++
      if (line.type === 'file') files++
      lines.push(JSON.stringify(e))
    }
    texts.push({ text: lines.map((l) => l + '\n').join(''), entries, files, first: first ?? { dir: dirLine, name: 'none' } })
  }
  const index: string[] = []
  let entries = 0
  let files = 0
  for (const [i, t] of texts.entries()) {
    const stored = await put(Buffer.from(t.text))
    const r = JSON.parse(encodeChunkRecord({ cid: stored.cid, size: Buffer.byteLength(t.text), entries: t.entries, files: t.files, first: Buffer.from('x') })) as Json
    r.first = t.first
    o.record?.(r, i)
    index.push(JSON.stringify(r) + '\n')
    entries += t.entries
    files += t.files
  }
  const header = JSON.parse(encodeTableIndexHeader({ entries, files, chunks: texts.length })) as Json
  o.header?.(header)
  const table = (await importFile([Buffer.from(JSON.stringify(header) + '\n' + index.join(''))], writer)).cid
  // No UnixFS tree: readers restore from the table; the root is the table index, a block every set has.
  const roots = writer.carRoots()
  const carLists = []
  if (o.carListSize !== undefined) {
    for (let i = 0; i < roots.length; i += o.carListSize) {
      const list = await encodeCarList(roots.slice(i, i + o.carListSize))
      await writer.put(list.cid, list.bytes)
      carLists.push(list.cid)
    }
  }
  const binSize = o.binSize ?? 1 << 30
  const descriptor = await encodeDescriptor({
    root: table, table, encrypted: false, names: 'clear', single: false, binSize, cars: carLists.length > 0 ? [] : roots, carLists,
  })
  await writer.put(descriptor.cid, descriptor.bytes)
  const cars = await writer.finish()
  records.sort(compareBlockRecords)
  const blocks = await writeBlockIndex(path.join(dir, INDEX_FILE), (async function * () { yield * records })())
  const manifest: Manifest = {
    format: 'packer-car-set',
    version: 2,
    createdBy: 'packer test forgery',
    root: table.toString(),
    single: false,
    table: { cid: table.toString() },
    descriptor: descriptor.cid.toString(),
    index: { file: INDEX_FILE, blocks },
    encryption: null,
    binSize,
    cars,
  }
  await fs.writeFile(path.join(dir, MANIFEST_FILE), encodeManifest(manifest))
  return manifest
}
