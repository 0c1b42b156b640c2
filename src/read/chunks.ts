/**
 * Plaintext and stored positions of an age v1 payload, and opening one sealed chunk: what the reader needs to map a
 * plaintext range to age chunks and to decrypt them on any thread. (The age format itself lives in src/crypto; this
 * is the same STREAM construction, split so worker threads can open chunks out of order.)
 */
import { openChunk, payloadKey } from '../crypto/payload.js'
import { nativeAddon } from '../native-addon.js'

export { payloadKey }

export const CHUNK = 65536
export const TAG = 16
export const SEALED = CHUNK + TAG
export const NONCE = 16

/** Geometry of one encrypted file: header length H, plaintext size; the payload starts at H + 16. */
export class AgeGeometry {
  readonly payloadStart: number
  readonly chunks: number
  readonly size: number

  constructor (headerLength: number, plaintextSize: number) {
    this.payloadStart = headerLength + NONCE
    this.size = plaintextSize
    this.chunks = plaintextSize === 0 ? 1 : Math.ceil(plaintextSize / CHUNK)
  }

  plainLength (c: number): number { return c < this.chunks - 1 ? CHUNK : this.size - (this.chunks - 1) * CHUNK }
  /** Stored offset where sealed chunk c starts. */
  start (c: number): number { return this.payloadStart + c * SEALED }
  /** Stored offset just past sealed chunk c. */
  end (c: number): number { return this.start(c) + this.plainLength(c) + TAG }

  /**
   * The chunks wholly inside stored bytes [ls, le): first index and count, and where the first would start relative
   * to ls (clamped to [0, le - ls]), so that [0, firstAt) and [firstAt + sealedLength, le - ls) are the bytes of
   * chunks that cross the range's edges (or the header).
   */
  inside (ls: number, le: number): { first: number, count: number, firstAt: number, sealedLength: number } {
    let first = Math.max(0, Math.ceil((ls - this.payloadStart) / SEALED))
    if (first > this.chunks) first = this.chunks
    let count = 0
    let sealedLength = 0
    while (first + count < this.chunks && this.end(first + count) <= le) {
      sealedLength += this.plainLength(first + count) + TAG
      count++
    }
    const firstAt = first >= this.chunks ? le - ls : Math.min(Math.max(this.start(first) - ls, 0), le - ls)
    return { first, count, firstAt, sealedLength }
  }
}

/**
 * Opens `count` consecutive sealed chunks of one file, the first being chunk `first`, from `sealed` (chunk `lastIndex`
 * is the file's final one, `lastPlain` bytes long) into `out` from `at` on, 64 KiB apart: how many opened before the
 * first that failed authentication (`count` when all did; what is in `out` past them is of no use). One native call
 * when the addon is there (either buffer may be shared memory); otherwise node:crypto, one decipher per chunk.
 */
export function openChunksInto (key: Uint8Array, first: number, count: number, lastIndex: number, lastPlain: number, sealed: Uint8Array, out: Buffer, at: number): number {
  const addon = nativeAddon()
  if (addon !== null) return addon.ageOpenChunks(key, first, count, lastIndex, lastPlain, sealed, out.subarray(at))
  for (let i = 0; i < count; i++) {
    const last = first + i === lastIndex
    const from = i * SEALED
    const pt = openChunk(key, first + i, last, sealed.subarray(from, from + (last ? lastPlain : CHUNK) + TAG))
    if (pt === null) return i
    pt.copy(out, at + i * CHUNK)
  }
  return count
}
