import fs from 'node:fs/promises'
import { PackerError, isErrno } from '../errors.js'

/**
 * The block index: where every block of a set lives, so that opening a set never scans CAR data.
 * Binary, little-endian (FORMAT.md, "Block index"):
 *   header (24 bytes): magic "PKRBIDX1" | u32 version = 1 | u32 record size = 48 | u64 record count
 *   records sorted by digest: digest[32] (SHA-256 of the block) | u32 car | u32 length | u64 offset of the block data
 * All blocks packer writes are SHA-256 addressed, so the digest alone identifies a block's bytes.
 */
export const INDEX_FILE = 'blocks.idx'
const MAGIC = Buffer.from('PKRBIDX1', 'latin1')
const HEADER = 24
const RECORD = 48
export const BLOCK_RECORD_SIZE = RECORD

export interface BlockLocation { car: number, offset: number, length: number }

export class BlockIndexBuilder {
  #records: Buffer[] = []
  #current = Buffer.alloc(RECORD * 4096)
  #used = 0
  #count = 0

  get count (): number { return this.#count }

  /** Records `from` … count-1, raw (48 bytes each), in the order they were added. */
  recordsFrom (from: number): Buffer {
    const all = Buffer.concat([...this.#records, this.#current.subarray(0, this.#used)])
    return Buffer.from(all.subarray(from * RECORD, this.#count * RECORD))
  }

  /** Adds raw records (as recordsFrom returns them), e.g. from a pack journal. */
  addRecords (records: Buffer): void {
    for (let at = 0; at < records.length; at += RECORD) {
      const r = records.subarray(at, at + RECORD)
      this.add(r.subarray(0, 32), { car: r.readUInt32LE(32), length: r.readUInt32LE(36), offset: Number(r.readBigUInt64LE(40)) })
    }
  }

  add (digest: Uint8Array, loc: BlockLocation): void {
    if (this.#used === this.#current.length) {
      this.#records.push(this.#current)
      this.#current = Buffer.alloc(RECORD * 4096)
      this.#used = 0
    }
    const r = this.#current.subarray(this.#used, this.#used + RECORD)
    r.set(digest.subarray(0, 32), 0)
    r.writeUInt32LE(loc.car, 32)
    r.writeUInt32LE(loc.length, 36)
    r.writeBigUInt64LE(BigInt(loc.offset), 40)
    this.#used += RECORD
    this.#count++
  }

  /** The sorted index file's bytes. */
  encode (): Buffer {
    const all = Buffer.concat([...this.#records, this.#current.subarray(0, this.#used)])
    const order = Array.from({ length: this.#count }, (_, i) => i)
    order.sort((a, b) => all.compare(all, b * RECORD, b * RECORD + 32, a * RECORD, a * RECORD + 32))
    const out = Buffer.alloc(HEADER + this.#count * RECORD)
    MAGIC.copy(out, 0)
    out.writeUInt32LE(1, 8)
    out.writeUInt32LE(RECORD, 12)
    out.writeBigUInt64LE(BigInt(this.#count), 16)
    order.forEach((src, i) => all.copy(out, HEADER + i * RECORD, src * RECORD, src * RECORD + RECORD))
    return out
  }
}

/** Looks blocks up by digest with a binary search over the index held in memory (48 bytes a block). */
export class BlockIndex {
  readonly #buf: Buffer
  readonly count: number

  private constructor (buf: Buffer, count: number) { this.#buf = buf; this.count = count }

  static decode (buf: Buffer, where: string, carCount: number): BlockIndex {
    const bad = (msg: string): never => { throw new PackerError('FORMAT', `${where}: ${msg}; restore it from your copy, or remake it from the CARs with 'packer rebuild --force DIR'`, { subject: where }) }
    if (buf.length < HEADER || !buf.subarray(0, 8).equals(MAGIC)) bad('not a packer block index')
    if (buf.readUInt32LE(8) !== 1) bad(`index version ${buf.readUInt32LE(8)} is not supported (upgrade packer)`)
    if (buf.readUInt32LE(12) !== RECORD) bad('unexpected record size')
    const count = Number(buf.readBigUInt64LE(16))
    if (buf.length !== HEADER + count * RECORD) bad('it is truncated or has trailing bytes')
    for (let i = 0; i < count; i++) {
      const at = HEADER + i * RECORD
      if (buf.readUInt32LE(at + 32) >= carCount) bad(`record ${i} names a CAR the manifest does not list`)
      if (i > 0 && buf.compare(buf, at - RECORD, at - RECORD + 32, at, at + 32) <= 0) bad('records are not sorted')
    }
    return new BlockIndex(buf, count)
  }

  static async read (file: string, carCount: number): Promise<BlockIndex> {
    let buf: Buffer
    try {
      buf = await fs.readFile(file)
    } catch (err) {
      if (isErrno(err, 'ENOENT')) throw new PackerError('FORMAT', `${file} not found: the set's block index is missing (restore it, or remake it from the CARs with 'packer rebuild --force DIR')`, { subject: file })
      throw err
    }
    return BlockIndex.decode(buf, file, carCount)
  }

  get (digest: Uint8Array): BlockLocation | undefined {
    const d = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength)
    let lo = 0
    let hi = this.count - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const at = HEADER + mid * RECORD
      const c = this.#buf.compare(d, 0, 32, at, at + 32)
      if (c === 0) {
        return { car: this.#buf.readUInt32LE(at + 32), length: this.#buf.readUInt32LE(at + 36), offset: Number(this.#buf.readBigUInt64LE(at + 40)) }
      }
      if (c < 0) lo = mid + 1
      else hi = mid - 1
    }
    return undefined
  }

  /** Every record of one CAR, in no particular order. */
  * entriesOf (car: number): Generator<BlockLocation & { digest: Buffer }> {
    for (let i = 0; i < this.count; i++) {
      const at = HEADER + i * RECORD
      if (this.#buf.readUInt32LE(at + 32) === car) {
        yield { digest: this.#buf.subarray(at, at + 32), car, length: this.#buf.readUInt32LE(at + 36), offset: Number(this.#buf.readBigUInt64LE(at + 40)) }
      }
    }
  }
}
