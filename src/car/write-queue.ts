import type fs from 'node:fs/promises'

async function writeAll (fh: fs.FileHandle, bytes: Uint8Array, at: number): Promise<void> {
  let done = 0
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, at + done)
    done += bytesWritten
  }
}

/**
 * Writes to one file at explicit offsets without waiting for each write in turn: up to `maxInFlight` bytes may be on
 * their way to the file system while the caller goes on producing, so a pipeline does not stop on every write. The
 * caller must not change a buffer once written; an error surfaces at the next write or at drain().
 */
export class WriteQueue {
  readonly #fh: fs.FileHandle
  readonly #max: number
  readonly #pending: Array<{ done: Promise<void>, bytes: number }> = []
  #inFlight = 0

  constructor (fh: fs.FileHandle, maxInFlight = 8 * 1024 * 1024) { this.#fh = fh; this.#max = maxInFlight }

  async write (bytes: Uint8Array, at: number): Promise<void> {
    const done = writeAll(this.#fh, bytes, at)
    done.catch(() => {}) // awaited below or in drain()
    this.#pending.push({ done, bytes: bytes.length })
    this.#inFlight += bytes.length
    while (this.#inFlight > this.#max) {
      const w = this.#pending.shift()!
      this.#inFlight -= w.bytes
      await w.done
    }
  }

  /** Waits for every write handed over so far. */
  async drain (): Promise<void> {
    const pending = this.#pending.splice(0)
    this.#inFlight = 0
    for (const w of pending) await w.done
  }
}
