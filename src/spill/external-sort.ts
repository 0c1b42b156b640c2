import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'

/** Runs are written in writes of this size... */
const WRITE_BUFFER = 1024 * 1024
/** ...and read back through a buffer of this size per run. */
const READ_BUFFER = 128 * 1024
/** At most this many runs are merged at once (open files, read buffers); more are merged in passes first. */
const MAX_FAN_IN = 64
/** A run holds at most this many records: the in-memory sort packs a record's number in 21 bits of its sort key. */
const MAX_RUN_RECORDS = 1 << 21
/** ...and at most this many bytes: records' offsets are 32-bit. */
const MAX_RUN_BYTES = 2 ** 32 - 1
/** The first allocation of the record buffer, which then doubles as needed. */
const FIRST_BUFFER = 16 * 1024
/** Beyond this size, a record buffer under a memory limit of its own is allocated at that limit. */
const GROW_TO_LIMIT = 1024 * 1024
/** Memory per record besides its bytes: where it starts (4) and its sort key (8). */
const INDEX_BYTES = 12

export interface ExternalSortOptions {
  /** A private directory: the sorter keeps its runs in a subdirectory of it, made on the first spill. */
  dir: string
  /** Bytes of records (and INDEX_BYTES per record) held in memory before they are written as a sorted run. */
  memoryLimit: number
  /**
   * Records are ordered by their first keyBytes bytes (Infinity: the whole record) as unsigned bytes, a shorter key
   * first when one is a prefix of the other; records with equal keys stay in the order they were added.
   */
  keyBytes: number
}

/**
 * Sorts more byte records than fit in memory: records are held up to a memory limit, then sorted and written as a run
 * (one file, large sequential writes); sorted() merges the runs and the records still held with a heap, merging in
 * passes when there are more runs than MAX_FAN_IN. Stable. Records are copied into one buffer (no object per record:
 * millions cost little and make no garbage) and sorted by their first four key bytes with a native numeric sort, ties
 * settled byte by byte. Each record sorted() yields is a view of a buffer that is reused: it is valid until the
 * iteration moves on (copy what you keep).
 */
export class ExternalSorter {
  readonly #opts: ExternalSortOptions
  #bytes: Buffer = Buffer.alloc(0)
  #used = 0
  /** Where each held record starts in #bytes; record i ends where i + 1 starts (or at #used). */
  #starts = new Uint32Array(0)
  /** Scratch for sorting, as long as #starts. */
  #order = new Float64Array(0)
  #count = 0
  #runFiles: string[] = []
  #spilled = 0
  #runDir: string | undefined
  #fileNo = 0
  #sealed = false

  constructor (opts: ExternalSortOptions) {
    this.#opts = opts
  }

  /** Runs written so far (by add, spill or a merge pass). */
  get runs (): number { return this.#spilled }

  /**
   * Bytes of the records held in memory, and INDEX_BYTES per record for their index and sort: what memoryLimit bounds
   * (the buffers that hold them grow by doubling, the record buffer up to memoryLimit).
   */
  get memoryUsed (): number { return this.#used + INDEX_BYTES * this.#count }

  async add (record: Uint8Array): Promise<void> {
    if (this.#sealed) throw new Error('ExternalSorter: add() after sorted()')
    const full = this.#count === MAX_RUN_RECORDS || this.#used + record.length > MAX_RUN_BYTES || this.memoryUsed + record.length + INDEX_BYTES > this.#opts.memoryLimit
    if (this.#count > 0 && full) await this.spill()
    if (this.#used + record.length > this.#bytes.length || this.#count === this.#starts.length) this.#grow(record.length)
    this.#starts[this.#count++] = this.#used
    this.#bytes.set(record, this.#used)
    this.#used += record.length
  }

  /** Writes the records held in memory as a sorted run now (a shared memory budget calls it). */
  async spill (): Promise<void> {
    if (this.#count === 0) return
    const [bytes, starts, order] = [this.#bytes, this.#starts, this.#order]
    this.#runFiles.push(await this.#writeRun(this.#takeSorted()))
    // Under its own limit, the sorter fills the same buffers again (allocating new ones for each run left several
    // waiting for the collector); under a shared budget (no limit of its own) it lets them go.
    if (Number.isFinite(this.#opts.memoryLimit) && this.#count === 0) [this.#bytes, this.#starts, this.#order] = [bytes, starts, order]
  }

  /**
   * The records in order, each valid until the next is asked for; once. The sorter's files go as the merge ends
   * (dispose() removes them in any case).
   */
  sorted (): AsyncIterableIterator<Uint8Array> {
    if (this.#sealed) throw new Error('ExternalSorter: sorted() called twice')
    this.#sealed = true
    return this.#merged()
  }

  /** Removes the sorter's files, whatever state it is in. */
  async dispose (): Promise<void> {
    this.#release()
    this.#runFiles = []
    if (this.#runDir !== undefined) await fs.rm(this.#runDir, { recursive: true, force: true })
    this.#runDir = undefined
  }

  /**
   * Makes room for one more record of `len` bytes: the buffers double; past GROW_TO_LIMIT, the record buffer goes to
   * memoryLimit at once (its pages are only touched as records fill it), so a large run leaves no trail of
   * half-sized buffers behind for the allocator to keep.
   */
  #grow (len: number): void {
    const needed = this.#used + len
    if (needed > this.#bytes.length) {
      const doubled = Math.max(FIRST_BUFFER, 2 * this.#bytes.length)
      const size = doubled > GROW_TO_LIMIT && Number.isFinite(this.#opts.memoryLimit) ? this.#opts.memoryLimit : Math.min(doubled, this.#opts.memoryLimit)
      const grown = Buffer.allocUnsafe(Math.max(needed, size))
      this.#bytes.copy(grown, 0, 0, this.#used)
      this.#bytes = grown
    }
    if (this.#count === this.#starts.length) {
      const grown = new Uint32Array(Math.max(16, 2 * this.#starts.length))
      grown.set(this.#starts)
      this.#starts = grown
      this.#order = new Float64Array(grown.length)
    }
  }

  #release (): void {
    this.#bytes = Buffer.alloc(0)
    this.#starts = new Uint32Array(0)
    this.#order = new Float64Array(0)
    this.#used = 0
    this.#count = 0
  }

  /** The held records in order; the sorter lets go of them. */
  #takeSorted (): HeldRecords {
    const held = new HeldRecords(this.#bytes, this.#starts, this.#order, this.#count, this.#used, this.#opts.keyBytes)
    this.#release()
    return held
  }

  async * #merged (): AsyncGenerator<Uint8Array> {
    const held = this.#takeSorted()
    if (this.#runFiles.length === 0) {
      for (let r = held.head; r !== undefined; held.next(), r = held.head) yield r
      return
    }
    // One fan-in slot stays for the records still in memory, the last (newest) source.
    while (this.#runFiles.length > MAX_FAN_IN - 1) await this.#mergePass(MAX_FAN_IN)
    const files = this.#runFiles
    this.#runFiles = []
    const cursors: Cursor[] = []
    try {
      for (const f of files) cursors.push(await RunCursor.open(f))
      cursors.push(held)
      const merge = new Merge(cursors, this.#opts.keyBytes)
      for (let r = merge.head; r !== undefined; r = merge.head) {
        yield r
        const reading = merge.next()
        if (reading !== undefined) await reading
      }
    } finally {
      await Promise.all(cursors.map(async (c) => await c.close()))
      await Promise.all(files.map(async (f) => await fs.rm(f, { force: true })))
    }
  }

  /** Merges consecutive groups of runs into one run each: order between groups, so stability, is kept. */
  async #mergePass (fanIn: number): Promise<void> {
    const next: string[] = []
    for (let i = 0; i < this.#runFiles.length; i += fanIn) {
      const group = this.#runFiles.slice(i, i + fanIn)
      if (group.length === 1) { next.push(group[0]); continue }
      const cursors: Cursor[] = []
      try {
        for (const f of group) cursors.push(await RunCursor.open(f))
        next.push(await this.#writeRun(new Merge(cursors, this.#opts.keyBytes)))
      } finally {
        await Promise.all(cursors.map(async (c) => await c.close()))
      }
      await Promise.all(group.map(async (f) => await fs.rm(f, { force: true })))
    }
    this.#runFiles = next
  }

  /** Writes the records of a source as a run file: each is its length (LEB128) and its bytes. */
  async #writeRun (source: Cursor): Promise<string> {
    try {
      if (this.#runDir === undefined) {
        // The directory may not exist yet (a pack's work directory gets its sub-directories as their sorts spill).
        await fs.mkdir(this.#opts.dir, { recursive: true, mode: 0o700 })
        this.#runDir = await fs.mkdtemp(path.join(this.#opts.dir, 'sort-'))
      }
      const file = path.join(this.#runDir, `run-${this.#fileNo++}`)
      const fh = await fs.open(file, 'wx')
      try {
        const buf = Buffer.allocUnsafe(WRITE_BUFFER)
        let n = 0
        for (let r = source.head; r !== undefined; r = source.head) {
          if (n + 10 + r.length > WRITE_BUFFER) {
            await writeAll(fh, buf.subarray(0, n))
            n = 0
          }
          let len = r.length
          while (len > 0x7f) { buf[n++] = (len & 0x7f) | 0x80; len = Math.floor(len / 128) }
          buf[n++] = len
          if (10 + r.length > WRITE_BUFFER) {
            await writeAll(fh, buf.subarray(0, n))
            await writeAll(fh, r)
            n = 0
          } else {
            buf.set(r, n)
            n += r.length
          }
          const reading = source.next()
          if (reading !== undefined) await reading
        }
        await writeAll(fh, buf.subarray(0, n))
      } finally {
        await fh.close()
      }
      this.#spilled++
      return file
    } catch (err) {
      if (isErrno(err, 'ENOSPC')) {
        throw new PackerError('NO_SPACE', `no space left on the device of ${this.#opts.dir} for temporary sort files; free space there or choose another temporary directory`, { subject: this.#opts.dir, cause: err })
      }
      throw err
    }
  }
}

async function writeAll (fh: fs.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off)
    off += bytesWritten
  }
}

/** Compares the keys (first keyBytes bytes) of two records given as [start, end) in their buffers. */
function compareKeys (a: Uint8Array, aStart: number, aEnd: number, b: Uint8Array, bStart: number, bEnd: number, keyBytes: number): number {
  const aLen = Math.min(aEnd - aStart, keyBytes)
  const bLen = Math.min(bEnd - bStart, keyBytes)
  const n = Math.min(aLen, bLen)
  for (let i = 0; i < n; i++) {
    const d = a[aStart + i] - b[bStart + i]
    if (d !== 0) return d
  }
  return aLen - bLen
}

/** Records in order, one at a time: `head` is the current one; next() returns a promise only when it must read. */
interface Cursor {
  head: Uint8Array | undefined
  next: () => Promise<void> | undefined
  close: () => Promise<void>
}

/** The records held in memory, sorted (stably) when made. */
class HeldRecords implements Cursor {
  head: Uint8Array | undefined
  readonly #bytes: Uint8Array
  readonly #starts: Uint32Array
  readonly #order: Float64Array
  readonly #n: number
  readonly #used: number
  #i = 0

  /** Sorts the n records of `buffer` (record i starts at starts[i]) in `order`, a scratch array of n or more. */
  constructor (buffer: Buffer, starts: Uint32Array, order: Float64Array, n: number, used: number, keyBytes: number) {
    // A plain Uint8Array: its subarrays are cheaper to make than a Buffer's.
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, used)
    const end = (i: number): number => i + 1 < n ? starts[i + 1] : used
    // Sort key: the first 4 key bytes (zeros past the key or the record) above the record's number.
    const keys = order.subarray(0, n)
    for (let i = 0; i < n; i++) {
      const s = starts[i]
      const len = Math.min(end(i) - s, keyBytes)
      let p = 0
      for (let b = 0; b < 4; b++) p = p * 256 + (b < len ? bytes[s + b] : 0)
      keys[i] = p * MAX_RUN_RECORDS + i
    }
    keys.sort()
    // Records whose first four key bytes are equal: settle them on the rest of the key, then by number (stable).
    for (let i = 0; i < n;) {
      const prefix = Math.floor(keys[i] / MAX_RUN_RECORDS)
      let j = i + 1
      while (j < n && Math.floor(keys[j] / MAX_RUN_RECORDS) === prefix) j++
      if (j - i > 1) {
        const tied = Array.from(keys.subarray(i, j), (k) => k % MAX_RUN_RECORDS)
        tied.sort((a, b) => compareKeys(bytes, starts[a], end(a), bytes, starts[b], end(b), keyBytes) || a - b)
        for (let k = 0; k < tied.length; k++) keys[i + k] = prefix * MAX_RUN_RECORDS + tied[k]
      }
      i = j
    }
    this.#bytes = bytes
    this.#starts = starts
    this.#order = keys
    this.#n = n
    this.#used = used
    this.#at(0)
  }

  next (): undefined {
    this.#at(this.#i + 1)
    return undefined
  }

  async close (): Promise<void> {}

  #at (i: number): void {
    this.#i = i
    if (i >= this.#n) { this.head = undefined; return }
    const r = this.#order[i] % MAX_RUN_RECORDS
    this.head = this.#bytes.subarray(this.#starts[r], r + 1 < this.#n ? this.#starts[r + 1] : this.#used)
  }
}

/** The records of a run file, read through one bounded buffer (so a record is valid until the cursor moves on). */
class RunCursor implements Cursor {
  head: Uint8Array | undefined
  readonly #fh: fs.FileHandle
  #buf = new Uint8Array(READ_BUFFER)
  #pos = 0
  #filled = 0
  #eof = false

  private constructor (fh: fs.FileHandle) { this.#fh = fh }

  static async open (file: string): Promise<RunCursor> {
    const c = new RunCursor(await fs.open(file, 'r'))
    await c.#advance()
    return c
  }

  next (): Promise<void> | undefined {
    return this.#parse() ? undefined : this.#advance()
  }

  async close (): Promise<void> { await this.#fh.close() }

  async #advance (): Promise<void> {
    while (!this.#parse()) await this.#refill()
  }

  /** Moves head to the next record if it is all in the buffer (to undefined at the end); false if it must read. */
  #parse (): boolean {
    const buf = this.#buf
    const filled = this.#filled
    let p = this.#pos
    let len = 0
    let scale = 1
    for (;;) {
      if (p >= filled) {
        if (!this.#eof) return false
        if (this.#pos < filled) throw new Error('ExternalSorter: a run file ends inside a record')
        this.head = undefined
        return true
      }
      const b = buf[p++]
      len += (b & 0x7f) * scale
      if (b < 0x80) break
      scale *= 128
    }
    if (p + len > filled) {
      if (this.#eof) throw new Error('ExternalSorter: a run file ends inside a record')
      return false
    }
    this.head = buf.subarray(p, p + len)
    this.#pos = p + len
    return true
  }

  /** Moves the unparsed tail to the front and reads on; the buffer grows for a record longer than READ_BUFFER. */
  async #refill (): Promise<void> {
    const tail = this.#filled - this.#pos
    const declared = declaredLength(this.#buf.subarray(this.#pos, this.#filled))
    const size = Math.max(READ_BUFFER, declared === undefined ? 0 : declared + 10)
    if (size > this.#buf.length) {
      const grown = new Uint8Array(size)
      grown.set(this.#buf.subarray(this.#pos, this.#filled))
      this.#buf = grown
    } else {
      this.#buf.copyWithin(0, this.#pos, this.#filled)
    }
    this.#pos = 0
    this.#filled = tail
    while (this.#filled < this.#buf.length) {
      const { bytesRead } = await this.#fh.read(this.#buf, this.#filled, this.#buf.length - this.#filled, null)
      if (bytesRead === 0) { this.#eof = true; break }
      this.#filled += bytesRead
    }
  }
}

/** The length a LEB128 prefix at the start of `bytes` declares, if the prefix is complete. */
function declaredLength (bytes: Uint8Array): number | undefined {
  let len = 0
  let scale = 1
  for (let p = 0; p < bytes.length; p++) {
    len += (bytes[p] & 0x7f) * scale
    if (bytes[p] < 0x80) return len
    scale *= 128
  }
  return undefined
}

/** The k-way merge of sorted sources with a binary heap; ties go to the earlier source, which keeps it stable. */
class Merge implements Cursor {
  head: Uint8Array | undefined
  readonly #heap: Array<{ cursor: Cursor, order: number }>
  readonly #keyBytes: number

  constructor (sources: Cursor[], keyBytes: number) {
    this.#keyBytes = keyBytes
    this.#heap = sources.map((cursor, order) => ({ cursor, order })).filter((s) => s.cursor.head !== undefined)
    for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#siftDown(i)
    this.head = this.#heap[0]?.cursor.head
  }

  next (): Promise<void> | undefined {
    const reading = this.#heap[0].cursor.next()
    if (reading === undefined) { this.#settle(); return undefined }
    return reading.then(() => this.#settle())
  }

  async close (): Promise<void> {}

  /** Puts the source that moved on back in its place. */
  #settle (): void {
    const heap = this.#heap
    if (heap[0].cursor.head === undefined) {
      const last = heap.pop()!
      if (heap.length > 0) heap[0] = last
    }
    if (heap.length > 0) this.#siftDown(0)
    this.head = heap[0]?.cursor.head
  }

  #less (a: { cursor: Cursor, order: number }, b: { cursor: Cursor, order: number }): boolean {
    const x = a.cursor.head!
    const y = b.cursor.head!
    const c = compareKeys(x, 0, x.length, y, 0, y.length, this.#keyBytes)
    return c < 0 || (c === 0 && a.order < b.order)
  }

  #siftDown (i: number): void {
    const heap = this.#heap
    const n = heap.length
    const item = heap[i]
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const m = r < n && this.#less(heap[r], heap[l]) ? r : l
      if (!this.#less(heap[m], item)) break
      heap[i] = heap[m]
      i = m
    }
    heap[i] = item
  }
}

/**
 * One memory limit for several sorters (made with memoryLimit Infinity) that fill at once: when the records they
 * hold pass it, the one holding most writes them as a run.
 */
export class SharedSortBudget {
  readonly limit: number
  #used = 0
  #spills = 0
  readonly #sorters = new Set<ExternalSorter>()

  constructor (limit: number) {
    this.limit = limit
  }

  /** Runs the budget made its sorters write so far. */
  get spills (): number { return this.#spills }

  async add (sorter: ExternalSorter, record: Uint8Array): Promise<void> {
    this.#sorters.add(sorter)
    const before = sorter.memoryUsed
    await sorter.add(record)
    this.#used += sorter.memoryUsed - before
    while (this.#used > this.limit) {
      let largest = sorter
      for (const s of this.#sorters) if (s.memoryUsed > largest.memoryUsed) largest = s
      this.#used -= largest.memoryUsed
      this.#spills++
      await largest.spill()
    }
  }

  /** The sorter no longer counts (its records are being merged, or it is disposed of). */
  leave (sorter: ExternalSorter): void {
    if (this.#sorters.delete(sorter)) this.#used -= sorter.memoryUsed
  }
}
