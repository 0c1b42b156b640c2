import { HeadObjectCommand } from '@aws-sdk/client-s3'
import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { MissingCarError, type BlockAt, type CarStore, type Occupant, type Place, type WholeCar } from '../store/car-store.js'
import { BlockBatcher, runRange, type GiveBlock } from '../store/block-batcher.js'
import { hashMatches } from '../store/block-hash.js'
import type { S3Store } from './client.js'
import { readRange } from './read-range.js'
import { s3Error } from './s3-error.js'
import { sharedMemoryTaken } from '../memory.js'

const MiB = 1024 * 1024
/** Ranged GETs of blocks in flight: a store answers each after a delay, and a mount reads ahead. */
const REQUESTS = 8
/** Most bytes one GET of blocks asks for. */
const REQUEST_BYTES = 8 * MiB
/** Verified blocks kept (a straddling age chunk's next leaf is asked for twice in a row). */
const RECENT_BYTES = 32 * MiB
/** A CAR read whole (verify) comes in GETs of this size, STREAM_AHEAD of them in flight. */
const STREAM_PART = 8 * MiB
const STREAM_AHEAD = 2
/** An absent CAR is looked for again after this long (a mount runs for days; someone uploads the CAR). */
const ABSENT_FOR_MS = 60_000

/** A CAR object as HEAD saw it. */
interface Head { size: number, etag?: string }

/**
 * CARs as objects under an S3 prefix (`<prefix><file>`, as `pack -o s3://…` or a copy of a set directory leaves them):
 * blocks by ranged GETs (BlockBatcher: side-by-side blocks in one request; every block's hash checked here), a CAR read
 * whole by ranged GETs pinned to its ETag. Objects are looked up once by HEAD; an absent one again after a while.
 */
export class S3Cars implements CarStore {
  readonly where: string
  readonly #store: S3Store
  readonly #bucket: string
  /** '' or ending in '/'. */
  readonly #base: string
  readonly #cars: CarRecord[]
  readonly #heads = new Map<number, { head: Promise<Head | null>, at: number }>()
  readonly #blocks: BlockBatcher

  constructor (store: S3Store, bucket: string, base: string, cars: CarRecord[]) {
    this.#store = store
    this.#bucket = bucket
    this.#base = base
    this.#cars = cars
    this.where = `s3://${bucket}/${base}`
    this.#blocks = new BlockBatcher(async (car, run, give) => await this.#fetchRun(car, run, give),
      { requests: REQUESTS, requestBytes: REQUEST_BYTES, recentBytes: RECENT_BYTES })
  }

  #key (car: number): string { return this.#base + this.#cars[car]!.file }
  #url (car: number): string { return `s3://${this.#bucket}/${this.#key(car)}` }

  async has (car: number): Promise<boolean> { return await this.#head(car) !== null }

  absent (car: number): MissingCarError {
    const file = this.#cars[car]!.file
    return new MissingCarError(car, this.#cars[car]!, `is missing: ${this.#url(car)} does not exist at ${this.#store.endpoint}; upload the CAR there (e.g. aws s3 cp ${file} ${this.#url(car)})`)
  }

  #damaged (car: number, what: string): PackerError {
    const url = this.#url(car)
    return new PackerError('CORRUPT', `CAR ${url} ${what}; upload a good copy of ${this.#cars[car]!.file} there again`, { subject: url })
  }

  async readBlocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    if (!await this.has(car)) return blocks.map(() => this.absent(car))
    return await this.#blocks.blocks(car, blocks)
  }

  async place (car: number, block: BlockAt): Promise<Place> {
    if (!await this.has(car)) throw this.absent(car)
    return { bytes: await this.#blocks.block(car, block) }
  }

  async whole (car: number): Promise<WholeCar | null> {
    const head = await this.#head(car)
    if (head === null) return null
    return { name: this.#url(car), ownName: true, size: head.size, stream: (from = 0) => this.#stream(car, head, from) }
  }

  async occupant (): Promise<Occupant> { return { kind: 'none' } }
  async extraCopies (): Promise<Array<{ file: string, car: number }>> { return [] }
  async close (): Promise<void> { this.#store.client.destroy() }

  /** The CAR object's size and ETag, or null when there is none (remembered: a present CAR is not looked up again). */
  async #head (car: number): Promise<Head | null> {
    const seen = this.#heads.get(car)
    if (seen !== undefined && (Date.now() - seen.at < ABSENT_FOR_MS || await seen.head !== null)) return await seen.head
    const head = (async () => {
      try {
        const r = await this.#store.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key(car) }))
        return { size: r.ContentLength ?? 0, etag: r.ETag }
      } catch (err) {
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null
        throw s3Error(this.#store, err, { bucket: this.#bucket, key: this.#key(car) })
      }
    })()
    this.#heads.set(car, { head, at: Date.now() })
    // A failed lookup (the store unreachable) is not remembered.
    head.catch(() => this.#heads.delete(car))
    return await head
  }

  /**
   * A run of blocks in one ranged GET, each checked here (on libuv's threads when large: hashMatches) and given in a
   * SharedArrayBuffer of its own (posted to a reader's worker it is shared, not copied; kept, it does not hold the run).
   */
  async #fetchRun (car: number, run: BlockAt[], give: GiveBlock): Promise<undefined> {
    const { from, to } = runRange(run)
    const bytes = await this.#read(car, from, to)
    await Promise.all(run.map(async (b, i) => {
      const view = bytes.subarray(b.offset - from, b.offset - from + b.length)
      if (!await hashMatches(view, b.cid.multihash.digest)) {
        give(i, this.#damaged(car, `is damaged: block ${b.cid} at byte ${b.offset} does not match its hash`))
        return
      }
      sharedMemoryTaken(b.length)
      const own = Buffer.from(new SharedArrayBuffer(b.length))
      view.copy(own)
      give(i, own)
    }))
  }

  /**
   * Bytes [from, to) of a CAR, for blocks. Not pinned to an ETag: every block is checked against its hash, and a CAR
   * uploaded again (a damaged one mended) under a running mount should be read, not refused.
   */
  async #read (car: number, from: number, to: number): Promise<Buffer> {
    const head = await this.#head(car)
    if (head === null) throw this.absent(car)
    if (to > head.size) this.#truncated(car, head)
    try {
      return await readRange(this.#store, { bucket: this.#bucket, key: this.#key(car), start: from, end: to - 1 })
    } catch (err) {
      throw this.#gone(car, err)
    }
  }

  #truncated (car: number, head: Head): never {
    throw this.#damaged(car, `is truncated: ${head.size} bytes, the manifest says ${this.#cars[car]!.size}`)
  }

  /** A read's error, or the CAR's absence when the object is gone since it was looked up. */
  #gone (car: number, err: unknown): unknown {
    if ((err as { cause?: { name?: string } }).cause?.name !== 'NoSuchKey') return err
    this.#heads.set(car, { head: Promise.resolve(null), at: Date.now() })
    return this.absent(car)
  }

  /** The CAR from byte `from` to its end, by ranged GETs of the version HEAD saw (a replaced object fails, never mixes). */
  async * #stream (car: number, head: Head, from: number): AsyncGenerator<Buffer> {
    const parts: Array<Promise<Buffer>> = []
    let next = from
    const ask = (): void => {
      const end = Math.min(head.size, next + STREAM_PART)
      const part = readRange(this.#store, { bucket: this.#bucket, key: this.#key(car), etag: head.etag, start: next, end: end - 1 })
      part.catch(() => {}) // seen when awaited
      parts.push(part)
      next = end
    }
    while (parts.length < STREAM_AHEAD && next < head.size) ask()
    while (parts.length > 0) {
      let bytes: Buffer
      try {
        bytes = await parts.shift()!
      } catch (err) {
        throw this.#gone(car, err)
      }
      while (parts.length < STREAM_AHEAD && next < head.size) ask()
      yield bytes
    }
  }
}
