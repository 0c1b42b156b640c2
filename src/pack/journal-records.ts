import fs from 'node:fs/promises'
import { crc32 } from 'node:zlib'
import type { CarRecord } from '../format/manifest.js'
import type { EntryType } from '../format/table-entry.js'
import { PackerError } from '../errors.js'
import type { JournalItem, JournalEntry, SourceId } from './journal.js'

/**
 * The pack journal's file, version 4 (docs/FORMAT.md §9): a JSON header line, then frames of binary records, each
 * frame [u32 length][u32 CRC-32 of the payload][payload] (little-endian), written whole by one append. Records:
 * [u8 kind][u32 length][body]. A frame cut short or not matching its CRC (a crash) ends the journal.
 *
 * Binary because a pack writes a record per file and the final stage reads them twice: as JSON lines (version 3),
 * building, writing and parsing them were ~0.85 CPU-s of the main thread for 46,637 files; here a record is written
 * into one buffer and read back without a JSON text or an object per field.
 */
export const RECORD_DIR = 1
export const RECORD_ENTRY = 2
export const RECORD_CAR = 3
export const RECORD_DRAFT = 4

const TYPES: EntryType[] = ['file', 'dir', 'symlink']
const TYPE_CODE: Record<EntryType, number> = { file: 0, dir: 1, symlink: 2 }

const F_ENC = 1
const F_ZSTD = 2
const F_DAG = 4
const F_SRC = 8
const F_RECORDS = 16
const F_MTIME_TEXT = 32
const F_VERSION = 64

const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

/** A frame is appended once its payload reaches this size (or on flush). */
const FRAME_BYTES = 256 * 1024

/**
 * Appends to a private (0600) file, opened at the first append: appends land in the order they were handed over, even
 * when one is handed over while another is under way (the pack's CAR writer records a CAR or a draft while the files
 * loop records entries); `sync` makes every append handed over before it durable.
 */
export class OrderedAppends {
  readonly file: string
  #fh: fs.FileHandle | null = null
  /** The appends in flight, one after the other in the order they were handed over. */
  #writing: Promise<void> = Promise.resolve()

  constructor (file: string) { this.file = file }

  async #then (step: (fh: fs.FileHandle) => Promise<void>): Promise<void> {
    const w = this.#writing.then(async () => { await step(this.#fh ??= await fs.open(this.file, 'a', 0o600)) })
    this.#writing = w.catch(() => {})
    await w
  }

  async append (data: Uint8Array): Promise<void> { await this.#then(async (fh) => { await fh.appendFile(data) }) }

  async sync (): Promise<void> { await this.#then(async (fh) => { await fh.datasync() }) }

  async close (): Promise<void> {
    await this.#writing
    await this.#fh?.close()
    this.#fh = null
  }
}

/** Appends records to a journal file in frames; `sync` makes everything handed over durable. */
export class RecordWriter {
  readonly #out: OrderedAppends
  #buf = Buffer.allocUnsafe(FRAME_BYTES + 64 * 1024)
  /** Bytes of the frame being filled (its 8-byte head included). */
  #at = 8

  constructor (file: string) { this.#out = new OrderedAppends(file) }

  #ensure (n: number): void {
    if (this.#at + n <= this.#buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n))
    this.#buf.copy(bigger, 0, 0, this.#at)
    this.#buf = bigger
  }

  /** Starts a record of `kind` with at most `max` bytes of body; returns where its body starts. */
  #begin (kind: number, max: number): number {
    this.#ensure(5 + max)
    this.#buf[this.#at] = kind
    return this.#at + 5
  }

  async #end (start: number, end: number): Promise<void> {
    this.#buf.writeUInt32LE(end - start, start - 4)
    this.#at = end
    if (this.#at >= FRAME_BYTES) await this.flush()
  }

  async dir (dir: Buffer): Promise<void> {
    const start = this.#begin(RECORD_DIR, dir.length)
    await this.#end(start, start + dir.copy(this.#buf, start))
  }

  async json (kind: number, value: unknown): Promise<void> {
    const text = JSON.stringify(value)
    const start = this.#begin(kind, Buffer.byteLength(text))
    await this.#end(start, start + this.#buf.write(text, start, 'utf8'))
  }

  async entry (j: JournalEntry): Promise<void> {
    const e = j.entry
    const version = j.src?.version
    const max = 64 + e.path.length + (e.cid?.length ?? 0) + 4 * (e.cars?.length ?? 0) + (e.target?.length ?? 0) +
      (j.src === undefined ? 0 : 4 * 256 + (version === undefined ? 0 : Buffer.byteLength(version))) + 8 * (j.refs?.length ?? 0) + 64
    const b = this.#begin(RECORD_ENTRY, max)
    const buf = this.#buf
    let p = b
    const mtimeText = e.mtimeNs < I64_MIN || e.mtimeNs > I64_MAX
    const flags = (e.enc ? F_ENC : 0) | (e.compression === 'zstd' ? F_ZSTD : 0) | (j.dagSize !== undefined ? F_DAG : 0) |
      (j.src !== undefined ? F_SRC : 0) | (j.records !== undefined ? F_RECORDS : 0) | (mtimeText ? F_MTIME_TEXT : 0) |
      (version !== undefined ? F_VERSION : 0)
    buf[p++] = TYPE_CODE[e.type]
    buf[p++] = flags
    p = buf.writeUInt16LE(e.mode, p)
    p = buf.writeUInt32LE(e.uid, p)
    p = buf.writeUInt32LE(e.gid, p)
    if (mtimeText) p = ascii(buf, p, e.mtimeNs.toString())
    else p = buf.writeBigInt64LE(e.mtimeNs, p)
    p = buf.writeUInt32LE(e.path.length, p)
    p += e.path.copy(buf, p)
    if (e.type === 'file') {
      p = buf.writeDoubleLE(e.size!, p)
      p = buf.writeDoubleLE(e.storedSize!, p)
      p = ascii(buf, p, e.cid!)
      const cars = e.cars!
      p = buf.writeUInt32LE(cars.length, p)
      for (const c of cars) p = buf.writeUInt32LE(c, p)
      if (e.enc) {
        p += e.enc.key.copy(buf, p, 0, 16)
        p = buf.writeUInt32LE(e.enc.headerLength, p)
      }
    } else if (e.type === 'symlink') {
      const t = e.target ?? Buffer.alloc(0)
      p = buf.writeUInt32LE(t.length, p)
      p += t.copy(buf, p)
    }
    if (j.dagSize !== undefined) p = buf.writeDoubleLE(j.dagSize, p)
    if (j.src !== undefined) {
      p = ascii(buf, p, j.src.dev)
      p = ascii(buf, p, j.src.ino)
      p = ascii(buf, p, j.src.size)
      p = ascii(buf, p, j.src.mtimeNs)
      if (version !== undefined) {
        const n = buf.write(version, p + 4, 'utf8')
        p = buf.writeUInt32LE(n, p) + n
      }
    }
    if (j.records !== undefined) {
      p = buf.writeDoubleLE(j.records[0], p)
      p = buf.writeDoubleLE(j.records[1], p)
    }
    const refs = j.refs ?? []
    p = buf.writeUInt32LE(refs.length, p)
    for (const r of refs) p = buf.writeDoubleLE(r, p)
    await this.#end(b, p)
  }

  /** Appends the records handed over so far as one frame. */
  async flush (): Promise<void> {
    if (this.#at === 8) return
    // The buffer goes to the write as it is, a new one takes the next records (a flush may start while one is in flight).
    const frame = this.#buf.subarray(0, this.#at)
    frame.writeUInt32LE(this.#at - 8, 0)
    frame.writeUInt32LE(crc32(frame.subarray(8)), 4)
    this.#buf = Buffer.allocUnsafe(FRAME_BYTES + 64 * 1024)
    this.#at = 8
    await this.#out.append(frame)
  }

  async sync (): Promise<void> {
    await this.flush()
    await this.#out.sync()
  }

  async close (): Promise<void> {
    await this.flush()
    await this.#out.close()
  }
}

/** A short ASCII string (decimal numbers, a CID) as [u8 length][bytes]. */
function ascii (buf: Buffer, p: number, s: string): number {
  if (s.length > 255) throw new Error(`journal: ${s.slice(0, 20)}… is too long for its field`)
  buf[p] = s.length
  return p + 1 + buf.write(s, p + 1, 'latin1')
}

/** The journal's header line (parsed JSON, null when it is not JSON) and where its records start. */
export async function readHeaderLine (fh: fs.FileHandle): Promise<{ header: any, end: number } | null> {
  let buf = Buffer.allocUnsafe(64 * 1024)
  let n = 0
  for (;;) {
    const { bytesRead } = await fh.read(buf, n, buf.length - n, n)
    n += bytesRead
    const nl = buf.subarray(0, n).indexOf(0x0a)
    if (nl >= 0) {
      try { return { header: JSON.parse(buf.toString('utf8', 0, nl)), end: nl + 1 } } catch { return null }
    }
    if (bytesRead === 0) {
      try { return { header: JSON.parse(buf.toString('utf8', 0, n)), end: n } } catch { return null }
    }
    if (n === buf.length) { const b = Buffer.allocUnsafe(buf.length * 2); buf.copy(b); buf = b }
  }
}

export type JournalRecord = JournalItem | { car: CarRecord, blocks: number } | { draft: string }

/**
 * The records of a version-4 journal after its header line (at `from`), in order; with `items` false, directories
 * and entries are skipped unread. A frame cut short or damaged ends them.
 */
export async function * readRecords (fh: fs.FileHandle, from: number, where: string, items = true): AsyncGenerator<JournalRecord> {
  let buf = Buffer.allocUnsafe(1 << 20)
  let start = 0
  let end = 0
  let pos = from
  let eof = false
  /** Makes `n` bytes available at `start`; false at the end of the file. */
  const need = async (n: number): Promise<boolean> => {
    while (end - start < n) {
      if (eof) return false
      if (start > 0) { buf.copy(buf, 0, start, end); end -= start; start = 0 }
      if (n > buf.length) { const b = Buffer.allocUnsafe(Math.max(n, buf.length * 2)); buf.copy(b, 0, 0, end); buf = b }
      const { bytesRead } = await fh.read(buf, end, buf.length - end, pos)
      if (bytesRead === 0) eof = true
      pos += bytesRead
      end += bytesRead
    }
    return true
  }
  for (;;) {
    if (!(await need(8))) return
    const len = buf.readUInt32LE(start)
    const crc = buf.readUInt32LE(start + 4)
    if (len === 0 || !(await need(8 + len))) return
    const payload = buf.subarray(start + 8, start + 8 + len)
    if (crc32(payload) !== crc) return
    start += 8 + len
    // The payload's bytes stay put until the next need(), after the frame: nothing yielded keeps a view of them.
    for (let p = 0; p < payload.length;) {
      const kind = payload[p]!
      const size = payload.readUInt32LE(p + 1)
      const b = p + 5
      p = b + size
      if (p > payload.length) throw new PackerError('FORMAT', `${where}: a record overruns its frame; remove the journal to start the pack afresh`)
      switch (kind) {
        case RECORD_DIR: if (items) yield { dir: Buffer.from(payload.subarray(b, p)) }; break
        case RECORD_ENTRY: if (items) yield decodeEntry(payload, b); break
        case RECORD_CAR: yield JSON.parse(payload.toString('utf8', b, p)); break
        case RECORD_DRAFT: yield JSON.parse(payload.toString('utf8', b, p)); break
        default: throw new PackerError('FORMAT', `${where}: unknown record kind ${kind}; remove the journal to start the pack afresh`)
      }
    }
  }
}

function readAscii (buf: Buffer, p: number): string {
  return buf.toString('latin1', p + 1, p + 1 + buf[p]!)
}

function decodeEntry (buf: Buffer, b: number): JournalEntry {
  let p = b
  const type = TYPES[buf[p++]!]!
  const flags = buf[p++]!
  const mode = buf.readUInt16LE(p); p += 2
  const uid = buf.readUInt32LE(p); p += 4
  const gid = buf.readUInt32LE(p); p += 4
  let mtimeNs: bigint
  if ((flags & F_MTIME_TEXT) !== 0) { const s = readAscii(buf, p); p += 1 + s.length; mtimeNs = BigInt(s) } else { mtimeNs = buf.readBigInt64LE(p); p += 8 }
  const pathLength = buf.readUInt32LE(p); p += 4
  const path = Buffer.from(buf.subarray(p, p + pathLength)); p += pathLength
  const j: JournalEntry = { entry: { path, type, mode, mtimeNs, uid, gid } }
  const e = j.entry
  if (type === 'file') {
    e.size = buf.readDoubleLE(p); p += 8
    e.storedSize = buf.readDoubleLE(p); p += 8
    e.cid = readAscii(buf, p); p += 1 + e.cid.length
    const n = buf.readUInt32LE(p); p += 4
    const cars = new Array<number>(n)
    for (let i = 0; i < n; i++, p += 4) cars[i] = buf.readUInt32LE(p)
    e.cars = cars
    if ((flags & F_ENC) !== 0) {
      const key = Buffer.from(buf.subarray(p, p + 16)); p += 16
      e.enc = { key, headerLength: buf.readUInt32LE(p) }; p += 4
    }
    if ((flags & F_ZSTD) !== 0) e.compression = 'zstd'
  } else if (type === 'symlink') {
    const n = buf.readUInt32LE(p); p += 4
    e.target = Buffer.from(buf.subarray(p, p + n)); p += n
  }
  if ((flags & F_DAG) !== 0) { j.dagSize = buf.readDoubleLE(p); p += 8 }
  if ((flags & F_SRC) !== 0) {
    const dev = readAscii(buf, p); p += 1 + dev.length
    const ino = readAscii(buf, p); p += 1 + ino.length
    const size = readAscii(buf, p); p += 1 + size.length
    const mtime = readAscii(buf, p); p += 1 + mtime.length
    const src: SourceId = { dev, ino, size, mtimeNs: mtime }
    if ((flags & F_VERSION) !== 0) { const n = buf.readUInt32LE(p); p += 4; src.version = buf.toString('utf8', p, p + n); p += n }
    j.src = src
  }
  if ((flags & F_RECORDS) !== 0) { j.records = [buf.readDoubleLE(p), buf.readDoubleLE(p + 8)]; p += 16 }
  const refs = buf.readUInt32LE(p); p += 4
  if (refs > 0) {
    j.refs = new Array<number>(refs)
    for (let i = 0; i < refs; i++, p += 8) j.refs[i] = buf.readDoubleLE(p)
  }
  return j
}
