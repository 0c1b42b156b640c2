import { readSourceFile } from './file-reader.js'
import type { SourceEntry } from './walk.js'

/** Files up to this size are read whole, ahead of the importer. */
export const PREFETCH_MAX_FILE = 1024 * 1024

/**
 * Reads small files ahead, several at a time, so that the per-file cost of open/stat/read/close (each a round trip
 * to libuv's thread pool) overlaps instead of adding up: with 20 000 small files that was most of pack's time.
 * Files are still handed on strictly in walk order, so the set's layout does not change; memory is bounded by
 * `maxBytes` in flight. Each read makes the same checks as a streamed one (a file that changed fails the same way).
 */
export class SourcePrefetcher {
  readonly #entries: SourceEntry[]
  readonly #pending = new Map<SourceEntry, Promise<Buffer[]>>()
  readonly #concurrency: number
  readonly #maxBytes: number
  #next = 0
  #inFlightBytes = 0

  constructor (entries: SourceEntry[], opts: { concurrency?: number, maxBytes?: number } = {}) {
    this.#entries = entries.filter((e) => e.type === 'file')
    this.#concurrency = opts.concurrency ?? 16
    this.#maxBytes = opts.maxBytes ?? 32 * 1024 * 1024
  }

  /** The file's chunks if it was read ahead (its turn has come: it is taken out), else null: stream it. */
  take (e: SourceEntry): Promise<Buffer[]> | null {
    const p = this.#pending.get(e) ?? null
    if (p !== null) this.#pending.delete(e)
    this.#fill(e)
    return p
  }

  #fill (current: SourceEntry): void {
    while (this.#next < this.#entries.length && this.#pending.size < this.#concurrency) {
      const e = this.#entries[this.#next]
      const size = Number(e.stat.size)
      if (e === current || size > PREFETCH_MAX_FILE) { this.#next++; continue }
      if (this.#inFlightBytes + size > this.#maxBytes && this.#pending.size > 0) return
      this.#next++
      this.#inFlightBytes += size
      const read = (async () => {
        const chunks: Buffer[] = []
        try {
          for await (const c of readSourceFile(e)) chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength))
        } finally {
          this.#inFlightBytes -= size
        }
        return chunks
      })()
      read.catch(() => {}) // an error is seen when the file's turn comes
      this.#pending.set(e, read)
    }
  }
}
