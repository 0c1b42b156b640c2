import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { varint } from 'multiformats'
import * as dagCbor from '@ipld/dag-cbor'
import { PackerError } from '../errors.js'
import { INDEX_FILE, decodeBlockRecord, encodeBlockRecord, writeBlockIndex } from '../car/block-index.js'
import { createPieceHasher } from '../car/piece-hasher.js'
import { syncDir, writeFileDurably } from '../car/durable-file.js'
import { decodeCarList, decodeDescriptor, type SetDescriptor } from '../format/descriptor.js'
import { MANIFEST_FILE, encodeManifest, type CarRecord, type Manifest } from '../format/manifest.js'
import { parseHeader } from '../crypto/index.js'
import { ExternalSorter } from '../spill/external-sort.js'
import { VERSION } from '../version.js'
import { LIMITS } from '../limits.js'
import { CarSet } from '../read/car-set.js'
import { exporter } from 'ipfs-unixfs-exporter'

interface ScannedCar {
  file: string
  root: string
  size: number
  pieceCid: string
  pieceCidV2: string
  pieceSize: number
  blocks: number
  descriptor?: SetDescriptor & { cid: string, version: number }
}

/**
 * Reads one CAR end to end: every block's hash checked, its block-index record (CAR `scanned`: its position among the
 * files read) handed to `onRecord`, piece CID computed, descriptor and CAR lists found. null: not a readable CAR.
 */
async function scanCar (dir: string, file: string, scanned: number, onRecord: (r: Buffer) => Promise<void>, carLists: Map<string, string[]>): Promise<ScannedCar | null> {
  const full = path.join(dir, file)
  const hasher = createPieceHasher()
  let headerLength = -1
  const tap = (async function * () {
    for await (const chunk of createReadStream(full, { highWaterMark: 1 << 20 })) {
      const b = chunk as Buffer
      if (headerLength < 0) { const [len, n] = varint.decode(b); headerLength = len + n }
      await hasher.update(b)
      yield b as Uint8Array
    }
  })()
  const out: ScannedCar = { file, root: '', size: 0, pieceCid: '', pieceCidV2: '', pieceSize: 0, blocks: 0 }
  try {
    const it = await CarBlockIterator.fromIterable(tap)
    const roots = await it.getRoots()
    if (roots.length === 0) return null
    out.root = roots[0]!.toString()
    let at = headerLength
    for await (const { cid, bytes } of it) {
      const digest = crypto.createHash('sha256').update(bytes).digest()
      if (cid.multihash.code !== 0x12 || !digest.equals(cid.multihash.digest)) {
        throw new PackerError('CORRUPT', `CAR ${file} is damaged: block ${cid} does not match its hash; retrieve it again before rebuilding`, { subject: file })
      }
      const sectionLength = cid.bytes.length + bytes.length
      const offset = at + varint.encodingLength(sectionLength) + cid.bytes.length
      await onRecord(encodeBlockRecord(digest, { car: scanned, offset, length: bytes.length }))
      out.blocks++
      at = offset + bytes.length
      if (cid.code === dagCbor.code) {
        const d = decodeDescriptor(bytes)
        if (d !== null) out.descriptor = { ...d, cid: cid.toString() }
        const list = d === null ? decodeCarList(bytes) : null
        if (list !== null) carLists.set(cid.toString(), list.map(String))
      }
    }
    out.size = at
  } catch (err) {
    hasher.destroy?.()
    if (err instanceof PackerError) throw err
    return null // not a CAR, or not one of ours: ignored
  }
  const piece = await hasher.digest()
  return { ...out, pieceCid: piece.pieceCid, pieceCidV2: piece.pieceCidV2, pieceSize: piece.paddedSize }
}

/** The CARs' roots in set order, from the descriptor (FORMAT.md §7): listed ones, then CARs started by a list or by it. */
function carOrder (d: SetDescriptor & { cid: string }, carLists: Map<string, string[]>, present: (root: string) => boolean): string[] {
  const order = d.cars.map(String)
  for (const l of d.carLists.map(String)) {
    const roots = carLists.get(l)
    if (roots === undefined) throw new PackerError('MISSING_CAR', `the CAR list block ${l} named by the set descriptor is in none of the CARs; a manifest can only be rebuilt from all of them`)
    order.push(...roots)
  }
  for (const own of [...d.carLists.map(String), d.cid]) if (present(own) && !order.includes(own)) order.push(own)
  return order
}

/**
 * The set whose CARs are in the directory: the one descriptor whose CARs are all there (CARs of other sets may lie
 * beside them). Refuses when no set is complete, or when the CARs of several complete sets are mixed.
 */
function chooseSet (dir: string, found: Array<SetDescriptor & { cid: string, version: number }>, carLists: Map<string, string[]>, byRoot: Map<string, unknown>): { descriptor: SetDescriptor & { cid: string, version: number }, order: string[] } {
  if (found.length === 0) {
    throw new PackerError('FORMAT', `no packer set descriptor in the CARs of ${dir}: the last CAR of the set is missing, or these CARs were not written by packer`, { subject: dir })
  }
  const sets = found.map((descriptor) => {
    try {
      const order = carOrder(descriptor, carLists, (r) => byRoot.has(r))
      return { descriptor, order, missing: order.filter((r) => !byRoot.has(r)), error: null }
    } catch (err) {
      if (!(err instanceof PackerError)) throw err
      return { descriptor, order: [], missing: [], error: err }
    }
  })
  const complete = sets.filter((s) => s.error === null && s.missing.length === 0)
  if (complete.length === 1) return complete[0]!
  if (complete.length > 1) {
    throw new PackerError('FORMAT', `${dir} holds the CARs of ${complete.length} sets (set IDs ${complete.map((s) => String(s.descriptor.table)).join(', ')}); put each set's CARs in a directory of their own and rebuild each`, { subject: dir })
  }
  if (sets.length > 1) {
    throw new PackerError('MISSING_CAR', `${dir} holds CARs of ${sets.length} sets (set IDs ${sets.map((s) => String(s.descriptor.table)).join(', ')}), none of them complete; a manifest can only be rebuilt from all the CARs of a set`, { subject: dir })
  }
  const only = sets[0]!
  if (only.error !== null) throw only.error
  throw new PackerError('MISSING_CAR', `${only.missing.length} of the set's ${only.order.length} CARs are not in ${dir} (first: the CAR whose root is ${only.missing[0]}); a manifest can only be rebuilt from all of them`, { subject: dir })
}

/**
 * rebuild: when manifest.json (and blocks.idx) are lost, remake them from the CARs alone, reading each once. The set
 * descriptor (the last block of the set) gives the tree's root, the file table and every CAR's root in order; CARs
 * are recognised by content, whatever their names. Every block is hash-checked on the way. The block index's records
 * are sorted on disk: memory does not grow with the number of blocks.
 */
export async function rebuildSet (dir: string, warn: (m: string) => void, force = false): Promise<Manifest> {
  const existing = await fs.stat(path.join(dir, MANIFEST_FILE)).catch(() => null)
  if (existing && !force) throw new PackerError('OUTPUT', `${dir} already has a manifest.json; pass --force to replace it (and blocks.idx) with ones made from the CARs`, { subject: dir })
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.car')).sort()
  if (names.length === 0) throw new PackerError('FORMAT', `no .car files in ${dir}; give the directory that holds the set's CARs`, { subject: dir })
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'packer-rebuild-'))
  const sorter = new ExternalSorter({ dir: work, memoryLimit: LIMITS.sortMemory, keyBytes: 32 })
  try {
    const scanned: ScannedCar[] = []
    const byRoot = new Map<string, number[]>()
    const carLists = new Map<string, string[]>()
    const descriptors = new Map<string, SetDescriptor & { cid: string, version: number }>()
    const positions: number[] = [] // of each kept CAR among the files read: its records carry that number
    for (const [position, n] of names.entries()) {
      const car = await scanCar(dir, n, position, async (r) => { await sorter.add(r) }, carLists)
      if (car === null) { warn(`${n} is not a readable CAR; ignored`); continue }
      const same = byRoot.get(car.root) ?? []
      const twin = same.find((i) => scanned[i]!.size === car.size)
      if (twin !== undefined) { warn(`${n} duplicates ${scanned[twin]!.file}; ignored`); continue }
      byRoot.set(car.root, [...same, scanned.length])
      scanned.push(car)
      positions.push(position)
      if (car.descriptor !== undefined) descriptors.set(car.descriptor.cid, car.descriptor)
    }
    const { descriptor, order } = chooseSet(dir, [...descriptors.values()], carLists, byRoot)
    for (const root of order) {
      const files = byRoot.get(root)!.map((i) => scanned[i]!)
      if (files.length > 1) {
        throw new PackerError('FORMAT', `${files.map((c) => `${c.file} (${c.size} bytes)`).join(' and ')} start with the same block but differ: one is damaged or not of this set; move the wrong one away (packer verify tells which) and rerun`, { subject: dir })
      }
    }
    const inSet = new Set(order)
    for (const c of scanned) if (!inSet.has(c.root)) warn(`${c.file} is not a CAR of this set (set ID ${descriptor.table}); ignored`)
    // Position among the files read → position in the set (a duplicate, or a CAR of another set, has none: its records are dropped).
    const setIndex = new Map<number, number>()
    order.forEach((root, i) => setIndex.set(positions[byRoot.get(root)![0]!]!, i))
    const cars: CarRecord[] = order.map((root) => {
      const c = scanned[byRoot.get(root)![0]!]!
      return { file: c.file, size: c.size, root: c.root, pieceCid: c.pieceCid, pieceCidV2: c.pieceCidV2, pieceSize: c.pieceSize, blocks: c.blocks }
    })
    const tmp = path.join(dir, `.${INDEX_FILE}.tmp`)
    const blocks = await writeBlockIndex(tmp, inSetOrder(sorter.sorted(), setIndex))
    await fs.rename(tmp, path.join(dir, INDEX_FILE))
    await syncDir(dir)

    const v1 = descriptor.version < 2
    const manifest: Manifest = {
      format: 'packer-car-set',
      version: v1 ? 1 : 2,
      createdBy: `packer ${VERSION} (rebuilt)`,
      root: descriptor.root.toString(),
      ...(v1 ? {} : { single: descriptor.single }),
      table: v1 ? { cid: descriptor.table.toString(), file: descriptor.encrypted ? 'table.jsonl.age' : 'table.jsonl', size: 0 } : { cid: descriptor.table.toString() },
      descriptor: descriptor.cid,
      index: { file: INDEX_FILE, blocks },
      encryption: descriptor.encrypted ? { scheme: 'age-v1', names: descriptor.names === 'plain' ? 'plain' : 'hidden', recipients: [] } : null,
      binSize: descriptor.binSize,
      cars,
    }
    // The table's size (version 1), and for an encrypted set the stanza types its age header names (readable without a key).
    await writeFileDurably(path.join(dir, MANIFEST_FILE), encodeManifest(manifest))
    const set = await CarSet.open(dir, { skipTable: true })
    try {
      const table = await exporter(descriptor.table, set.blocks.blockstore as any)
      if (table.type !== 'file' && table.type !== 'raw') throw new PackerError('FORMAT', `the set descriptor's table ${descriptor.table} is not a file`)
      if (v1) manifest.table.size = Number(table.size)
      if (manifest.encryption) {
        const parts: Uint8Array[] = []
        for await (const p of table.content({ length: 64 * 1024 })) parts.push(p)
        manifest.encryption.recipients = [...new Set(parseHeader(Buffer.concat(parts)).stanzas.map((st) => st.type))]
      }
    } finally {
      await set.close()
    }
    await writeFileDurably(path.join(dir, MANIFEST_FILE), encodeManifest(manifest))
    return manifest
  } finally {
    await sorter.dispose()
    await fs.rm(work, { recursive: true, force: true })
  }
}

/**
 * Records sorted by digest, their CAR turned from scanned position into set position (records of CARs outside the
 * set dropped), those of one digest ordered by CAR as the index wants.
 */
async function * inSetOrder (sorted: AsyncIterable<Uint8Array>, setIndex: Map<number, number>): AsyncGenerator<Buffer> {
  let group: Buffer[] = []
  const flush = function * (): Generator<Buffer> {
    group.sort((a, b) => a.readUInt32LE(32) - b.readUInt32LE(32))
    yield * group
    group = []
  }
  for await (const r of sorted) {
    const rec = decodeBlockRecord(r)
    const car = setIndex.get(rec.car)
    if (car === undefined) continue
    if (group.length > 0 && !group[0]!.subarray(0, 32).equals(rec.digest)) yield * flush()
    group.push(encodeBlockRecord(rec.digest, { ...rec, car }))
  }
  yield * flush()
}
