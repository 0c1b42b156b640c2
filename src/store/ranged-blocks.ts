import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import { hashMatches } from './block-hash.js'
import type { BlockAt } from './car-store.js'

/** Most bytes between two blocks read in one request (a section's head is a varint and a CID: ~40 bytes). */
const RUN_GAP = 4096

/** How a store reads byte ranges of its CARs, and says that a block is damaged. */
export interface RangeReader {
  /** Bytes [from, to) of CAR `car`, all of them, or a PackerError saying why not. */
  read: (car: number, from: number, to: number) => Promise<Buffer>
  /** The error for a block whose bytes do not match its hash. */
  damaged: (car: number, block: BlockAt) => PackerError
}

export interface RangedBlocksOptions {
  /** Requests in flight at once. */
  requests: number
  /** Most bytes one request asks for (blocks side by side are merged up to it). */
  requestBytes: number
  /** Verified blocks kept (a straddling age chunk's next leaf is asked for twice in a row). */
  recentBytes: number
}

interface Wanted { block: BlockAt, resolve: (b: Buffer) => void, reject: (e: PackerError) => void }

/**
 * Blocks of a store that is far away (an object store): a request costs a round trip, so blocks asked for in the
 * same turn of the event loop are read together where they lie side by side, in runs of at most `requestBytes`, with
 * at most `requests` requests in flight. Every block's SHA-256 is checked here before anyone sees it; each is handed
 * out in its own shared memory (posted to a worker thread it is shared, not copied; kept, it does not hold a run).
 */
export class RangedBlocks {
  readonly #reader: RangeReader
  readonly #opts: RangedBlocksOptions
  readonly #wanted = new Map<number, Wanted[]>()
  /** Blocks asked for, by CAR and place: read, or on their way (one read however often a block is asked for). */
  readonly #blocks: LRUCache<string, Promise<Buffer>>
  readonly #waiting: Array<() => void> = []
  #inflight = 0
  #flushing = false

  constructor (reader: RangeReader, opts: RangedBlocksOptions) {
    this.#reader = reader
    this.#opts = opts
    this.#blocks = new LRUCache<string, Promise<Buffer>>({ maxSize: opts.recentBytes })
  }

  /** Blocks of one CAR, each checked, or the error that keeps it from being read. */
  async blocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    return await Promise.all(blocks.map(async (b) => await this.block(car, b).catch((err: unknown) => {
      if (err instanceof PackerError) return err
      throw err
    })))
  }

  /** One block, checked (throws a PackerError when it cannot be read); blocks asked for in one turn are read together. */
  async block (car: number, block: BlockAt): Promise<Buffer> {
    const key = `${car}:${block.offset}:${block.length}`
    let got = this.#blocks.get(key)
    if (got === undefined) {
      const asked = new Promise<Buffer>((resolve, reject) => {
        const list = this.#wanted.get(car)
        if (list === undefined) this.#wanted.set(car, [{ block, resolve, reject }])
        else list.push({ block, resolve, reject })
      })
      // a block that could not be read is asked for again next time (the store may have it by then)
      asked.catch(() => { if (this.#blocks.get(key) === asked) this.#blocks.delete(key) })
      this.#blocks.set(key, asked, { size: Math.max(1, block.length) })
      got = asked
      if (!this.#flushing) {
        this.#flushing = true
        setImmediate(() => this.#flush())
      }
    }
    return await got
  }

  /** Turns the blocks wanted in this turn into requests: runs of blocks side by side. */
  #flush (): void {
    this.#flushing = false
    for (const [car, wanted] of this.#wanted) {
      this.#wanted.delete(car)
      wanted.sort((a, b) => a.block.offset - b.block.offset)
      let start = 0
      for (let k = 1; k <= wanted.length; k++) {
        const first = wanted[start]!.block
        const prev = wanted[k - 1]!.block
        const next = wanted[k]?.block
        const joins = next !== undefined && next.offset - (prev.offset + prev.length) <= RUN_GAP &&
          next.offset + next.length - first.offset <= this.#opts.requestBytes
        if (joins) continue
        void this.#readRun(car, wanted.slice(start, k))
        start = k
      }
    }
  }

  async #readRun (car: number, run: Wanted[]): Promise<void> {
    if (this.#inflight >= this.#opts.requests) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    this.#inflight++
    try {
      const from = run[0]!.block.offset
      const to = Math.max(...run.map((w) => w.block.offset + w.block.length))
      const bytes = await this.#reader.read(car, from, to)
      await Promise.all(run.map(async (w) => {
        const at = w.block.offset - from
        const view = bytes.subarray(at, at + w.block.length)
        if (!await hashMatches(view, w.block.cid.multihash.digest)) { w.reject(this.#reader.damaged(car, w.block)); return }
        const own = Buffer.from(new SharedArrayBuffer(w.block.length))
        view.copy(own)
        w.resolve(own)
      }))
    } catch (err) {
      const e = err instanceof PackerError ? err : new PackerError('REMOTE', (err as Error).message, { cause: err })
      for (const w of run) w.reject(e)
    } finally {
      this.#inflight--
      this.#waiting.shift()?.()
    }
  }
}
