import fs from 'node:fs/promises'
import { PackerError, isErrno } from '../errors.js'

/**
 * The block index: where every block of a set lives, so that opening a set never scans CAR data (FORMAT.md §8).
 * Binary, little-endian:
 *   header (32 bytes): magic "PKRBIDX1" | u32 version = 2 | u32 record size = 48 | u64 record count | u32 page size | u32 0
 *   records sorted by digest, then CAR: digest[32] (SHA-256 of the block) | u32 car | u32 length | u64 data offset
 *   fence: the digest of the first record of each page of `page size` records
 * A reader holds the fence (32 bytes per 1024 blocks) and reads one page per lookup: memory does not grow with the
 * set. Version 1 (24-byte header, no fence, one record per digest) is still read.
 */
export const INDEX_FILE = 'blocks.idx'
const MAGIC = Buffer.from('PKRBIDX1', 'latin1')
const HEADER_V1 = 24
const HEADER = 32
export const BLOCK_RECORD_SIZE = 48
const RECORD = BLOCK_RECORD_SIZE
/** Records per page: a page is 48 KiB, the fence 32 bytes per page. */
export const INDEX_PAGE = 1024
/** Pages kept in memory by a reader (48 KiB each). */
const CACHED_PAGES = 64

export interface BlockLocation { car: number, offset: number, length: number }

/** One 48-byte record. */
export function encodeBlockRecord (digest: Uint8Array, loc: BlockLocation, into = Buffer.allocUnsafe(RECORD), at = 0): Buffer {
  into.set(digest.subarray(0, 32), at)
  into.writeUInt32LE(loc.car, at + 32)
  into.writeUInt32LE(loc.length, at + 36)
  into.writeBigUInt64LE(BigInt(loc.offset), at + 40)
  return into
}

export function decodeBlockRecord (r: Uint8Array, at = 0): BlockLocation & { digest: Buffer } {
  const b = Buffer.from(r.buffer, r.byteOffset + at, RECORD)
  return { digest: b.subarray(0, 32), car: b.readUInt32LE(32), length: b.readUInt32LE(36), offset: Number(b.readBigUInt64LE(40)) }
}

/** Index order: digest bytes, then CAR index. */
export function compareBlockRecords (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  const ca = a[32]! | (a[33]! << 8) | (a[34]! << 16) | (a[35]! * 2 ** 24)
  const cb = b[32]! | (b[33]! << 8) | (b[34]! << 16) | (b[35]! * 2 ** 24)
  return ca - cb
}

function header (count: number): Buffer {
  const h = Buffer.alloc(HEADER)
  MAGIC.copy(h, 0)
  h.writeUInt32LE(2, 8)
  h.writeUInt32LE(RECORD, 12)
  h.writeBigUInt64LE(BigInt(count), 16)
  h.writeUInt32LE(INDEX_PAGE, 24)
  return h
}

/**
 * Writes an index file from records already in index order (e.g. an external sort of a pack's records), dropping a
 * record whose digest and CAR repeat the one before it (a block written twice into one CAR: the first copy is kept).
 * Streams: memory is the fence. Returns the number of records written.
 */
export async function writeBlockIndex (file: string, sorted: AsyncIterable<Uint8Array>): Promise<number> {
  const fh = await fs.open(file, 'w')
  try {
    await fh.write(header(0), 0, HEADER, 0)
    const fence: Buffer[] = []
    const out = Buffer.allocUnsafe(RECORD * INDEX_PAGE)
    let used = 0
    let count = 0
    let pos = HEADER
    let prev: Buffer | null = null
    for await (const r of sorted) {
      if (prev !== null && compareBlockRecords(prev, r) >= 0) {
        if (compareBlockRecords(prev, r) === 0) continue
        throw new Error('writeBlockIndex: records are not sorted')
      }
      if (count % INDEX_PAGE === 0) fence.push(Buffer.from(r.subarray(0, 32)))
      out.set(r.subarray(0, RECORD), used)
      prev = out.subarray(used, used + RECORD)
      used += RECORD
      count++
      if (used === out.length) {
        await fh.write(out, 0, used, pos)
        pos += used
        used = 0
        prev = Buffer.from(prev)
      }
    }
    if (used > 0) await fh.write(out, 0, used, pos)
    pos += used
    const f = Buffer.concat(fence)
    await fh.write(f, 0, f.length, pos)
    await fh.write(header(count), 0, HEADER, 0)
    await fh.datasync()
    return count
  } finally {
    await fh.close()
  }
}

/** Reads `length` bytes at `offset` of the index (a local file, a ranged HTTP or S3 read…); shorter only at its end. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>

/** A local file as ReadAt, with its size; throws the errno error (ENOENT…) as open does. */
export async function fileReadAt (file: string): Promise<{ readAt: ReadAt, size: number, close: () => Promise<void> }> {
  const fh = await fs.open(file, 'r')
  const size = (await fh.stat()).size
  const readAt: ReadAt = async (offset, length) => {
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return buf.subarray(0, done)
  }
  return { readAt, size, close: async () => { await fh.close() } }
}

/** Looks blocks up by digest: a binary search on the fence, then on one page read (and cached) from the index. */
export class BlockIndex {
  readonly count: number
  readonly version: number
  readonly #readAt: ReadAt
  readonly #where: string
  readonly #carCount: number
  readonly #fence: Buffer
  readonly #recordsAt: number
  readonly #pages = new Map<number, Promise<Buffer>>()
  /** Version 1: every record, read at open (version 1 had no fence). */
  readonly #all: Buffer | null

  private constructor (o: { readAt: ReadAt, where: string, carCount: number, count: number, version: number, fence: Buffer, recordsAt: number, all: Buffer | null }) {
    this.#readAt = o.readAt
    this.#where = o.where
    this.#carCount = o.carCount
    this.count = o.count
    this.version = o.version
    this.#fence = o.fence
    this.#recordsAt = o.recordsAt
    this.#all = o.all
  }

  static #bad (where: string, msg: string): never {
    throw new PackerError('FORMAT', `${where}: ${msg}; restore it from your copy, or remake it from the CARs with 'packer rebuild --force DIR'`, { subject: where })
  }

  /** Opens an index of `size` bytes: reads its header and fence (version 1: all of it). */
  static async open (readAt: ReadAt, size: number, where: string, carCount: number): Promise<BlockIndex> {
    const bad = (msg: string): never => BlockIndex.#bad(where, msg)
    const h = await readAt(0, Math.min(size, HEADER))
    if (h.length < HEADER_V1 || !h.subarray(0, 8).equals(MAGIC)) bad('not a packer block index')
    const version = h.readUInt32LE(8)
    if (version !== 1 && version !== 2) bad(`index version ${version} is not supported (upgrade packer)`)
    if (h.readUInt32LE(12) !== RECORD) bad('unexpected record size')
    const count = Number(h.readBigUInt64LE(16))
    if (version === 1) {
      if (size !== HEADER_V1 + count * RECORD) bad('it is truncated or has trailing bytes')
      const all = (await readAt(HEADER_V1, count * RECORD))
      const index = new BlockIndex({ readAt, where, carCount, count, version, fence: Buffer.alloc(0), recordsAt: HEADER_V1, all })
      for (let i = 0; i < count; i++) index.#checkRecord(all, i * RECORD, i > 0 ? all.subarray((i - 1) * RECORD) : null, i)
      return index
    }
    if (h.length < HEADER || h.readUInt32LE(24) !== INDEX_PAGE) bad('unexpected page size')
    const pages = Math.ceil(count / INDEX_PAGE)
    if (size !== HEADER + count * RECORD + pages * 32) bad('it is truncated or has trailing bytes')
    const fence = await readAt(HEADER + count * RECORD, pages * 32)
    if (fence.length !== pages * 32) bad('it is truncated')
    for (let p = 1; p < pages; p++) if (fence.compare(fence, (p - 1) * 32, p * 32, p * 32, (p + 1) * 32) < 0) bad('its fence is not sorted')
    return new BlockIndex({ readAt, where, carCount, count, version, fence, recordsAt: HEADER, all: null })
  }

  /** Opens a local index file. */
  static async read (file: string, carCount: number): Promise<BlockIndex & { close: () => Promise<void> }> {
    let f
    try {
      f = await fileReadAt(file)
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new PackerError('FORMAT', `${file} not found: the set's block index is missing (restore it, or remake it from the CARs with 'packer rebuild --force DIR')`, { subject: file })
      throw err
    }
    try {
      const index = await BlockIndex.open(f.readAt, f.size, file, carCount)
      return Object.assign(index, { close: f.close })
    } catch (err) {
      await f.close()
      throw err
    }
  }

  #checkRecord (buf: Buffer, at: number, prev: Buffer | null, i: number): void {
    if (buf.readUInt32LE(at + 32) >= this.#carCount) BlockIndex.#bad(this.#where, `record ${i} names a CAR the manifest does not list`)
    if (prev !== null && compareBlockRecords(prev, buf.subarray(at, at + RECORD)) >= 0) BlockIndex.#bad(this.#where, 'records are not sorted')
  }

  /** Page `p`'s records, read once and checked (sorted, first digest as the fence says, CARs in range). */
  async #page (p: number): Promise<Buffer> {
    let page = this.#pages.get(p)
    if (page !== undefined) {
      this.#pages.delete(p)
      this.#pages.set(p, page)
      return await page
    }
    page = (async () => {
      const n = Math.min(INDEX_PAGE, this.count - p * INDEX_PAGE)
      const buf = await this.#readAt(this.#recordsAt + p * INDEX_PAGE * RECORD, n * RECORD)
      if (buf.length !== n * RECORD) BlockIndex.#bad(this.#where, 'it is truncated')
      if (!buf.subarray(0, 32).equals(this.#fence.subarray(p * 32, p * 32 + 32))) BlockIndex.#bad(this.#where, 'a page does not match its fence')
      for (let i = 0; i < n; i++) this.#checkRecord(buf, i * RECORD, i > 0 ? buf.subarray((i - 1) * RECORD) : null, p * INDEX_PAGE + i)
      return buf
    })()
    this.#pages.set(p, page)
    page.catch(() => this.#pages.delete(p))
    if (this.#pages.size > CACHED_PAGES) this.#pages.delete(this.#pages.keys().next().value!)
    return await page
  }

  /** Every location of a block (one per CAR holding it), in CAR order; empty when the set has no such block. */
  async locations (digest: Uint8Array): Promise<BlockLocation[]> {
    const d = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength)
    const out: BlockLocation[] = []
    if (this.#all !== null) {
      collect(this.#all, this.count, d, out)
      return out
    }
    // The last page whose first digest is < d may end with d's first records; then every page starting with d.
    const pages = this.#fence.length / 32
    let lo = 0
    let hi = pages - 1
    let start = 0
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (compareDigestAt(d, this.#fence, mid * 32) > 0) { start = mid; lo = mid + 1 } else hi = mid - 1
    }
    for (let p = start; p < pages; p++) {
      if (p > start && compareDigestAt(d, this.#fence, p * 32) !== 0) break
      const page = await this.#page(p)
      collect(page, page.length / RECORD, d, out)
    }
    return out
  }

  /** The first location of a block, or undefined. */
  async get (digest: Uint8Array): Promise<BlockLocation | undefined> {
    return (await this.locations(digest))[0]
  }

  /** Every record in index order, a page at a time. */
  async * records (): AsyncGenerator<BlockLocation & { digest: Buffer }> {
    if (this.#all !== null) {
      for (let i = 0; i < this.count; i++) yield decodeBlockRecord(this.#all, i * RECORD)
      return
    }
    for (let p = 0; p * INDEX_PAGE < this.count; p++) {
      const page = await this.#page(p)
      for (let at = 0; at < page.length; at += RECORD) yield decodeBlockRecord(page, at)
    }
  }
}

/**
 * `d` against the 32-byte digest at `at` in `buf` (< 0: `d` sorts first). A loop: digests nearly always differ in
 * their first bytes, and Buffer#compare with offsets costs a microsecond a call in the binary searches of every read.
 */
function compareDigestAt (d: Uint8Array, buf: Uint8Array, at: number): number {
  for (let i = 0; i < 32; i++) {
    const x = d[i]! - buf[at + i]!
    if (x !== 0) return x
  }
  return 0
}

/** The records of `d` in a sorted run of `n` records (a binary search for the first, then the ones after it). */
function collect (buf: Buffer, n: number, d: Buffer, out: BlockLocation[]): void {
  let lo = 0
  let hi = n
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareDigestAt(d, buf, mid * RECORD) > 0) lo = mid + 1
    else hi = mid
  }
  for (let i = lo; i < n && compareDigestAt(d, buf, i * RECORD) === 0; i++) {
    const r = decodeBlockRecord(buf, i * RECORD)
    out.push({ car: r.car, offset: r.offset, length: r.length })
  }
}
