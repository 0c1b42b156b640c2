import crypto from 'node:crypto'
import path from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { createPieceHasher } from '../car/piece-hasher.js'
import { displayPath } from '../format/stored-path.js'
import type { CarRecord } from '../format/manifest.js'
import type { CarSet } from '../read/car-set.js'
import { FileView } from '../read/file-view.js'
import { SetReader, streamingReaderOptions } from '../read/reader.js'
import { PackerError } from '../errors.js'
import { MissingCarError, type Occupant, type WholeCar } from '../store/car-store.js'

export type CarStatus = 'ok' | 'misnamed' | 'missing' | 'truncated' | 'corrupt'

export interface CarReport {
  index: number
  car: CarRecord
  status: CarStatus
  detail: string
  /** The file read as this CAR (found by content), null when none is; for 'misnamed', a name that is not `car.file`. */
  file: string | null
}

export interface SetReport {
  cars: CarReport[]
  /** Extra copies of CARs found whole elsewhere, under names that are none of the manifest's: harmless, not read. */
  copies: Array<{ file: string, car: number }>
}

/**
 * verify: reads every CAR of the set once, end to end: re-hashes every block against its CID, checks the block count
 * and size, and recomputes the piece CID, comparing all of it with the manifest. The file holding a CAR is found by
 * its header root (a first guess); the recomputed piece CID says which piece the file really holds, and a file that
 * holds a whole CAR under a name other than that CAR's `file` is MISNAMED: deal tools and storage providers take a
 * CAR by its name.
 */
export async function verifySet (set: CarSet, onCar?: (r: CarReport) => void, onBytes?: (n: number) => void): Promise<SetReport> {
  const cars = set.manifest.cars
  const found: Array<WholeCar | null> = []
  for (let i = 0; i < cars.length; i++) found.push(await set.cars.whole(i))
  const copies = await set.cars.extraCopies()
  const reports: CarReport[] = []
  for (const [index, car] of cars.entries()) {
    const file = found[index]
    const verdict = file === null
      ? absent(set, car, await set.cars.occupant(index))
      : named(set, car, file, await checkCar(file, car, onBytes), file.ownName ? { kind: 'none' } : await set.cars.occupant(index))
    const r: CarReport = { index, car, file: file?.name ?? null, ...verdict }
    reports.push(r)
    onCar?.(r)
  }
  const manifestNames = new Set(cars.map((c) => path.join(set.cars.where, c.file)))
  return { cars: reports, copies: copies.filter((c) => !manifestNames.has(c.file)) }
}

interface Verdict { status: CarStatus, detail: string }

/** No file holds the CAR's header root: what is under its name, if anything, says whether it is lost or damaged. */
function absent (set: CarSet, car: CarRecord, under: Occupant): Verdict {
  if (under.kind === 'none') return { status: 'missing', detail: `not found in ${set.cars.where}` }
  if (under.kind === 'other') return { status: 'corrupt', detail: 'its header is damaged (it does not name the root the manifest records)' }
  return { status: 'missing', detail: `not found in ${set.cars.where}; the file of that name has the header of CAR ${set.manifest.cars[under.car].file}` }
}

/** A whole CAR under a name not its own is MISNAMED; damage found in a file under another name says which file. */
function named (set: CarSet, car: CarRecord, file: WholeCar, content: Verdict, under: Occupant): Verdict {
  if (file.ownName) return content
  const name = path.basename(file.name)
  if (content.status !== 'ok') return { ...content, detail: `found as ${name}: ${content.detail}` }
  const cars = set.manifest.cars
  const claimed = cars.find((c) => c.file === name)
  const says = claimed ? `, not piece ${claimed.pieceCid} as its name says` : ''
  // A CAR found under the right name has its own line, which says what it holds.
  const now = under.kind === 'none'
    ? ', which is missing'
    : under.kind === 'other'
      ? `; ${car.file} holds another file, which is not a CAR of this set`
      : under.kind === 'copy' ? `; ${car.file} holds a copy of CAR ${cars[under.car].file} (by its header)` : ''
  return { status: 'misnamed', detail: `holds piece ${car.pieceCid}${says}; it should be named ${car.file}${now}` }
}

/** Reads one CAR end to end: every block's hash, the size, the block count and the piece CID. */
async function checkCar (file: WholeCar, car: CarRecord, onBytes?: (n: number) => void): Promise<Verdict> {
  const size = file.size
  const hasher = createPieceHasher()
  let seen = 0
  const tap = (async function * () {
    for await (const chunk of file.stream()) {
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
    if (err instanceof MissingCarError) return { status: 'missing', detail: err.message }
    if (err instanceof PackerError && err.code === 'REMOTE') throw err
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
 * verify --decrypt: reads every file through decryption (blocks hash-checked, age header MAC and every payload chunk
 * authenticated, sizes bound to the file table), writing nothing. A file stored compressed is read as unpack reads it
 * (its stream's age chunks, whose header has no part in them, then its frames decompressed on the reader's worker
 * threads, read ahead); the reader and its threads are made at the first such file.
 */
export async function verifyFiles (set: CarSet, onFile?: (r: FileReport) => void, onBytes?: (n: number) => void): Promise<void> {
  const view = new FileView(set)
  let reader: SetReader | undefined
  try {
    for await (const e of set.files.entries()) {
      if (e.type !== 'file') continue
      let r: FileReport
      try {
        let n = 0
        const chunks = e.compression === undefined ? view.stream(e) : (reader ??= new SetReader(set, streamingReaderOptions(set))).stream(e)
        for await (const chunk of chunks) { n += chunk.length; onBytes?.(chunk.length) }
        r = n === e.size ? { path: displayPath(e.path), ok: true, detail: `${n} bytes` } : { path: displayPath(e.path), ok: false, detail: `${n} bytes, the file table says ${e.size}` }
      } catch (err) {
        if (!(err instanceof PackerError)) throw err
        r = { path: displayPath(e.path), ok: false, detail: err.message }
      }
      onFile?.(r)
    }
  } finally {
    await reader?.close()
  }
}
