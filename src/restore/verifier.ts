import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { createPieceHasher } from '../car/piece-hasher.js'
import { displayPath } from '../format/stored-path.js'
import type { CarRecord } from '../format/manifest.js'
import type { CarSet } from './car-set.js'
import { FileView } from './file-view.js'
import { PackerError } from '../errors.js'

export type CarStatus = 'ok' | 'missing' | 'truncated' | 'corrupt'

export interface CarReport {
  index: number
  car: CarRecord
  status: CarStatus
  detail: string
  /** Paths of the files with blocks in this CAR (empty when the file table could not be read). */
  affected: string[]
}

/**
 * verify: reads every CAR of the set once, end to end: re-hashes every block against its CID, checks the block count
 * and size, and recomputes the piece CID, comparing all of it with the manifest.
 */
export async function verifySet (set: CarSet, onCar?: (r: CarReport) => void, onBytes?: (n: number) => void): Promise<CarReport[]> {
  const reports: CarReport[] = []
  for (const [index, car] of set.manifest.cars.entries()) {
    const affected = set.entries.filter((e) => e.cars?.includes(index)).map((e) => displayPath(e.path))
    const r: CarReport = { index, car, affected, ...(await checkCar(set, index, car, onBytes)) }
    reports.push(r)
    onCar?.(r)
  }
  return reports
}

async function checkCar (set: CarSet, index: number, car: CarRecord, onBytes?: (n: number) => void): Promise<{ status: CarStatus, detail: string }> {
  const file = await set.locator.pathOf(index)
  if (file === null) {
    const named = await fs.stat(path.join(set.locator.dir, car.file)).catch(() => null)
    if (named?.isFile()) return { status: 'corrupt', detail: 'its header is damaged (it does not name the root the manifest records)' }
    return { status: 'missing', detail: `not found in ${set.locator.dir}` }
  }
  const size = (await fs.stat(file)).size
  const hasher = createPieceHasher()
  let seen = 0
  const tap = (async function * () {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      await hasher.update(chunk as Buffer)
      seen += (chunk as Buffer).length
      onBytes?.((chunk as Buffer).length)
      yield chunk as Uint8Array
    }
  })()
  let blocks = 0
  try {
    const it = await CarBlockIterator.fromIterable(tap)
    for await (const { cid, bytes } of it) {
      const digest = crypto.createHash('sha256').update(bytes).digest()
      if (cid.multihash.code !== 0x12 || !digest.equals(cid.multihash.digest)) {
        hasher.destroy?.()
        return { status: 'corrupt', detail: `block ${cid} does not match its hash` }
      }
      blocks++
    }
  } catch (err) {
    hasher.destroy?.()
    const msg = (err as Error).message
    if (size < car.size || /unexpected end/i.test(msg)) return { status: 'truncated', detail: `${size} of ${car.size} bytes` }
    return { status: 'corrupt', detail: `not a readable CAR (${msg})` }
  }
  if (size < car.size) return { status: 'truncated', detail: `${size} of ${car.size} bytes` }
  if (size !== car.size || seen !== car.size) return { status: 'corrupt', detail: `${size} bytes, the manifest says ${car.size}` }
  if (blocks !== car.blocks) return { status: 'corrupt', detail: `${blocks} blocks, the manifest says ${car.blocks}` }
  const piece = await hasher.digest()
  if (piece.pieceCid !== car.pieceCid || piece.paddedSize !== car.pieceSize) {
    return { status: 'corrupt', detail: `piece CID ${piece.pieceCid} differs from the manifest's ${car.pieceCid}` }
  }
  return { status: 'ok', detail: `${blocks} blocks, piece ${piece.pieceCid}` }
}

export interface FileReport { path: string, ok: boolean, detail: string }

/**
 * verify --decrypt: reads every file through the same path unpack takes (blocks hash-checked, age header MAC and every
 * payload chunk authenticated, sizes bound to the file table), writing nothing.
 */
export async function verifyFiles (set: CarSet, onFile?: (r: FileReport) => void, onBytes?: (n: number) => void): Promise<FileReport[]> {
  const view = new FileView(set)
  const reports: FileReport[] = []
  for (const e of set.entries) {
    if (e.type !== 'file') continue
    let r: FileReport
    try {
      let n = 0
      for await (const chunk of view.stream(e)) { n += chunk.length; onBytes?.(chunk.length) }
      r = n === e.size ? { path: displayPath(e.path), ok: true, detail: `${n} bytes` } : { path: displayPath(e.path), ok: false, detail: `${n} bytes, the file table says ${e.size}` }
    } catch (err) {
      if (!(err instanceof PackerError)) throw err
      r = { path: displayPath(e.path), ok: false, detail: err.message }
    }
    reports.push(r)
    onFile?.(r)
  }
  return reports
}
