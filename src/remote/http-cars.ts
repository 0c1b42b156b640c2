import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { MissingCarError, type BlockAt, type CarStore, type Occupant, type Place, type WholeCar } from '../store/car-store.js'
import { BlockFetcher, type Fetched } from './block-fetcher.js'
import { DEFAULT_TIMEOUTS, HttpGetError, httpGet, type HttpTimeouts } from './http-get.js'

/** Most bytes between two blocks fetched in one request (a section's head is a varint and a CID: ~40 bytes). */
const RUN_GAP = 4096
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

interface Wanted { block: BlockAt, resolve: (b: Buffer) => void, reject: (e: PackerError) => void }

/**
 * CARs on web servers that serve byte ranges: a set directory's URL, or providers' piece URLs (several sources per
 * CAR, tried in order). Blocks asked for in the same turn of the event loop, or while every request is busy, are
 * fetched together where they lie side by side (up to `requestBytes` a request, `requests` requests in flight). The
 * GETs and every block's SHA-256 check run on a thread of their own (BlockFetcher); this one decides what to ask and
 * of whom: a source that fails, stalls, or sends wrong bytes is dropped for the next one; with none left, the read
 * fails with an error naming the URLs and why each failed.
 */
export class HttpCars implements CarStore {
  readonly where: string
  readonly readAhead = READ_AHEAD
  readonly #cars: CarRecord[]
  readonly #urls: string[][]
  readonly #t: HttpTimeouts
  readonly #maxRequests: number
  readonly #requestBytes: number
  /** URL → why it was dropped and until when. */
  readonly #dropped = new Map<string, { why: string, until: number }>()
  readonly #wanted = new Map<number, Wanted[]>()
  readonly #pending = new Map<string, Promise<Buffer>>()
  readonly #recent = new LRUCache<string, Buffer>({ maxSize: RECENT_BYTES, sizeCalculation: (b) => Math.max(1, b.length) })
  readonly #fetcher = new BlockFetcher()
  #inflight = 0
  #dispatching = false

  /** `urls(car)`: where CAR `car` may be fetched, in the order tried. */
  constructor (where: string, cars: CarRecord[], urls: (car: CarRecord) => string[], opts: HttpCarsOptions = {}) {
    this.where = where
    this.#cars = cars
    this.#urls = cars.map(urls)
    this.#t = opts.timeouts ?? DEFAULT_TIMEOUTS
    this.#maxRequests = opts.requests ?? 16
    this.#requestBytes = opts.requestBytes ?? 8 << 20
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
    return await Promise.all(blocks.map(async (b) => await this.#block(car, b).catch((err: unknown) => {
      if (err instanceof PackerError) return err
      throw err
    })))
  }

  async place (car: number, block: BlockAt): Promise<Place> { return { bytes: await this.#block(car, block) } }

  async whole (car: number): Promise<WholeCar | null> {
    const live = this.#live(car)
    if (live.length === 0) return null
    return { name: live[0]!, ownName: true, size: this.#cars[car]!.size, stream: (from = 0) => this.#stream(car, from) }
  }

  async occupant (): Promise<Occupant> { return { kind: 'none' } }
  async extraCopies (): Promise<Array<{ file: string, car: number }>> { return [] }
  async close (): Promise<void> { await this.#fetcher.close() }

  /**
   * The CAR from byte `from` to its end, from the first source that answers; a source that fails mid-body is dropped
   * and the next one goes on from where it stopped.
   */
  async * #stream (car: number, from: number): AsyncGenerator<Buffer> {
    let at = from
    const size = this.#cars[car]!.size
    for (const url of this.#live(car)) {
      try {
        const body = await httpGet(url, at, undefined, this.#t)
        for await (const p of body.pieces()) {
          at += p.length
          yield p
        }
        if (at >= size) return
        throw new HttpGetError(url, `the body ended at byte ${at} of ${size}`, { transient: true })
      } catch (err) {
        if (!(err instanceof HttpGetError)) throw err
        this.#drop(url, err)
      }
    }
    if (at > from) throw new PackerError('REMOTE', `CAR ${this.#cars[car]!.file} stopped at byte ${at} of ${size}: ${this.absent(car).message}`, { subject: this.#cars[car]!.file })
    throw this.absent(car)
  }

  /** One block, checked; blocks asked for in the same turn (or while every request is busy) are fetched together. */
  async #block (car: number, block: BlockAt): Promise<Buffer> {
    const key = `${car}:${block.offset}:${block.length}`
    const hit = this.#recent.get(key)
    if (hit !== undefined) return hit
    let p = this.#pending.get(key)
    if (p === undefined) {
      p = new Promise<Buffer>((resolve, reject) => {
        const list = this.#wanted.get(car)
        if (list === undefined) this.#wanted.set(car, [{ block, resolve, reject }])
        else list.push({ block, resolve, reject })
      })
      this.#pending.set(key, p)
      const done = (): void => { this.#pending.delete(key) }
      p.then((b) => { this.#recent.set(key, b); done() }, done)
      // after this turn: blocks asked for together go out together
      if (!this.#dispatching) {
        this.#dispatching = true
        setImmediate(() => this.#dispatch())
      }
    }
    return await p
  }

  /**
   * Turns wanted blocks into requests while fewer than `requests` are in flight: the lowest-offset run of blocks side
   * by side (up to requestBytes) of each CAR in turn. Blocks asked for while every request is busy wait here and
   * join into longer runs: a sequential reader's read-ahead, asked for a leaf at a time, goes out in few large GETs
   * (a distant server's latency is paid per request).
   */
  #dispatch (): void {
    this.#dispatching = false
    while (this.#inflight < this.#maxRequests && this.#wanted.size > 0) {
      const [car, wanted] = this.#wanted.entries().next().value as [number, Wanted[]]
      this.#wanted.delete(car)
      wanted.sort((a, b) => a.block.offset - b.block.offset)
      const at = (k: number): BlockAt => wanted[k]!.block
      let end = 1
      while (end < wanted.length && at(end).offset - (at(end - 1).offset + at(end - 1).length) <= RUN_GAP &&
             at(end).offset + at(end).length - at(0).offset <= this.#requestBytes) end++
      // the rest goes to the back: CARs take turns
      if (end < wanted.length) this.#wanted.set(car, wanted.slice(end))
      this.#inflight++
      void this.#fetchRun(car, wanted.slice(0, end))
    }
  }

  async #fetchRun (car: number, run: Wanted[]): Promise<void> {
    try {
      let left = run
      for (const url of this.#live(car)) {
        left = await this.#fromSource(url, left)
        if (left.length === 0) return
      }
      const err = this.absent(car)
      for (const w of left) w.reject(err)
    } catch (err) {
      // (blocks already given stay given: a promise settles once)
      for (const w of run) w.reject(err instanceof PackerError ? err : new PackerError('REMOTE', (err as Error).message))
    } finally {
      this.#inflight--
      this.#dispatch()
    }
  }

  /**
   * Gives the run's blocks from one source as they come in, each checked (on the fetcher's thread, each block in its
   * own shared memory: posted to a reader's worker it is shared, not copied; kept, it does not hold the whole run).
   * Returns the blocks it could not give, the source then dropped; a transient failure is tried again from the first
   * block not given.
   */
  async #fromSource (url: string, run: Wanted[]): Promise<Wanted[]> {
    let left = run
    for (let attempt = 1; ; attempt++) {
      const from = left[0]!.block.offset
      const to = Math.max(...left.map((w) => w.block.offset + w.block.length))
      const these = left
      let given = 0
      let got: Fetched
      try {
        got = await this.#fetcher.blocks(url, from, to, these.map((w) => w.block), this.#t, (i, bytes) => {
          these[i]!.resolve(bytes)
          given = i + 1
        })
      } catch (err) {
        if (!(err instanceof HttpGetError)) throw err
        left = these.slice(given)
        if (left.length === 0) return left
        if (!err.transient || attempt >= TRIES) { this.#drop(url, err); return left }
        await new Promise((resolve) => setTimeout(resolve, Math.min(MAX_RETRY_WAIT_MS, (err.retryAfter ?? 0.2 * attempt) * 1000)))
        continue
      }
      if (got.bad !== undefined) {
        const bad = these[got.bad]!.block
        this.#drop(url, new PackerError('REMOTE', `GET ${url}: sent wrong bytes (block ${bad.cid} at byte ${bad.offset} does not match its hash)`))
        return these.slice(got.bad)
      }
      return []
    }
  }
}
