import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import type { BlockAt } from './car-store.js'

/** Most bytes between two blocks read in one request (a section's head is a varint and a CID: ~40 bytes). */
export const RUN_GAP = 4096

/**
 * Where the run of blocks side by side that starts at `start` ends (the index after its last block): blocks `at(k)`,
 * k < `count`, in offset order, at most RUN_GAP bytes apart, all of them within `maxBytes` of the first one's offset.
 */
export function runEnd (at: (k: number) => BlockAt, start: number, count: number, maxBytes: number): number {
  let end = start + 1
  while (end < count && at(end).offset - (at(end - 1).offset + at(end - 1).length) <= RUN_GAP &&
         at(end).offset + at(end).length - at(start).offset <= maxBytes) end++
  return end
}

/** The bytes [from, to) a run of blocks (in offset order) lies in. */
export function runRange (run: BlockAt[]): { from: number, to: number } {
  return { from: run[0]!.offset, to: Math.max(...run.map((b) => b.offset + b.length)) }
}

/**
 * Memory a store reuses: a block given with a lease lies there, and stays put until `free()` (BlockBatcher calls it
 * once nobody it gave the block to holds it). `pins`: the bytes it keeps from reuse meanwhile (the recent blocks are
 * counted by it).
 */
export interface Lease { free: () => void, pins: number }

/**
 * Hands out block `i` of a run: its bytes, checked, in memory of their own or leased; or the error that keeps it from
 * being read.
 */
export type GiveBlock = (i: number, block: Buffer | PackerError, lease?: Lease) => void

/**
 * How a store fetches a run of blocks of CAR `car` (in offset order, side by side): each block is given by `give` as
 * soon as it is in and checked (the store checks its hash, where that is cheapest, and puts it in a SharedArrayBuffer:
 * posted to a reader's worker it is shared, not copied; of its own, or leased, so that keeping it does not hold the
 * whole run). Resolves with the error for the blocks it did not give (none when it gave them all); throwing fails the
 * blocks not given.
 */
export type FetchRun = (car: number, run: BlockAt[], give: GiveBlock) => Promise<PackerError | undefined>

/** A block's bytes lent: they stay as they are until `release()`, after which they may be other bytes. */
export interface LentBlock { bytes: Buffer, release: () => void }

export interface BlockBatcherOptions {
  /** Requests (runs) in flight at once. */
  requests: number
  /** Most bytes one request asks for (blocks side by side are merged up to it). */
  requestBytes: number
  /** Checked blocks kept (a straddling age chunk's next leaf is asked for twice in a row). */
  recentBytes: number
}

/** A block given: its bytes, and while they are leased, how many hold them (the recent blocks count as one). */
interface Held { bytes: Buffer, lease: Lease | undefined, refs: number }

/** Someone waiting for a block on its way: `take` turns it into what they get, at once, as it is given. */
interface Waiter { take: (h: Held) => void, reject: (e: PackerError) => void }

/**
 * Blocks of a store that is far away (web servers, an object store), where a request costs a round trip: blocks asked
 * for in the same turn of the event loop, or while every request is busy, are fetched together where they lie side by
 * side, in runs of at most `requestBytes`, with at most `requests` runs in flight; CARs take turns. A block is fetched
 * once however often it is asked for while on its way, and recently read ones are kept; one that could not be read is
 * fetched again when asked again (the store may have it by then). How a run is fetched is the store's (FetchRun).
 * Leased blocks (in memory the store reuses) are lent (`lend`) until released, or given as copies (`block`), and
 * their lease freed once the last holder lets go.
 */
export class BlockBatcher {
  readonly #fetchRun: FetchRun
  readonly #opts: BlockBatcherOptions
  /** Per CAR, the blocks asked for and not yet in a run, in the order CARs take turns. */
  readonly #wanted = new Map<number, BlockAt[]>()
  /** Who waits for each block on its way, by CAR and place (a block is not fetched twice at once). */
  readonly #pending = new Map<string, Waiter[]>()
  readonly #recent: LRUCache<string, Held>
  #inflight = 0
  #dispatching = false

  constructor (fetchRun: FetchRun, opts: BlockBatcherOptions) {
    this.#fetchRun = fetchRun
    this.#opts = opts
    this.#recent = new LRUCache<string, Held>({ maxSize: opts.recentBytes, sizeCalculation: pinned, dispose: (h) => { this.#unref(h) } })
  }

  /** Blocks of one CAR, each checked, or the error that keeps it from being read. */
  async blocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    return await Promise.all(blocks.map(async (b) => await this.block(car, b).catch((err: unknown) => {
      if (err instanceof PackerError) return err
      throw err
    })))
  }

  /** One block, checked, in memory of its own (a leased one copied); throws a PackerError when it cannot be read. */
  async block (car: number, block: BlockAt): Promise<Buffer> {
    return await this.#get(car, block, (h) => h.lease === undefined ? h.bytes : Buffer.from(h.bytes))
  }

  /** One block, checked, its bytes where they are until released (a reader that is done with them at a known time). */
  async lend (car: number, block: BlockAt): Promise<LentBlock> {
    return await this.#get(car, block, (h) => {
      h.refs++
      let held = true
      return { bytes: h.bytes, release: () => { if (held) { held = false; this.#unref(h) } } }
    })
  }

  /** `take` runs as the block is had (before anything else can evict it from the recent ones). */
  async #get<T> (car: number, block: BlockAt, take: (h: Held) => T): Promise<T> {
    const key = `${car}:${block.offset}:${block.length}`
    const hit = this.#recent.get(key)
    if (hit !== undefined) return take(hit)
    return await new Promise<T>((resolve, reject) => {
      const waiter: Waiter = { take: (h) => { resolve(take(h)) }, reject }
      const waiting = this.#pending.get(key)
      if (waiting !== undefined) { waiting.push(waiter); return }
      this.#pending.set(key, [waiter])
      const list = this.#wanted.get(car)
      if (list === undefined) this.#wanted.set(car, [block])
      else list.push(block)
      // after this turn: blocks asked for together go out together
      if (!this.#dispatching) {
        this.#dispatching = true
        setImmediate(() => this.#dispatch())
      }
    })
  }

  /** A block of a run is in (or cannot be read): those waiting for it get it, and it is kept among the recent ones. */
  #given (car: number, block: BlockAt, b: Buffer | PackerError, lease: Lease | undefined): void {
    const key = `${car}:${block.offset}:${block.length}`
    const waiting = this.#pending.get(key) ?? []
    this.#pending.delete(key)
    if (b instanceof PackerError) {
      lease?.free()
      for (const w of waiting) w.reject(b)
      return
    }
    const h: Held = { bytes: b, lease, refs: 1 }
    for (const w of waiting) w.take(h)
    this.#recent.set(key, h)
    if (this.#recent.get(key) !== h) this.#unref(h) // too large to keep
  }

  #unref (h: Held): void {
    if (--h.refs === 0) h.lease?.free()
  }

  /**
   * Turns wanted blocks into runs while fewer than `requests` are in flight: the lowest-offset run of blocks side by
   * side of each CAR in turn. Blocks asked for while every request is busy wait here and join into longer runs: a
   * sequential reader's read-ahead, asked for a leaf at a time, goes out in few large requests (a distant store's
   * latency is paid per request).
   */
  #dispatch (): void {
    this.#dispatching = false
    while (this.#inflight < this.#opts.requests && this.#wanted.size > 0) {
      const [car, wanted] = this.#wanted.entries().next().value as [number, BlockAt[]]
      this.#wanted.delete(car)
      wanted.sort((a, b) => a.offset - b.offset)
      const end = runEnd((k) => wanted[k]!, 0, wanted.length, this.#opts.requestBytes)
      // the rest goes to the back: CARs take turns
      if (end < wanted.length) this.#wanted.set(car, wanted.slice(end))
      this.#inflight++
      void this.#run(car, wanted.slice(0, end))
    }
  }

  async #run (car: number, run: BlockAt[]): Promise<void> {
    const given = new Array<boolean>(run.length).fill(false)
    const give: GiveBlock = (i, b, lease) => {
      if (given[i] !== false) { lease?.free(); return }
      given[i] = true
      this.#given(car, run[i]!, b, lease)
    }
    try {
      const rest = await this.#fetchRun(car, run, give)
      for (let i = 0; i < run.length; i++) give(i, rest ?? new PackerError('REMOTE', `block ${run[i]!.cid} at byte ${run[i]!.offset} was not fetched`))
    } catch (err) {
      // (blocks already given stay given)
      const e = err instanceof PackerError ? err : new PackerError('REMOTE', (err as Error).message, { cause: err })
      for (let i = 0; i < run.length; i++) give(i, e)
    } finally {
      this.#inflight--
      this.#dispatch()
    }
  }
}

/**
 * The memory a kept block holds: a leased one what its lease pins; else all of its shared memory (a fetching thread
 * may lay several blocks out in one piece).
 */
function pinned (h: Held): number {
  const b = h.bytes
  return Math.max(1, h.lease?.pins ?? (b.buffer instanceof SharedArrayBuffer ? b.buffer.byteLength : b.length))
}
