/**
 * The age v1 payload (STREAM): a 16-byte nonce, then 64 KiB plaintext chunks sealed with ChaCha20-Poly1305 under
 * HKDF(file key, nonce, "payload"), chunk nonce = 11-byte big-endian counter ‖ last-chunk flag.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { encodeHeader, headerLengthOf, newFileKey, parseHeader, unwrapFileKey, verifyHeaderMac } from './header.js'
import type { Identity, Recipient } from './stanza.js'
import { corrupt, formatError, hkdf } from './util.js'

export const AGE_CHUNK_SIZE = 65536
const TAG = 16
const ENC_CHUNK = AGE_CHUNK_SIZE + TAG
const NONCE_SIZE = 16
/** A larger header is refused while streaming (thousands of recipients would still fit). */
const MAX_HEADER = 16 * 1024 * 1024

export function payloadKey (fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return hkdf(fileKey, nonce, 'payload')
}

/** The start of a new age file: a fresh file key, its header to the recipients, a fresh nonce and the payload key. */
export interface AgeFileStart { fileKey: Buffer, header: Buffer, nonce: Buffer, payloadKey: Buffer }

export function newAgeFile (recipients: Recipient[]): AgeFileStart {
  const fileKey = newFileKey()
  const header = encodeHeader(fileKey, recipients)
  const nonce = randomBytes(NONCE_SIZE)
  return { fileKey, header, nonce, payloadKey: payloadKey(fileKey, nonce) }
}

/** The ChaCha20-Poly1305 nonce of payload chunk `index`: 11-byte big-endian counter, then the last-chunk flag. */
export function chunkNonce (index: number, last: boolean): Buffer {
  const n = Buffer.alloc(12)
  // 11-byte big-endian counter: indexes below 2^53 fit in the low 7 bytes.
  n.writeUIntBE(Math.floor(index / 2 ** 32), 3, 4)
  n.writeUInt32BE(index >>> 0, 7)
  n[11] = last ? 1 : 0
  return n
}

/** Number of payload chunks for a plaintext of `size` bytes (an empty plaintext still has one, empty, chunk). */
export function chunkCount (size: number): number {
  return size === 0 ? 1 : Math.ceil(size / AGE_CHUNK_SIZE)
}

/** Size of the age file: header, nonce, plaintext and one 16-byte tag per chunk. */
export function ciphertextSize (plaintextSize: number, headerLength: number): number {
  if (!Number.isSafeInteger(plaintextSize) || plaintextSize < 0) throw new RangeError(`invalid plaintext size ${plaintextSize}`)
  return headerLength + NONCE_SIZE + plaintextSize + chunkCount(plaintextSize) * TAG
}

function ownCopy (b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length)
  out.set(b)
  return out
}

/** Seals one chunk given as parts (held by reference, not copied) into a fresh buffer of parts' length + 16. */
function sealChunk (key: Buffer, index: number, last: boolean, parts: Uint8Array[], length: number): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, chunkNonce(index, last), { authTagLength: TAG })
  // Own memory (not the shared small-buffer pool), so consumers may keep or transfer it.
  const out = Buffer.allocUnsafeSlow(length + TAG)
  let off = 0
  for (const p of parts) {
    const ct = c.update(p)
    off += ct.copy(out, off)
  }
  off += c.final().copy(out, off)
  c.getAuthTag().copy(out, off)
  return out
}

/** Opens one sealed chunk; null when authentication fails. Plaintext is never released before the tag checks. */
export function openChunk (key: Uint8Array, index: number, last: boolean, sealed: Uint8Array): Buffer | null {
  const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(index, last), { authTagLength: TAG })
  d.setAuthTag(sealed.subarray(sealed.length - TAG))
  const pt = d.update(sealed.subarray(0, sealed.length - TAG))
  try {
    d.final()
  } catch {
    return null
  }
  return pt
}

/**
 * Opens a sealed chunk given as pieces (no concatenation of the ciphertext); returns the plaintext pieces, or null
 * when authentication fails. Nothing is returned before the tag checks.
 */
function openChunkParts (key: Buffer, index: number, last: boolean, parts: Buffer[], length: number): Buffer[] | null {
  if (parts.length === 1) {
    const pt = openChunk(key, index, last, parts[0]!)
    return pt === null ? null : [pt]
  }
  const tag = Buffer.alloc(TAG)
  let need = TAG
  for (let i = parts.length - 1; i >= 0 && need > 0; i--) {
    const p = parts[i]!
    const n = Math.min(need, p.length)
    p.copy(tag, need - n, p.length - n)
    need -= n
  }
  const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(index, last), { authTagLength: TAG })
  d.setAuthTag(tag)
  const out: Buffer[] = []
  let remaining = length - TAG
  for (const p of parts) {
    if (remaining <= 0) break
    const n = Math.min(remaining, p.length)
    out.push(d.update(n === p.length ? p : p.subarray(0, n)))
    remaining -= n
  }
  try {
    d.final()
  } catch {
    return null
  }
  return out
}

/**
 * A FIFO of byte pieces, holding the caller's buffers by reference (like every Node stream, callers must not modify a
 * buffer after yielding it).
 */
class ByteQueue {
  private parts: Buffer[] = []
  length = 0

  push (p: Uint8Array): void {
    if (p.length === 0) return
    this.parts.push(Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength))
    this.length += p.length
  }

  /** Removes the first n bytes, as pieces of the original buffers (no copy). */
  shiftParts (n: number): Buffer[] {
    const out: Buffer[] = []
    while (n > 0) {
      const p = this.parts[0]!
      if (p.length <= n) {
        out.push(p)
        this.parts.shift()
        n -= p.length
        this.length -= p.length
      } else {
        out.push(p.subarray(0, n))
        this.parts[0] = p.subarray(n)
        this.length -= n
        n = 0
      }
    }
    return out
  }

  /** Removes the first n bytes as one buffer (a copy only when they span several pieces). */
  shift (n: number): Buffer {
    const parts = this.shiftParts(n)
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n)
  }

  /** All queued bytes as one buffer (kept in the queue). */
  peekAll (): Buffer {
    if (this.parts.length > 1) this.parts = [Buffer.concat(this.parts, this.length)]
    return this.parts[0] ?? Buffer.alloc(0)
  }
}

/**
 * Encrypts a plaintext stream: yields `header`, the 16-byte nonce, then each 65,552-byte sealed chunk (the last may be
 * shorter). One chunk of lookahead decides the last-chunk flag; empty input gives one empty final chunk. Every
 * yielded buffer is fresh (never reused); input buffers are held by reference for at most ~2 chunks.
 */
export async function * encryptStream (plain: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, fileKey: Buffer, header: Buffer): AsyncGenerator<Uint8Array> {
  verifyHeaderMac(header, fileKey)
  const nonce = randomBytes(NONCE_SIZE)
  const key = payloadKey(fileKey, nonce)
  yield ownCopy(header)
  yield ownCopy(nonce)
  const q = new ByteQueue()
  let index = 0
  for await (const piece of plain) {
    q.push(piece)
    while (q.length > AGE_CHUNK_SIZE) {
      yield sealChunk(key, index++, false, q.shiftParts(AGE_CHUNK_SIZE), AGE_CHUNK_SIZE)
    }
  }
  const rest = q.length
  yield sealChunk(key, index, true, q.shiftParts(rest), rest)
}

/**
 * Decrypts a whole age file. `key` is either the file key or identities to find it with. Yields plaintext only after
 * each chunk authenticates; throws CORRUPT naming the chunk on a bad tag, truncation, trailing data or an empty
 * final chunk after a full one, and FORMAT on a malformed header or missing nonce.
 */
export async function * decryptStream (cipher: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, key: { fileKey: Buffer } | { identities: Identity[] }): AsyncGenerator<Uint8Array> {
  const q = new ByteQueue()
  const it: AsyncIterator<Uint8Array> | Iterator<Uint8Array> = Symbol.asyncIterator in cipher ? cipher[Symbol.asyncIterator]() : cipher[Symbol.iterator]()
  let eof = false
  const pull = async (): Promise<boolean> => {
    if (eof) return false
    const r = await it.next()
    if (r.done === true) {
      eof = true
      return false
    }
    q.push(r.value)
    return true
  }
  try {
    let headerLength: number | null = null
    while ((headerLength = headerLengthOf(q.peekAll())) === null) {
      if (q.length > MAX_HEADER) throw formatError(`age header larger than ${MAX_HEADER} bytes; refusing it`)
      if (!(await pull())) {
        parseHeader(q.peekAll()) // throws the precise reason
        throw formatError('malformed age header: truncated')
      }
    }
    const header = q.shift(headerLength)
    const fileKey = 'fileKey' in key ? key.fileKey : unwrapFileKey(header, key.identities)
    if ('fileKey' in key) verifyHeaderMac(header, fileKey)
    while (q.length < NONCE_SIZE && await pull());
    if (q.length < NONCE_SIZE) throw formatError('truncated age file: the payload nonce is missing')
    const pkey = payloadKey(fileKey, q.shift(NONCE_SIZE))
    let index = 0
    for (;;) {
      while (q.length <= ENC_CHUNK && await pull());
      if (q.length > ENC_CHUNK) {
        const sealed = q.shiftParts(ENC_CHUNK)
        const pt = openChunkParts(pkey, index, false, sealed, ENC_CHUNK)
        if (pt === null) {
          // An authentic final chunk followed by more data: release it (it is authentic), then refuse the rest.
          const finalPt = openChunkParts(pkey, index, true, sealed, ENC_CHUNK)
          if (finalPt !== null) {
            yield * finalPt
            throw corrupt(`age payload has data after its final chunk (chunk ${index}): trailing garbage`)
          }
          throw corrupt(`age payload chunk ${index} failed authentication: the file is damaged or was modified`)
        }
        index++
        yield * pt
        continue
      }
      // End of input: what is queued is the final chunk.
      const rest = q.length
      if (rest === 0) {
        throw corrupt(index === 0 ? 'age payload has no chunks (truncated file)' : `age payload is truncated after chunk ${index - 1}`)
      }
      if (rest < TAG) throw corrupt(`age payload chunk ${index} is truncated (${rest} bytes)`)
      const sealed = q.shift(rest)
      const pt = openChunk(pkey, index, true, sealed)
      if (pt === null) {
        // An authentic non-final full chunk, then EOF: release it, then report the truncation.
        const midPt = rest === ENC_CHUNK ? openChunk(pkey, index, false, sealed) : null
        if (midPt !== null) {
          yield midPt
          throw corrupt(`age payload is truncated after chunk ${index} (the final chunk is missing)`)
        }
        throw corrupt(`age payload chunk ${index} (the last) failed authentication: the file is damaged, truncated or was modified`)
      }
      if (pt.length === 0 && index > 0) throw corrupt(`age payload ends with an empty chunk ${index} (not allowed after a full chunk)`)
      yield pt
      return
    }
  } finally {
    if (!eof && typeof it.return === 'function') await it.return(undefined)
  }
}

export interface SeekableAgeReaderOptions {
  readCiphertext: (offset: number, length: number) => Promise<Buffer>
  fileKey: Buffer
  headerLength: number
  plaintextSize: number
}

/**
 * Random access into an age file whose header length and plaintext size are known: decrypts only the chunks a
 * range needs, authenticating each (the last chunk with its last-chunk flag, so truncation is caught). Keeps the two
 * most recently decrypted chunks, so small sequential reads (4–128 KiB from FUSE) decrypt each chunk once.
 */
export class SeekableAgeReader {
  private readonly opts: SeekableAgeReaderOptions
  private readonly chunks: number
  private keyPromise: Promise<Buffer> | null = null
  private cache: Array<{ index: number; data: Buffer }> = []

  constructor (opts: SeekableAgeReaderOptions) {
    if (!Number.isSafeInteger(opts.plaintextSize) || opts.plaintextSize < 0) throw new RangeError(`invalid plaintext size ${opts.plaintextSize}`)
    if (!Number.isSafeInteger(opts.headerLength) || opts.headerLength <= 0) throw new RangeError(`invalid header length ${opts.headerLength}`)
    this.opts = opts
    this.chunks = chunkCount(opts.plaintextSize)
  }

  get size (): number { return this.opts.plaintextSize }

  private async readExact (offset: number, length: number, what: string): Promise<Buffer> {
    const b = await this.opts.readCiphertext(offset, length)
    if (b.length < length) throw corrupt(`age file is truncated: ${what} at offset ${offset} is ${b.length} of ${length} bytes`)
    return b.length === length ? b : b.subarray(0, length)
  }

  private payloadKey (): Promise<Buffer> {
    if (this.keyPromise === null) {
      this.keyPromise = this.readExact(this.opts.headerLength, NONCE_SIZE, 'the payload nonce')
        .then(nonce => payloadKey(this.opts.fileKey, nonce))
      this.keyPromise.catch(() => { this.keyPromise = null })
    }
    return this.keyPromise
  }

  private chunkPlainSize (i: number): number {
    return i < this.chunks - 1 ? AGE_CHUNK_SIZE : this.opts.plaintextSize - (this.chunks - 1) * AGE_CHUNK_SIZE
  }

  /** Plaintext bytes [start, end), end clamped to the plaintext size. */
  async read (start: number, end: number): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0) throw new RangeError(`invalid range [${start}, ${end})`)
    end = Math.min(end, this.opts.plaintextSize)
    if (start >= end) return Buffer.alloc(0)
    const first = Math.floor(start / AGE_CHUNK_SIZE)
    const lastChunk = Math.floor((end - 1) / AGE_CHUNK_SIZE)
    const got = new Map<number, Buffer>()
    for (let i = first; i <= lastChunk; i++) {
      const c = this.cached(i)
      if (c !== undefined) got.set(i, c)
    }
    if (got.size < lastChunk - first + 1) {
      // Missing chunks, read in one contiguous request.
      let missFrom = first
      while (got.has(missFrom)) missFrom++
      let missTo = lastChunk
      while (got.has(missTo)) missTo--
      const key = await this.payloadKey()
      let len = 0
      for (let i = missFrom; i <= missTo; i++) len += this.chunkPlainSize(i) + TAG
      const offset = this.opts.headerLength + NONCE_SIZE + missFrom * ENC_CHUNK
      const ct = await this.readExact(offset, len, missFrom === missTo ? `chunk ${missFrom}` : `chunks ${missFrom}-${missTo}`)
      let off = 0
      for (let i = missFrom; i <= missTo; i++) {
        const n = this.chunkPlainSize(i) + TAG
        const pt = openChunk(key, i, i === this.chunks - 1, ct.subarray(off, off + n))
        off += n
        if (pt === null) throw corrupt(`age payload chunk ${i} failed authentication: the file is damaged, truncated or was modified`)
        got.set(i, pt)
      }
      for (let i = Math.max(missFrom, missTo - 1); i <= missTo; i++) this.remember(i, got.get(i)!)
    }
    const plain: Buffer[] = []
    for (let i = first; i <= lastChunk; i++) {
      const data = got.get(i)!
      const from = i === first ? start - i * AGE_CHUNK_SIZE : 0
      const to = i === lastChunk ? end - i * AGE_CHUNK_SIZE : data.length
      plain.push(data.subarray(from, to))
    }
    // Always a copy, so callers never hold (or modify) the cache.
    return Buffer.concat(plain)
  }

  private cached (i: number): Buffer | undefined {
    return this.cache.find(c => c.index === i)?.data
  }

  private remember (index: number, data: Buffer): void {
    this.cache = this.cache.filter(c => c.index !== index)
    this.cache.push({ index, data })
    if (this.cache.length > 2) this.cache.shift()
  }
}

