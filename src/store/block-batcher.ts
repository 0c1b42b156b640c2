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

/** Hands out block `i` of a run: its bytes, checked, in memory of their own; or the error that keeps it from being read. */
export type GiveBlock = (i: number, block: Buffer | PackerError) => void

/**
 * How a store fetches a run of blocks of CAR `car` (in offset order, side by side): each block is given by `give` as
 * soon as it is in and checked (the store checks its hash, where that is cheapest, and puts it in a SharedArrayBuffer
 * of its own: posted to a reader's worker it is shared, not copied; kept, it does not hold the whole run). Resolves
 * with the error for the blocks it did not give (none when it gave them all); throwing fails the blocks not given.
 */
export type FetchRun = (car: number, run: BlockAt[], give: GiveBlock) => Promise<PackerError | undefined>

export interface BlockBatcherOptions {
  /** Requests (runs) in flight at once. */
  requests: number
  /** Most bytes one request asks for (blocks side by side are merged up to it). */
  requestBytes: number
  /** Checked blocks kept (a straddling age chunk's next leaf is asked for twice in a row). */
  recentBytes: number
}

interface Wanted { block: BlockAt, resolve: (b: Buffer) => void, reject: (e: PackerError) => void }

/**
 * Blocks of a store that is far away (web servers, an object store), where a request costs a round trip: blocks asked
 * for in the same turn of the event loop, or while every request is busy, are fetched together where they lie side by
 * side, in runs of at most `requestBytes`, with at most `requests` runs in flight; CARs take turns. A block is fetched
 * once however often it is asked for while on its way, and recently read ones are kept; one that could not be read is
 * fetched again when asked again (the store may have it by then). How a run is fetched is the store's (FetchRun).
 */
export class BlockBatcher {
  readonly #fetchRun: FetchRun
  readonly #opts: BlockBatcherOptions
  /** Per CAR, the blocks asked for and not yet in a run, in the order CARs take turns. */
  readonly #wanted = new Map<number, Wanted[]>()
  /** Blocks on their way, by CAR and place (never dropped before they are in: a block is not fetched twice at once). */
  readonly #pending = new Map<string, Promise<Buffer>>()
  readonly #recent: LRUCache<string, Buffer>
  #inflight = 0
  #dispatching = false

  constructor (fetchRun: FetchRun, opts: BlockBatcherOptions) {
    this.#fetchRun = fetchRun
    this.#opts = opts
    this.#recent = new LRUCache<string, Buffer>({ maxSize: opts.recentBytes, sizeCalculation: pinned })
  }

  /** Blocks of one CAR, each checked, or the error that keeps it from being read. */
  async blocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    return await Promise.all(blocks.map(async (b) => await this.block(car, b).catch((err: unknown) => {
      if (err instanceof PackerError) return err
      throw err
    })))
  }

  /** One block, checked (throws a PackerError when it cannot be read). */
  async block (car: number, block: BlockAt): Promise<Buffer> {
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
   * Turns wanted blocks into runs while fewer than `requests` are in flight: the lowest-offset run of blocks side by
   * side of each CAR in turn. Blocks asked for while every request is busy wait here and join into longer runs: a
   * sequential reader's read-ahead, asked for a leaf at a time, goes out in few large requests (a distant store's
   * latency is paid per request).
   */
  #dispatch (): void {
    this.#dispatching = false
    while (this.#inflight < this.#opts.requests && this.#wanted.size > 0) {
      const [car, wanted] = this.#wanted.entries().next().value as [number, Wanted[]]
      this.#wanted.delete(car)
      wanted.sort((a, b) => a.block.offset - b.block.offset)
      const end = runEnd((k) => wanted[k]!.block, 0, wanted.length, this.#opts.requestBytes)
      // the rest goes to the back: CARs take turns
      if (end < wanted.length) this.#wanted.set(car, wanted.slice(end))
      this.#inflight++
      void this.#run(car, wanted.slice(0, end))
    }
  }

  async #run (car: number, run: Wanted[]): Promise<void> {
    const given = new Array<boolean>(run.length).fill(false)
    const give: GiveBlock = (i, b) => {
      if (given[i] !== false) return
      given[i] = true
      if (b instanceof PackerError) run[i]!.reject(b)
      else run[i]!.resolve(b)
    }
    try {
      const rest = await this.#fetchRun(car, run.map((w) => w.block), give)
      for (let i = 0; i < run.length; i++) give(i, rest ?? new PackerError('REMOTE', `block ${run[i]!.block.cid} at byte ${run[i]!.block.offset} was not fetched`))
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

/** The memory a kept block holds: all of its shared memory (a fetching thread lays several blocks out in one piece). */
function pinned (b: Buffer): number {
  return Math.max(1, b.buffer instanceof SharedArrayBuffer ? b.buffer.byteLength : b.length)
}
