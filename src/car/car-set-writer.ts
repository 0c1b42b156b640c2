import { CID } from 'multiformats/cid'
import type { CarRecord } from '../format/manifest.js'
import { encodeBlockRecord } from './block-index.js'
import { RecentBlocks } from './recent-blocks.js'
import { encodeCarHeader, encodeSectionHead } from './car-header.js'
import { createPieceHasher, hashAndWrite, type PieceHasher } from './piece-hasher.js'
import type { CarDraft, CarSink } from './set-output.js'
import { PackerError } from '../errors.js'
import { faultPoint } from '../fault.js'

/** Largest block packer writes: 1 MiB leaves, plus room for a full dag-pb node of 1024 links. */
export const MAX_BLOCK_SIZE = 1024 * 1024 + 64 * 1024
/** Smallest bin that can hold any block with its CAR header and section head. */
export const MIN_BIN_SIZE = MAX_BLOCK_SIZE + 1024
/** Largest CAR whose padded piece fits a 32 GiB sector: 32 GiB × 127/128. */
export const DEFAULT_BIN_SIZE = 34_091_302_912

interface OpenCar {
  draft: CarDraft
  /** Bytes handed to the draft so far. */
  size: number
  root: string
  blocks: number
  hasher: PieceHasher
}

/** Small sections are gathered into writes of this size. */
const WRITE_BUFFER = 1024 * 1024
/**
 * Write buffers kept for reuse once the hasher and the sink let go of them. A fresh 1 MiB buffer's first touches cost
 * more than filling it (~10 µs a 4 KiB page on these VMs: a second of the main thread's 12 for /usr/share's 539 MiB).
 */
const SPARE_BUFFERS = 32

/** Blocks a writer remembers for "not written again" (FORMAT.md §2): part of the format, so a constant. */
export const RECENT_BLOCKS = 524_288

export interface CarSetWriterOptions {
  /** Where the CARs go (a directory, a bucket prefix). */
  sink: CarSink
  binSize: number
  /** Gets the block-index record (48 bytes, FORMAT.md §8; a buffer of its own) of every block written, in order. */
  onRecord: (record: Buffer) => void | Promise<void>
  /** Called once a CAR is complete and durable under its final name (after the records of its blocks). */
  onCarDone?: (car: CarRecord, index: number) => Promise<void> | void
  /** Tests only: a smaller memory of recent blocks. */
  recentBlocks?: number
}

/**
 * Writes a stream of blocks into a set of CARv1 files, none larger than the bin size. Blocks go whole, in the order
 * given, into the current CAR; a block that does not fit starts the next one, so every CAR but the last is filled to
 * within one block of the bin size. Each CAR's only root is its first block (known before its first byte, so the
 * CAR and its piece CID are produced in one pass). A block among the last RECENT_BLOCKS written is not written again.
 * Memory is fixed: the records of the blocks written go to `onRecord` (the pack journal keeps them on disk).
 */
export class CarSetWriter {
  readonly #opts: CarSetWriterOptions
  readonly cars: CarRecord[] = []
  readonly #recent: RecentBlocks
  /** Records handed to onRecord. */
  records = 0
  #touched = new Set<number>()
  #refs: number[] = []
  #car?: OpenCar
  #buffer: Buffer = Buffer.allocUnsafe(WRITE_BUFFER)
  #buffered = 0
  /** Write buffers handed back by the hasher and the sink, for the next flushes. */
  #spares: Buffer[] = []

  constructor (opts: CarSetWriterOptions) {
    if (opts.binSize < MIN_BIN_SIZE) {
      throw new PackerError('USAGE', `--bin-size ${opts.binSize} is too small: a CAR must hold at least one block (minimum ${MIN_BIN_SIZE} bytes, e.g. 2MiB)`)
    }
    this.#opts = opts
    this.#recent = new RecentBlocks(opts.recentBlocks ?? RECENT_BLOCKS)
  }

  /**
   * Adds a block. Returns once its bytes are handed to the file system, with the CAR that holds it and its record
   * number (an earlier copy's, when it is among the recent blocks and is not written again). `done`, when given, is
   * called once the writer no longer reads `bytes` (after they are hashed and written; at once when they were copied
   * or are not written; never when put throws): the caller may then reuse them.
   */
  async put (cid: CID, bytes: Uint8Array, done?: () => void): Promise<{ car: number, record: number }> {
    const digest = cid.multihash.digest
    const seen = this.#recent.get(digest)
    if (seen !== undefined) {
      this.#touched.add(seen.car)
      this.#refs.push(seen.record)
      done?.()
      return seen
    }
    const length = bytes.length // read before `done`: bytes given back may be detached (LeafWorkers.recycle)
    if (length > MAX_BLOCK_SIZE) throw new PackerError('FORMAT', `block ${cid} is ${length} bytes, larger than packer writes (${MAX_BLOCK_SIZE})`)
    const head = encodeSectionHead(cid, length)
    const section = head.length + length
    if (this.#car !== undefined && this.#car.size + this.#buffered + section > this.#opts.binSize) await this.#closeCar()
    if (this.#car === undefined) await this.#openCar(cid)
    const car = this.#car!
    await this.#write(head)
    const offset = car.size + this.#buffered
    await this.#write(bytes, done)
    car.blocks++
    const carIndex = this.cars.length
    await this.#opts.onRecord(encodeBlockRecord(digest, { car: carIndex, offset, length }))
    const record = this.records++
    this.#recent.add(digest, carIndex, record)
    this.#touched.add(carIndex)
    faultPoint('block')
    return { car: carIndex, record }
  }

  /**
   * Continues a set whose first CARs are complete (from a pack journal): new CARs come after them. `records` are
   * the records of their blocks in write order, replayed to remember the same recent blocks as an uninterrupted run.
   */
  async resume (cars: CarRecord[], records: AsyncIterable<Buffer>): Promise<void> {
    this.cars.push(...cars)
    for await (const r of records) {
      if (this.#recent.get(r) === undefined) this.#recent.add(r, r.readUInt32LE(32), this.records)
      this.records++
    }
  }

  /** The root of every CAR so far, the open one included, in write order. */
  carRoots (): CID[] {
    const roots = this.cars.map((c) => CID.parse(c.root))
    if (this.#car) roots.push(CID.parse(this.#car.root))
    return roots
  }

  /** The CARs that received (or already held) blocks since the last call, ascending. */
  takeTouchedCars (): number[] {
    const out = [...this.#touched].sort((a, b) => a - b)
    this.#touched = new Set()
    return out
  }

  /** The record numbers of the blocks put since the last call that were not written again (copies already written). */
  takeRefs (): number[] {
    const out = this.#refs
    this.#refs = []
    return out
  }

  /** Closes the last CAR; returns every CAR's record. */
  async finish (): Promise<CarRecord[]> {
    if (this.#car) await this.#closeCar()
    this.#spares = []
    return this.cars
  }

  /** Removes a partly written CAR after a failure. */
  async abort (): Promise<void> {
    const car = this.#car
    this.#car = undefined
    await car?.draft.discard()
  }

  async #openCar (root: CID): Promise<void> {
    const draft = await this.#opts.sink.begin(this.cars.length)
    this.#car = { draft, size: 0, root: root.toString(), blocks: 0, hasher: createPieceHasher() }
    await this.#write(encodeCarHeader(root))
  }

  /**
   * Appends to the current CAR through the write buffer, feeding the piece hasher in the same order; `done` is called
   * once neither reads `bytes` any more (large ones go as they are, small ones are copied).
   */
  async #write (bytes: Uint8Array, done?: () => void): Promise<void> {
    if (this.#buffered + bytes.length > WRITE_BUFFER) await this.#flush()
    if (bytes.length >= WRITE_BUFFER / 4) {
      await this.#flush()
      await this.#emit(bytes, done)
      return
    }
    this.#buffer.set(bytes, this.#buffered)
    this.#buffered += bytes.length
    done?.()
  }

  /**
   * Hands the bytes gathered to the hasher and the sink, and gathers the next ones in another buffer: this one is
   * reused once both have let go of it (a failed write or hash never lets go: it is then left to the collector).
   */
  async #flush (): Promise<void> {
    if (this.#buffered === 0) return
    const full = this.#buffer
    const chunk = full.subarray(0, this.#buffered)
    this.#buffer = this.#spares.pop() ?? Buffer.allocUnsafe(WRITE_BUFFER)
    this.#buffered = 0
    await this.#emit(chunk, () => { if (this.#spares.length < SPARE_BUFFERS) this.#spares.push(full) })
  }

  /** Hands bytes to the piece hasher and to the sink; `done`, when given, once both have let go of them. */
  async #emit (bytes: Uint8Array, done?: () => void): Promise<void> {
    const car = this.#car!
    car.size += bytes.length
    await hashAndWrite(car.hasher, async (b, release) => { await car.draft.write(b, release) }, bytes, done)
  }

  async #closeCar (): Promise<void> {
    await this.#flush()
    const car = this.#car!
    const piece = await car.hasher.digest()
    const file = `${piece.pieceCid}.car`
    await car.draft.commit(file)
    this.#car = undefined
    const record: CarRecord = {
      file, size: car.size, root: car.root, pieceCid: piece.pieceCid, pieceCidV2: piece.pieceCidV2, pieceSize: piece.paddedSize, blocks: car.blocks,
    }
    this.cars.push(record)
    await this.#opts.onCarDone?.(record, this.cars.length - 1)
  }
}
