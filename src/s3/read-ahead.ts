import type { SourceEntry } from '../source/walk.js'
import type { GroupedReads } from './grouped-reads.js'

interface Announced { entry: SourceEntry, reads?: GroupedReads, bytes: number, settled?: Promise<unknown> }

/**
 * The first GET of each object a pack will open next (TreeSource.willOpen), started before its turn, as rclone keeps
 * several objects in flight: without it a file's first bytes were asked for only once the file before it was sealed
 * and written, and the two waited on each other. Objects are read ahead strictly in the order announced, at most
 * `maxObjects` of them and `maxBytes` of GETs in flight or held (beyond what the open object's own reads hold). An
 * object's bytes count until it is opened, or, for one passed over (opened out of turn, or never), until its GET
 * settles: so what is held stays bounded whatever happens to the pack.
 */
export class ReadAhead {
  /** Announced and not yet opened, in order; the first `#started` have their first GET asked for. */
  readonly #queue: Announced[] = []
  readonly #start: (e: SourceEntry) => GroupedReads
  readonly #maxBytes: number
  readonly #maxObjects: number
  readonly #firstBytes: number
  #started = 0
  #bytes = 0

  /** `start(e)`: the reads of `e` as its open will do them, whose first GET asks for `firstBytes` (less of a smaller object). */
  constructor (start: (e: SourceEntry) => GroupedReads, opts: { maxBytes: number, maxObjects: number, firstBytes: number }) {
    if (opts.firstBytes > opts.maxBytes) throw new Error('ReadAhead: one first GET would not fit in maxBytes')
    this.#start = start
    this.#maxBytes = opts.maxBytes
    this.#maxObjects = opts.maxObjects
    this.#firstBytes = opts.firstBytes
  }

  /** Bytes of first GETs in flight or held for objects not yet opened. */
  get bytes (): number { return this.#bytes }

  announce (entries: SourceEntry[]): void {
    for (const entry of entries) if (entry.stat.size > 0n) this.#queue.push({ entry, bytes: 0 })
    this.#fill()
  }

  /**
   * The reads of `e`, its first GET already asked for, or null when it was not read ahead (not announced, or already
   * taken: a reread after a change starts afresh). Objects announced before it are passed over.
   */
  take (e: SourceEntry): GroupedReads | null {
    const i = this.#queue.findIndex((x) => x.entry === e)
    if (i < 0) return null
    const passed = this.#queue.splice(0, i + 1)
    const mine = passed.pop()!
    this.#started = Math.max(0, this.#started - (i + 1))
    for (const x of passed) if (x.settled !== undefined) void x.settled.then(() => this.#release(x.bytes))
    this.#release(mine.bytes)
    return mine.reads ?? null
  }

  #release (bytes: number): void {
    this.#bytes -= bytes
    this.#fill()
  }

  #fill (): void {
    while (this.#started < this.#queue.length && this.#started < this.#maxObjects) {
      const next = this.#queue[this.#started]!
      const bytes = Math.min(Number(next.entry.stat.size), this.#firstBytes)
      if (this.#bytes + bytes > this.#maxBytes) return
      next.reads = this.#start(next.entry)
      next.settled = next.reads.readFirst()
      next.bytes = bytes
      this.#bytes += bytes
      this.#started++
    }
  }
}
