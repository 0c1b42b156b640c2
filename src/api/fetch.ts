import { createReadStream } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { createPieceHasher, hashAndWrite, type PieceHasher } from '../car/piece-hasher.js'
import { syncDir, writeFileDurably } from '../car/durable-file.js'
import { WriteQueue } from '../car/write-queue.js'
import { MANIFEST_FILE, type CarRecord } from '../format/manifest.js'
import { CarSet } from '../read/car-set.js'
import type { CarSource, CarStore, WholeCar } from '../store/car-store.js'
import type { Callbacks, ProgressEvent } from './events.js'
import { httpTimeouts } from './set.js'

/** CARs downloaded at once. */
const PARALLEL_CARS = 4

export interface FetchOptions extends Callbacks<FetchEvent> {
  /** The directory the set is written into (created when absent). */
  output: string
  /** Fetch the CARs from these URL templates ({pieceCid}, {pieceCidV2}) instead of beside the manifest. */
  pieceUrls?: string[]
  /** Longest wait for a web server (connect, answer, between two pieces of a body), in ms; default 30 s. */
  httpTimeoutMs?: number
}

export type FetchEvent =
  | ProgressEvent
  /** A CAR is in place under its own name: `resumedAt` bytes were already there from an earlier run. */
  | { event: 'car', car: string, bytes: number, resumedAt: number, already: boolean }

export interface FetchResult { cars: number, bytes: number, seconds: number }

/**
 * packer fetch: copies a set (manifest, index, table copy, every CAR) from where it lies (a URL, or providers'
 * piece URLs with the manifest from a URL or a directory) into a directory. CARs are downloaded several at once,
 * each into `.<name>.part`, resumed by Range from what an earlier run left there; a CAR gets its own name only once
 * its size and piece CID are the manifest's. The result is a set that `packer verify` passes.
 */
export async function fetchSet (from: string, options: FetchOptions): Promise<FetchResult> {
  const started = Date.now()
  const set = await CarSet.open(from, { skipTable: true, pieceUrls: options.pieceUrls, http: httpTimeouts(options.httpTimeoutMs) })
  const out = options.output
  try {
    await fs.mkdir(out, { recursive: true })
    const m = set.manifest
    const progress: ProgressEvent = { event: 'progress', bytes: 0, totalBytes: m.cars.reduce((n, c) => n + c.size, 0), files: 0, totalFiles: m.cars.length }
    const emit = options.onEvent ?? (() => {})
    const queue = m.cars.map((c, i) => ({ c, i }))
    await Promise.all(Array.from({ length: Math.min(PARALLEL_CARS, queue.length) }, async () => {
      for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
        const done = await fetchCar(set.cars, job.i, job.c, out, (n) => { progress.bytes += n; emit({ ...progress }) })
        progress.files++
        emit({ event: 'car', car: job.c.file, ...done })
        emit({ ...progress })
      }
    }))
    // The set's own files last: a directory with a manifest is a set, and a set whose CARs are all there.
    for (const name of [m.index.file, ...(m.table.file !== undefined ? [m.table.file] : []), MANIFEST_FILE]) {
      const bytes = await set.setFiles.read(name)
      if (bytes === null && name !== m.table.file) throw new PackerError('FORMAT', `${set.dir}: ${name} is missing`, { subject: name })
      if (bytes !== null) await writeFileDurably(path.join(out, name), bytes)
    }
    return { cars: m.cars.length, bytes: progress.bytes, seconds: (Date.now() - started) / 1000 }
  } finally {
    await set.close()
  }
}

/**
 * One CAR into `out`: resumed from its `.part`, its piece CID checked, then renamed to its own name. A store with
 * several sources per CAR (--piece-url) is read one source at a time: a source that fails mid-body is dropped and the
 * next goes on by Range from where it stopped; a piece CID that does not match is never blamed on a source unless all
 * the bytes came from it alone: bytes from two places (an earlier run's `.part`, a source dropped mid-way) are fetched
 * again from byte 0 from the source now read, and a source whose bytes alone fail the check is dropped for the next,
 * also from byte 0. With none left, one error names the CAR and every URL with why it was dropped.
 */
async function fetchCar (store: CarStore, i: number, car: CarRecord, out: string, onBytes: (n: number) => void): Promise<{ bytes: number, resumedAt: number, already: boolean }> {
  const final = path.join(out, car.file)
  const st = await fs.stat(final).catch(() => null)
  if (st?.size === car.size) { onBytes(car.size); return { bytes: car.size, resumedAt: car.size, already: true } }
  const part = path.join(out, `.${car.file}.part`)
  let hasher = createPieceHasher()
  let hashed = false
  let have = 0
  try {
    // What an earlier run left: hashed again (the piece CID covers every byte), then the rest is asked for by Range.
    try {
      for await (const chunk of createReadStream(part, { highWaterMark: 1 << 20 })) {
        if (have + (chunk as Buffer).length > car.size) break
        await hasher.update(chunk as Buffer)
        have += (chunk as Buffer).length
        onBytes((chunk as Buffer).length)
      }
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
    let resumedAt = have
    /** The bytes in `.part` came from more than the source now read. */
    let mixed = have > 0
    /** Starts the CAR again from byte 0. */
    const restart = (): void => {
      onBytes(-have)
      have = 0
      resumedAt = 0
      mixed = false
      if (!hashed) hasher.destroy?.()
      hasher = createPieceHasher()
      hashed = false
    }
    const sources: CarSource[] | null = store.sources?.(i) ?? null
    if (sources === null) {
      const whole = await store.whole(i)
      if (whole === null) throw store.absent(i)
      have = await download(whole, part, car, have, hasher, onBytes)
    } else {
      let wrong = false
      for (let s = 0; ; ) {
        const source = sources[s]
        if (source === undefined) {
          // nothing fetched is worth keeping when the last source sent wrong bytes; a network failure leaves what came
          if (wrong) await fs.rm(part, { force: true })
          throw store.absent(i)
        }
        try {
          have = await download(source, part, car, have, hasher, onBytes, (n) => { have = n })
        } catch (err) {
          if (!(err instanceof PackerError) || (err.code !== 'REMOTE' && err.code !== 'CORRUPT')) throw err
          if (err.code === 'CORRUPT') source.drop(err) // HttpCars dropped the source itself for an HTTP failure
          wrong = err.code === 'CORRUPT'
          if (wrong) restart()
          else if (have > 0) mixed = true
          s++
          continue
        }
        hashed = true
        const piece = await hasher.digest()
        if (piece.pieceCid === car.pieceCid) break
        if (mixed) { restart(); continue }
        source.drop(new PackerError('CORRUPT', `GET ${source.name}: sent wrong bytes (their piece CID is ${piece.pieceCid}, not ${car.pieceCid})`, { subject: source.name }))
        wrong = true
        restart()
        s++
      }
    }
    if (!hashed) {
      hashed = true
      const piece = await hasher.digest()
      if (piece.pieceCid !== car.pieceCid) {
        await fs.rm(part, { force: true })
        throw new PackerError('CORRUPT', `CAR ${car.file}: the bytes fetched have piece CID ${piece.pieceCid}, not the manifest's ${car.pieceCid}; the server holds a damaged or different CAR (the partial download was deleted)`, { subject: car.file })
      }
    }
    await fs.rename(part, final)
    await syncDir(out)
    return { bytes: have - resumedAt, resumedAt, already: false }
  } catch (err) {
    if (!hashed) hasher.destroy?.()
    throw err
  }
}

/** Bytes gathered before they are written and hashed: a few large writes, not one per piece the network gives. */
const GATHER = 1 << 20
/** Gathering buffers kept for reuse once written and hashed (more are made while the queues are full). */
const SPARE_BUFFERS = 24

/**
 * The CAR from byte `have` into `part` (created or cut to `have`), each byte hashed; returns the bytes in `part`, which
 * must be the CAR's size. `at(n)` is told the count as it grows (kept when the source fails mid-body: what came before
 * the failure is then written and hashed, so the next source goes on from there). The pieces are gathered into
 * reused buffers, each written (writes overlapping, as the CAR writer's) and hashed in place: a write and a copy per
 * 64 KiB piece, into fresh memory each time, cost fetch 3.3 CPU-seconds per 256 MiB.
 */
async function download (whole: WholeCar, part: string, car: CarRecord, have: number, hasher: PieceHasher, onBytes: (n: number) => void,
  at: (n: number) => void = () => {}): Promise<number> {
  const fh = await fs.open(part, have > 0 ? 'r+' : 'w')
  try {
    await fh.truncate(have)
    const writes = new WriteQueue(fh)
    const spares: Buffer[] = []
    let buffer: Buffer = Buffer.allocUnsafe(GATHER)
    let filled = 0
    /** Writes and hashes the bytes gathered, which end at `have`; their buffer is reused once both let go of it. */
    const flush = async (): Promise<void> => {
      if (filled === 0) return
      const full = buffer
      const bytes = full.subarray(0, filled)
      const start = have - filled
      buffer = spares.pop() ?? Buffer.allocUnsafe(GATHER)
      filled = 0
      await hashAndWrite(hasher, async (b, release) => { await writes.write(b, start, release) }, bytes, () => { if (spares.length < SPARE_BUFFERS) spares.push(full) })
      at(have)
    }
    try {
      // each chunk is copied before the next is asked for: a store may receive the next into its memory
      for await (const chunk of whole.stream(have, { reuse: true })) {
        if (have + chunk.length > car.size) throw new PackerError('CORRUPT', `GET ${whole.name}: sent more than the ${car.size} bytes the manifest says CAR ${car.file} has`, { subject: whole.name })
        for (let i = 0; i < chunk.length;) {
          const n = Math.min(chunk.length - i, GATHER - filled)
          buffer.set(chunk.subarray(i, i + n), filled)
          filled += n
          have += n
          i += n
          if (filled === GATHER) await flush()
        }
        onBytes(chunk.length)
      }
    } finally {
      // what came before a failure counts too (the next source goes on after it)
      await flush()
      await writes.drain()
    }
    await fh.datasync()
  } finally {
    await fh.close()
  }
  if (have !== car.size) throw new PackerError('REMOTE', `CAR ${car.file}: ${have} bytes were fetched from ${whole.name}, the manifest says ${car.size}; run fetch again`, { subject: car.file })
  return have
}
