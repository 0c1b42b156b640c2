import type fs from 'node:fs/promises'

/** Writes `parts` at `at` whole (writev may write less than asked). */
async function writevAll (fh: fs.FileHandle, parts: Uint8Array[], at: number): Promise<void> {
  while (parts.length > 0) {
    let { bytesWritten } = await fh.writev(parts, at)
    at += bytesWritten
    while (parts.length > 0 && bytesWritten >= parts[0]!.length) bytesWritten -= parts.shift()!.length
    if (bytesWritten > 0) parts[0] = parts[0]!.subarray(bytesWritten)
  }
}

/** Most buffers one writev takes (Linux's IOV_MAX is 1024). */
const MAX_PARTS = 256

/**
 * Writes to one file at explicit offsets without waiting for each write in turn: up to `maxInFlight` bytes may be
 * queued while the caller goes on producing, so a pipeline does not stop on every write. The queue is written by
 * one writev at a time, buffers at consecutive offsets together: concurrent writes to one file made the file
 * system's inode lock spin (most of unpack's system time, 16 CPU-seconds for 4 GiB). The caller must not change a
 * buffer once written until its `release`, when given, is called (once it is written; never after a failed write);
 * an error surfaces at the next write or at drain().
 */
export class WriteQueue {
  readonly #fh: fs.FileHandle
  readonly #max: number
  readonly #queue: Array<{ bytes: Uint8Array, at: number, release?: () => void }> = []
  #queued = 0
  #running: Promise<void> | null = null
  #error: { err: unknown } | null = null
  #waiters: Array<() => void> = []

  constructor (fh: fs.FileHandle, maxInFlight = 8 * 1024 * 1024) { this.#fh = fh; this.#max = maxInFlight }

  #throwIfFailed (): void {
    if (this.#error !== null) throw this.#error.err
  }

  async write (bytes: Uint8Array, at: number, release?: () => void): Promise<void> {
    this.#throwIfFailed()
    if (bytes.length === 0) {
      release?.()
      return
    }
    this.#queue.push({ bytes, at, release })
    this.#queued += bytes.length
    this.#running ??= this.#run()
    while (this.#queued > this.#max && this.#error === null) await new Promise<void>((resolve) => this.#waiters.push(resolve))
    this.#throwIfFailed()
  }

  /** Waits for every write handed over so far. */
  async drain (): Promise<void> {
    while (this.#running !== null) await this.#running
    this.#throwIfFailed()
  }

  async #run (): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.#error === null) {
        const first = this.#queue.shift()!
        const parts = [first.bytes]
        const written = [first]
        let end = first.at + first.bytes.length
        while (this.#queue.length > 0 && this.#queue[0]!.at === end && parts.length < MAX_PARTS) {
          const next = this.#queue.shift()!
          parts.push(next.bytes)
          written.push(next)
          end += next.bytes.length
        }
        try {
          await writevAll(this.#fh, parts, first.at)
          for (const w of written) w.release?.()
        } catch (err) {
          this.#error = { err }
        }
        this.#queued -= end - first.at
        for (const wake of this.#waiters.splice(0)) wake()
      }
    } finally {
      this.#running = null
    }
  }
}
