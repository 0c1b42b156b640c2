import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'

/** Counted against the memory limit for each record held, besides its bytes: its view object and array slot. */
const RECORD_OVERHEAD = 80
/** Runs are written in writes of this size... */
const WRITE_BUFFER = 1024 * 1024
/** ...and read back through a buffer of this size per run. */
const READ_BUFFER = 128 * 1024
/** At most this many runs are merged at once (open files, read buffers); more are merged in passes first. */
const MAX_FAN_IN = 64

export interface ExternalSortOptions {
  /** A private directory: the sorter keeps its runs in a subdirectory of it, made on the first spill. */
  dir: string
  /** Bytes of records (with a per-record overhead) held in memory before they are written as a sorted run. */
  memoryLimit: number
  compare: (a: Uint8Array, b: Uint8Array) => number
}

/**
 * Sorts more byte records than fit in memory: records are held up to a memory limit, then sorted and written as a run
 * (one file, large sequential writes); sorted() merges the runs and the records still held with a heap, merging in
 * passes when there are more runs than MAX_FAN_IN. Stable: equal records come out in the order they were added.
 * Records are copied when added; the ones sorted() yields are views that stay valid.
 */
export class ExternalSorter {
  readonly #opts: ExternalSortOptions
  #held: Uint8Array[] = []
  #memoryUsed = 0
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

  /** Bytes the records held in memory count for (what memoryLimit bounds). */
  get memoryUsed (): number { return this.#memoryUsed }

  async add (record: Uint8Array): Promise<void> {
    if (this.#sealed) throw new Error('ExternalSorter: add() after sorted()')
    // Buffer.allocUnsafe takes small copies from Node's shared pool: no ArrayBuffer per record.
    const copy = Buffer.allocUnsafe(record.length)
    copy.set(record)
    this.#held.push(copy)
    this.#memoryUsed += record.length + RECORD_OVERHEAD
    if (this.#memoryUsed > this.#opts.memoryLimit) await this.spill()
  }

  /** Writes the records held in memory as a sorted run now (a shared memory budget calls it). */
  async spill (): Promise<void> {
    if (this.#held.length === 0) return
    const records = this.#held.sort(this.#opts.compare)
    this.#held = []
    this.#memoryUsed = 0
    this.#runFiles.push(await this.#writeRun(records))
  }

  /** The records in order; once. The sorter's files go as the merge ends (dispose() removes them in any case). */
  sorted (): AsyncIterableIterator<Uint8Array> {
    if (this.#sealed) throw new Error('ExternalSorter: sorted() called twice')
    this.#sealed = true
    return this.#merged()
  }

  /** Removes the sorter's files, whatever state it is in. */
  async dispose (): Promise<void> {
    this.#held = []
    this.#memoryUsed = 0
    this.#runFiles = []
    if (this.#runDir !== undefined) await fs.rm(this.#runDir, { recursive: true, force: true })
    this.#runDir = undefined
  }

  async * #merged (): AsyncGenerator<Uint8Array> {
    const held = this.#held.sort(this.#opts.compare)
    this.#held = []
    this.#memoryUsed = 0
    if (this.#runFiles.length === 0) {
      yield * held
      return
    }
    // One fan-in slot stays for the records still in memory, the last (newest) source.
    while (this.#runFiles.length > MAX_FAN_IN - 1) await this.#mergePass(MAX_FAN_IN)
    const files = this.#runFiles
    this.#runFiles = []
    const cursors: Cursor[] = []
    try {
      for (const f of files) cursors.push(await RunCursor.open(f))
      cursors.push(new ArrayCursor(held))
      yield * merge(cursors, this.#opts.compare)
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
        next.push(await this.#writeRun(merge(cursors, this.#opts.compare)))
      } finally {
        await Promise.all(cursors.map(async (c) => await c.close()))
      }
      await Promise.all(group.map(async (f) => await fs.rm(f, { force: true })))
    }
    this.#runFiles = next
  }

  /** Writes records as a run file: each is its length (LEB128) and its bytes. */
  async #writeRun (records: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<string> {
    try {
      this.#runDir ??= await fs.mkdtemp(path.join(this.#opts.dir, 'sort-'))
      const file = path.join(this.#runDir, `run-${this.#fileNo++}`)
      const fh = await fs.open(file, 'wx')
      try {
        const buf = Buffer.allocUnsafe(WRITE_BUFFER)
        let n = 0
        for await (const r of records) {
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

/** A sorted source being merged: `head` is its current record; next() returns a promise only when it must read. */
interface Cursor {
  head: Uint8Array | undefined
  next: () => Promise<void> | undefined
  close: () => Promise<void>
}

class ArrayCursor implements Cursor {
  head: Uint8Array | undefined
  #i = 0
  constructor (readonly records: Uint8Array[]) { this.head = records[0] }
  next (): undefined { this.head = this.records[++this.#i]; return undefined }
  async close (): Promise<void> {}
}

class RunCursor implements Cursor {
  head: Uint8Array | undefined
  readonly #fh: fs.FileHandle
  // Each read goes into a new buffer, so the records handed out (views of it) are never overwritten.
  #buf: Buffer = Buffer.alloc(0)
  #pos = 0
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
    let p = this.#pos
    let len = 0
    let scale = 1
    for (;;) {
      if (p >= buf.length) {
        if (!this.#eof) return false
        if (this.#pos < buf.length) throw new Error('ExternalSorter: a run file ends inside a record')
        this.head = undefined
        return true
      }
      const b = buf[p++]
      len += (b & 0x7f) * scale
      if (b < 0x80) break
      scale *= 128
    }
    if (p + len > buf.length) {
      if (this.#eof) throw new Error('ExternalSorter: a run file ends inside a record')
      return false
    }
    this.head = buf.subarray(p, p + len)
    this.#pos = p + len
    return true
  }

  /** Reads on after the unparsed tail, into a buffer large enough for a record longer than READ_BUFFER. */
  async #refill (): Promise<void> {
    const tail = this.#buf.subarray(this.#pos)
    const declared = declaredLength(tail)
    const size = Math.max(READ_BUFFER, declared === undefined ? 0 : declared + 10)
    const buf = Buffer.allocUnsafe(size)
    tail.copy(buf)
    let filled = tail.length
    while (filled < size) {
      const { bytesRead } = await this.#fh.read(buf, filled, size - filled, null)
      if (bytesRead === 0) { this.#eof = true; break }
      filled += bytesRead
    }
    this.#buf = buf.subarray(0, filled)
    this.#pos = 0
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

/** k-way merge with a binary heap; ties go to the earlier source, which keeps the sort stable. */
async function * merge (sources: Cursor[], compare: (a: Uint8Array, b: Uint8Array) => number): AsyncGenerator<Uint8Array> {
  const heap = sources.map((cursor, order) => ({ cursor, order })).filter((s) => s.cursor.head !== undefined)
  type Source = typeof heap[number]
  const less = (a: Source, b: Source): boolean => {
    const c = compare(a.cursor.head!, b.cursor.head!)
    return c < 0 || (c === 0 && a.order < b.order)
  }
  const siftDown = (i: number): void => {
    const n = heap.length
    const item = heap[i]
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const m = r < n && less(heap[r], heap[l]) ? r : l
      if (!less(heap[m], item)) break
      heap[i] = heap[m]
      i = m
    }
    heap[i] = item
  }
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i)
  while (heap.length > 0) {
    const top = heap[0].cursor
    yield top.head!
    const reading = top.next()
    if (reading !== undefined) await reading
    if (top.head === undefined) {
      const last = heap.pop()!
      if (heap.length === 0) break
      heap[0] = last
    }
    siftDown(0)
  }
}
