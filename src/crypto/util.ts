/** Small primitives shared by the age modules: canonical unpadded base64, HKDF, ChaCha20-Poly1305 with a zero nonce. */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto'
import { PackerError } from '../errors.js'

const B64_RE = /^[A-Za-z0-9+/]*$/

/** Standard base64 without padding (age's encoding). */
export function b64encode (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '')
}

/**
 * Strict decoding of age's unpadded base64: only the standard alphabet, no padding, no whitespace, a length that
 * some byte string encodes to, and zero unused trailing bits (the encoding must round-trip). Returns null otherwise.
 */
export function b64decodeStrict (s: string): Buffer | null {
  if (!B64_RE.test(s) || s.length % 4 === 1) return null
  const out = Buffer.from(s, 'base64')
  if (b64encode(out) !== s) return null
  return out
}

const ZERO_SALT = Buffer.alloc(32) // RFC 5869: an absent salt is HashLen zero bytes
const ONE = Buffer.of(1)

export function hkdf (ikm: Uint8Array, salt: Uint8Array, info: string, length = 32): Buffer {
  if (length > 32) return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'latin1'), length))
  // RFC 5869 with one block of output, on createHmac: half the cost of hkdfSync (a pack derives three keys a file).
  const prk = createHmac('sha256', salt.length > 0 ? salt : ZERO_SALT).update(ikm).digest()
  return createHmac('sha256', prk).update(info, 'latin1').update(ONE).digest().subarray(0, length)
}

const ZERO_NONCE = Buffer.alloc(12)

/** ChaCha20-Poly1305 with a zero nonce, as used to wrap file keys in recipient stanzas. */
export function aeadSealZeroNonce (key: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 })
  const ct = c.update(plaintext)
  c.final()
  return Buffer.concat([ct, c.getAuthTag()])
}

/** Opens a zero-nonce ChaCha20-Poly1305 box; null when authentication fails. */
export function aeadOpenZeroNonce (key: Uint8Array, box: Uint8Array): Buffer | null {
  if (box.length < 16) return null
  const d = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 })
  d.setAuthTag(box.subarray(box.length - 16))
  const pt = d.update(box.subarray(0, box.length - 16))
  try {
    d.final()
  } catch {
    return null
  }
  return pt
}

export function isAllZero (b: Uint8Array): boolean {
  let acc = 0
  for (const x of b) acc |= x
  return acc === 0
}

export function corrupt (message: string, cause?: unknown): PackerError {
  return new PackerError('CORRUPT', message, { cause })
}

export function cryptoError (message: string, subject?: string, cause?: unknown): PackerError {
  return new PackerError('CRYPTO', message, { subject, cause })
}

export function formatError (message: string, cause?: unknown): PackerError {
  return new PackerError('FORMAT', message, { cause })
}
