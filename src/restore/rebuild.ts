import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { varint } from 'multiformats'
import * as dagCbor from '@ipld/dag-cbor'
import { PackerError } from '../errors.js'
import { BlockIndexBuilder, INDEX_FILE } from '../car/block-index.js'
import { createPieceHasher } from '../car/piece-hasher.js'
import { writeFileDurably } from '../car/durable-file.js'
import { decodeDescriptor, type SetDescriptor } from '../format/descriptor.js'
import { MANIFEST_FILE, MANIFEST_VERSION, encodeManifest, type CarRecord, type Manifest } from '../format/manifest.js'
import { parseHeader } from '../crypto/index.js'
import { VERSION } from '../version.js'
import { CarSet } from './car-set.js'
import { exporter } from 'ipfs-unixfs-exporter'

interface ScannedCar {
  file: string
  root: string
  size: number
  pieceCid: string
  pieceCidV2: string
  pieceSize: number
  /** digest, data offset, length of every block, in order. */
  blocks: Array<{ digest: Buffer, offset: number, length: number }>
  descriptor?: SetDescriptor & { cid: string }
}

/** Reads one CAR end to end: every block's hash checked, offsets recorded, piece CID computed, descriptor found. */
async function scanCar (dir: string, file: string): Promise<ScannedCar | null> {
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
  const out: ScannedCar = { file, root: '', size: 0, pieceCid: '', pieceCidV2: '', pieceSize: 0, blocks: [] }
  try {
    const it = await CarBlockIterator.fromIterable(tap)
    const roots = await it.getRoots()
    if (roots.length === 0) return null
    out.root = roots[0].toString()
    let at = headerLength
    for await (const { cid, bytes } of it) {
      const digest = crypto.createHash('sha256').update(bytes).digest()
      if (cid.multihash.code !== 0x12 || !digest.equals(cid.multihash.digest)) {
        throw new PackerError('CORRUPT', `CAR ${file} is damaged: block ${cid} does not match its hash; retrieve it again before rebuilding`, { subject: file })
      }
      const sectionLength = cid.bytes.length + bytes.length
      const offset = at + varint.encodingLength(sectionLength) + cid.bytes.length
      out.blocks.push({ digest, offset, length: bytes.length })
      at = offset + bytes.length
      const d = cid.code === dagCbor.code ? decodeDescriptor(bytes) : null
      if (d !== null) out.descriptor = { ...d, cid: cid.toString() }
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

/**
 * rebuild: when manifest.json (and blocks.idx) are lost, remake them from the CARs alone, reading each once. The set
 * descriptor (the last block of the set) gives the tree's root, the file table and every CAR's root in order; CARs
 * are recognised by content, whatever their names. Every block is hash-checked on the way.
 */
export async function rebuildSet (dir: string, warn: (m: string) => void, force = false): Promise<Manifest> {
  const existing = await fs.stat(path.join(dir, MANIFEST_FILE)).catch(() => null)
  if (existing && !force) throw new PackerError('OUTPUT', `${dir} already has a manifest.json; pass --force to replace it (and blocks.idx) with ones made from the CARs`, { subject: dir })
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.car')).sort()
  if (names.length === 0) throw new PackerError('FORMAT', `no .car files in ${dir}; give the directory that holds the set's CARs`, { subject: dir })
  const byRoot = new Map<string, ScannedCar>()
  let descriptor: (SetDescriptor & { cid: string }) | undefined
  for (const n of names) {
    const car = await scanCar(dir, n)
    if (car === null) { warn(`${n} is not a readable CAR; ignored`); continue }
    if (byRoot.has(car.root) && byRoot.get(car.root)!.size === car.size) { warn(`${n} duplicates ${byRoot.get(car.root)!.file}; ignored`); continue }
    byRoot.set(car.root, car)
    descriptor = car.descriptor ?? descriptor
  }
  if (descriptor === undefined) {
    throw new PackerError('FORMAT', `no packer set descriptor in the CARs of ${dir}: the last CAR of the set is missing, or these CARs were not written by packer`, { subject: dir })
  }
  // A descriptor that did not fit the last CAR listed starts a CAR of its own, which it cannot list.
  const order = descriptor.cars.map(String)
  if (byRoot.has(descriptor.cid) && !order.includes(descriptor.cid)) order.push(descriptor.cid)
  const missing = order.filter((r) => !byRoot.has(r))
  if (missing.length > 0) {
    throw new PackerError('MISSING_CAR', `${missing.length} of the set's ${order.length} CARs are not in ${dir} (first: the CAR whose root is ${missing[0]}); a manifest can only be rebuilt from all of them`, { subject: dir })
  }
  const index = new BlockIndexBuilder()
  const seen = new Set<string>()
  const cars: CarRecord[] = order.map((root, i) => {
    const c = byRoot.get(root)!
    for (const b of c.blocks) {
      const key = b.digest.toString('latin1')
      if (seen.has(key)) continue
      seen.add(key)
      index.add(b.digest, { car: i, offset: b.offset, length: b.length })
    }
    return { file: c.file, size: c.size, root: c.root, pieceCid: c.pieceCid, pieceCidV2: c.pieceCidV2, pieceSize: c.pieceSize, blocks: c.blocks.length }
  })
  await writeFileDurably(path.join(dir, INDEX_FILE), index.encode())
  const manifest: Manifest = {
    format: 'packer-car-set',
    version: MANIFEST_VERSION,
    createdBy: `packer ${VERSION} (rebuilt)`,
    root: descriptor.root.toString(),
    table: { cid: descriptor.table.toString(), file: descriptor.encrypted ? 'table.jsonl.age' : 'table.jsonl', size: 0 },
    descriptor: descriptor.cid,
    index: { file: INDEX_FILE, blocks: index.count },
    encryption: descriptor.encrypted ? { scheme: 'age-v1', names: descriptor.names === 'plain' ? 'plain' : 'hidden', recipients: [] } : null,
    binSize: descriptor.binSize,
    cars,
  }
  // The table's size, and for an encrypted set the stanza types its age header names (readable without a key).
  await writeFileDurably(path.join(dir, MANIFEST_FILE), encodeManifest(manifest))
  const set = await CarSet.open(dir, { skipTable: true })
  try {
    const table = await exporter(descriptor.table, set.blocks.blockstore as any)
    if (table.type !== 'file' && table.type !== 'raw') throw new PackerError('FORMAT', `the set descriptor's table ${descriptor.table} is not a file`)
    manifest.table.size = Number(table.size)
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
}

