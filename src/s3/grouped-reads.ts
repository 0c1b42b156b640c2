import { sharedMemory, sharedMemoryTaken } from '../memory.js'

interface Group { end: number, bytes: Promise<Buffer>, left: number }

/** A GET's buffer, its memory counted toward this thread's next full collection (sharedMemoryTaken). */
function sharedBuffer (bytes: number): Buffer {
  sharedMemoryTaken(bytes)
  return sharedMemory(bytes) // on huge pages: fresh 4 KiB pages cost ~10 us each to touch here
}

/**
 * One object's reads by a pack, several leaves to a ranged GET. A large file's leaves are asked for in order, several
 * at once (about 1 MiB each); a GET apiece costs the S3 client about as much CPU as the bytes it brings (signing,
 * middleware, parsing: measured, bench/s3-pack.mjs), so reads of side-by-side ranges share one GET of up to
 * `groupBytes`. The GET's bytes land in a SharedArrayBuffer and a read within one group is a view of it, exactly its
 * bytes: posted to a leaf worker it is shared, neither copied nor transferred (copying each read out of its GET cost
 * the main thread more than receiving it). A read across two groups gets a buffer of its own. A group is let go once
 * all of it has been handed out, so bytes held stay within the reads in flight (and the views still in use).
 */
export class GroupedReads {
  readonly #fetch: (start: number, end: number, out: Buffer) => Promise<Buffer>
  readonly #size: number
  readonly #groupBytes: number
  readonly #groups = new Map<number, Group>()

  /** `fetch(start, end, out)`: bytes [start, end) of the object, whole, into `out`, in one request (retried as it sees fit). */
  constructor (fetch: (start: number, end: number, out: Buffer) => Promise<Buffer>, size: number, groupBytes: number) {
    this.#fetch = fetch
    this.#size = size
    this.#groupBytes = groupBytes
  }

  /** Bytes [start, end): a view of a shared buffer, or a buffer of their own. */
  async read (start: number, end: number): Promise<Buffer> {
    const [from, group] = this.#groupAt(start)
    if (end <= group.end) {
      try {
        return (await group.bytes).subarray(start - from, end - from)
      } finally {
        this.#handedOut(from, group, end - start)
      }
    }
    const out = Buffer.allocUnsafeSlow(end - start)
    const parts: Array<Promise<void>> = []
    for (let at = start; at < end;) {
      const [from, group] = this.#groupAt(at)
      const [since, to] = [at, Math.min(end, group.end)]
      parts.push(group.bytes.then((bytes) => {
        bytes.copy(out, since - start, since - from, to - from)
      }).finally(() => { this.#handedOut(from, group, to - since) }))
      at = to
    }
    await Promise.all(parts)
    return out
  }

  /**
   * Asks for the object's first group now, before a read wants it (reading ahead of the object's turn); settles when
   * its GET does (never rejects: a failure is seen by the reads of it).
   */
  readFirst (): Promise<void> {
    return this.#groupAt(0)[1].bytes.then(() => {}, () => {})
  }

  #handedOut (from: number, group: Group, bytes: number): void {
    group.left -= bytes
    if (group.left <= 0) this.#groups.delete(from)
  }

  /** The group holding byte `at`: one already asked for, or a new one from `at`. */
  #groupAt (at: number): [number, Group] {
    for (const [from, g] of this.#groups) if (from <= at && at < g.end) return [from, g]
    const end = Math.min(this.#size, at + this.#groupBytes)
    const bytes = this.#fetch(at, end, sharedBuffer(end - at))
    bytes.catch(() => {}) // seen by each read of it
    const g = { end, bytes, left: end - at }
    this.#groups.set(at, g)
    return [at, g]
  }
}
