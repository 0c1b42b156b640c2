interface Group { end: number, bytes: Promise<Buffer>, left: number }

/**
 * Group buffers let go of, for the next GET: a fresh 8 MiB buffer is mapped and page-faulted in by the kernel on
 * its first write, at every GET. A few are kept (the GETs in flight of the files being read need no more).
 */
const spare: Buffer[] = []
const SPARE_MAX = 4

/**
 * One object's reads by a pack, several leaves to a ranged GET. A large file's leaves are asked for in order, several
 * at once (about 1 MiB each); a GET apiece costs the S3 client about as much CPU as the bytes it brings (signing,
 * middleware, parsing: measured, bench/s3-pack.mjs), so reads of side-by-side ranges share one GET of up to
 * `groupBytes`, which lands in one buffer as it comes. Each read still gets its own buffer, exactly its bytes: it is
 * transferred to a leaf worker, not copied. A group is let go once all of it has been handed out, so bytes held stay
 * within the reads in flight, and its buffer serves a later GET.
 */
export class GroupedReads {
  readonly #fetch: (start: number, end: number, into: Buffer) => Promise<void>
  readonly #size: number
  readonly #groupBytes: number
  readonly #groups = new Map<number, Group>()

  /** `fetch(start, end, into)`: bytes [start, end) of the object, whole, into `into`, in one request (retried as it sees fit). */
  constructor (fetch: (start: number, end: number, into: Buffer) => Promise<void>, size: number, groupBytes: number) {
    this.#fetch = fetch
    this.#size = size
    this.#groupBytes = groupBytes
  }

  /** Bytes [start, end) in a buffer of their own. */
  async read (start: number, end: number): Promise<Buffer> {
    const out = Buffer.allocUnsafeSlow(end - start)
    const parts: Array<Promise<void>> = []
    for (let at = start; at < end;) {
      const [from, group] = this.#groupAt(at)
      const [since, to] = [at, Math.min(end, group.end)]
      parts.push(group.bytes.then((bytes) => {
        bytes.copy(out, since - start, since - from, to - from)
      }).finally(() => {
        group.left -= to - since
        if (group.left <= 0) this.#release(from, group)
      }))
      at = to
    }
    await Promise.all(parts)
    return out
  }

  /** The group holding byte `at`: one already asked for, or a new one from `at`. */
  #groupAt (at: number): [number, Group] {
    for (const [from, g] of this.#groups) if (from <= at && at < g.end) return [from, g]
    const end = Math.min(this.#size, at + this.#groupBytes)
    const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(this.#groupBytes)
    const into = buffer.length >= end - at ? buffer.subarray(0, end - at) : Buffer.allocUnsafeSlow(end - at)
    const bytes = this.#fetch(at, end, into).then(() => into)
    bytes.catch(() => {}) // seen by each read of it
    const g = { end, bytes, left: end - at }
    this.#groups.set(at, g)
    return [at, g]
  }

  /** A group wholly handed out: forgotten, its buffer kept for another GET once the request is over. */
  #release (from: number, group: Group): void {
    this.#groups.delete(from)
    group.bytes.then((bytes) => {
      const whole = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.buffer.byteLength - bytes.byteOffset)
      if (spare.length < SPARE_MAX && whole.length === this.#groupBytes) spare.push(whole)
    }, () => {})
  }
}
