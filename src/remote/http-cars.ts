import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { BlockBatcher, runRange, type GiveBlock } from '../store/block-batcher.js'
import { MissingCarError, type BlockAt, type CarSource, type CarStore, type Occupant, type Place, type WholeCar } from '../store/car-store.js'
import { BlockFetcher, type Fetched } from './block-fetcher.js'
import { DEFAULT_TIMEOUTS, HttpGetError, httpGet, type HttpTimeouts, type PiecesOptions } from './http-get.js'

/** Tries of one source on a transient failure (timeout, reset, 429, 5xx) before it is dropped. */
const TRIES = 2
/** Longest wait a server's Retry-After is granted. */
const MAX_RETRY_WAIT_MS = 2000
/** A dropped source is tried again after this long (a mount runs for days; a provider comes back). */
const DROPPED_FOR_MS = 60_000
/** Verified blocks kept (a straddling age chunk's next leaf is asked for twice in a row). */
const RECENT_BYTES = 32 << 20

/**
 * What a sequential reader of these CARs reads ahead: at 50 ms per request and ~150 MB/s, 8 MB must be in flight, and
 * the fetching threads' queue comes on top (16 MiB, the local default, kept half of that in flight).
 */
const READ_AHEAD = 64 << 20

export interface HttpCarsOptions {
  timeouts?: HttpTimeouts
  /** Requests in flight at once (default 16: a server 50 ms away then still has 16 MiB of read-ahead in flight). */
  requests?: number
  /** Most bytes one request asks for (adjacent blocks are merged up to it). */
  requestBytes?: number
}

/**
 * CARs on web servers that serve byte ranges: a set directory's URL, or providers' piece URLs (several sources per
 * CAR, tried in order). Blocks asked for in the same turn of the event loop, or while every request is busy, are
 * fetched together where they lie side by side (BlockBatcher: up to `requestBytes` a request, `requests` requests in
 * flight), each run's blocks given as they come in. The GETs and every block's SHA-256 check run on a thread of their
 * own (BlockFetcher); this one decides what to ask and of whom: a source that fails, stalls, or sends wrong bytes is
 * dropped for the next one; with none left, the read fails with an error naming the URLs and why each failed.
 */
export class HttpCars implements CarStore {
  readonly where: string
  readonly readAhead = READ_AHEAD
  readonly #cars: CarRecord[]
  readonly #urls: string[][]
  readonly #t: HttpTimeouts
  /** URL → why it was dropped and until when. */
  readonly #dropped = new Map<string, { why: string, until: number }>()
  readonly #fetcher = new BlockFetcher()
  readonly #blocks: BlockBatcher

  /** `urls(car)`: where CAR `car` may be fetched, in the order tried. */
  constructor (where: string, cars: CarRecord[], urls: (car: CarRecord) => string[], opts: HttpCarsOptions = {}) {
    this.where = where
    this.#cars = cars
    this.#urls = cars.map(urls)
    this.#t = opts.timeouts ?? DEFAULT_TIMEOUTS
    this.#blocks = new BlockBatcher(async (car, run, give) => await this.#fetchRun(car, run, give),
      { requests: opts.requests ?? 16, requestBytes: opts.requestBytes ?? 8 << 20, recentBytes: RECENT_BYTES })
  }

  #live (car: number): string[] {
    const now = Date.now()
    return this.#urls[car]!.filter((u) => (this.#dropped.get(u)?.until ?? 0) <= now)
  }

  #drop (url: string, err: unknown): void {
    this.#dropped.set(url, { why: err instanceof PackerError ? err.message : String(err), until: Date.now() + DROPPED_FOR_MS })
  }

  async has (car: number): Promise<boolean> { return this.#live(car).length > 0 }

  absent (car: number): MissingCarError {
    const why = this.#urls[car]!.map((u) => this.#dropped.get(u)?.why ?? `GET ${u}: not tried`).join('; ')
    return new MissingCarError(car, this.#cars[car]!, `cannot be read: ${why}`)
  }

  async readBlocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    return await this.#blocks.blocks(car, blocks)
  }

  async place (car: number, block: BlockAt): Promise<Place> {
    const lent = await this.#blocks.lend(car, block)
    return { bytes: lent.bytes, release: lent.release }
  }

  async whole (car: number): Promise<WholeCar | null> {
    const live = this.#live(car)
    if (live.length === 0) return null
    return { name: live[0]!, ownName: true, size: this.#cars[car]!.size, stream: (from = 0, o) => this.#stream(car, from, o) }
  }

  sources (car: number): CarSource[] {
    const size = this.#cars[car]!.size
    return this.#live(car).map((url) => ({
      name: url,
      ownName: true,
      size,
      stream: (from = 0, o) => this.#streamFrom(car, url, from, o),
      drop: (err) => { this.#drop(url, err) },
    }))
  }

  async occupant (): Promise<Occupant> { return { kind: 'none' } }
  async extraCopies (): Promise<Array<{ file: string, car: number }>> { return [] }
  async close (): Promise<void> { await this.#fetcher.close() }

  /**
   * The CAR from byte `from` to its end, from the first source that answers; a source that fails mid-body is dropped
   * and the next one goes on from where it stopped.
   */
  async * #stream (car: number, from: number, o?: PiecesOptions): AsyncGenerator<Buffer> {
    let at = from
    const size = this.#cars[car]!.size
    for (const url of this.#live(car)) {
      try {
        for await (const p of this.#streamFrom(car, url, at, o)) {
          at += p.length
          yield p
        }
        return
      } catch (err) {
        if (!(err instanceof HttpGetError)) throw err // an HTTP failure: #streamFrom dropped that source
      }
    }
    if (at > from) throw new PackerError('REMOTE', `CAR ${this.#cars[car]!.file} stopped at byte ${at} of ${size}: ${this.absent(car).message}`, { subject: this.#cars[car]!.file })
    throw this.absent(car)
  }

  /** The CAR from byte `from` to its end from `url` alone; a failure drops `url` (and is thrown). */
  async * #streamFrom (car: number, url: string, from: number, o?: PiecesOptions): AsyncGenerator<Buffer> {
    const size = this.#cars[car]!.size
    let at = from
    try {
      const body = await httpGet(url, at, undefined, this.#t)
      for await (const p of body.pieces(o)) {
        at += p.length
        yield p
      }
      if (at < size) throw new HttpGetError(url, `the body ended at byte ${at} of ${size}`, { transient: true })
    } catch (err) {
      if (err instanceof HttpGetError) this.#drop(url, err)
      throw err
    }
  }

  /** A run of blocks from the CAR's sources in turn, each going on from the first block the one before did not give. */
  async #fetchRun (car: number, run: BlockAt[], give: GiveBlock): Promise<PackerError | undefined> {
    let left = 0
    for (const url of this.#live(car)) {
      left = await this.#fromSource(url, run, left, give)
      if (left === run.length) return
    }
    return this.absent(car)
  }

  /**
   * Gives the run's blocks from `first` on from one source as they come in, each checked (on the fetcher's thread, in
   * shared memory it reuses once the block's lease is freed). Returns the first block it could not give (the run's
   * length when it gave them all), the source then dropped; a transient failure is tried again from the first block
   * not given.
   */
  async #fromSource (url: string, run: BlockAt[], first: number, give: GiveBlock): Promise<number> {
    let left = first
    for (let attempt = 1; ; attempt++) {
      const at = left
      const these = run.slice(at)
      const { from, to } = runRange(these)
      let got: Fetched
      try {
        got = await this.#fetcher.blocks(url, from, to, these, this.#t, (i, bytes, lease) => {
          give(at + i, bytes, lease)
          left = at + i + 1
        })
      } catch (err) {
        if (!(err instanceof HttpGetError)) throw err
        if (left === run.length) return left
        if (!err.transient || attempt >= TRIES) { this.#drop(url, err); return left }
        await new Promise((resolve) => setTimeout(resolve, Math.min(MAX_RETRY_WAIT_MS, (err.retryAfter ?? 0.2 * attempt) * 1000)))
        continue
      }
      if (got.bad !== undefined) {
        const bad = these[got.bad]!
        this.#drop(url, new PackerError('REMOTE', `GET ${url}: sent wrong bytes (block ${bad.cid} at byte ${bad.offset} does not match its hash)`))
        return at + got.bad
      }
      return run.length
    }
  }
}
