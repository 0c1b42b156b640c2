/** Native age X25519 recipients (`age1…`) and identities (`AGE-SECRET-KEY-1…`), on node:crypto. */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { bech32Decode, bech32Encode } from './bech32.js'
import type { Identity, Recipient, Stanza } from './stanza.js'
import { aeadOpenZeroNonce, aeadSealZeroNonce, b64decodeStrict, b64encode, corrupt, cryptoError, hkdf, isAllZero } from './util.js'

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex')
const LABEL = 'age-encryption.org/v1/X25519'
export const RECIPIENT_HRP = 'age'
export const IDENTITY_HRP = 'age-secret-key-'

export function x25519PrivateKey (scalar: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, scalar]), format: 'der', type: 'pkcs8' })
}

/** A public key object for a raw point. Through JWK: OpenSSL 3's DER decoder took ~70 µs a key here, JWK ~7 µs. */
export function x25519PublicKey (point: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(point.buffer, point.byteOffset, point.byteLength).toString('base64url') }, format: 'jwk' })
}

/** The raw 32-byte public key (or `d`, the private scalar, with `which = 'd'`) of an X25519/Ed25519 key object. */
export function rawOkp (k: KeyObject, which: 'x' | 'd' = 'x'): Buffer {
  const jwk = k.export({ format: 'jwk' })
  const v = jwk[which]
  if (typeof v !== 'string') throw cryptoError('cannot export a raw key')
  return Buffer.from(v, 'base64url')
}

/** X25519(scalar, point); null when the result is the all-zero value (a low-order point), which age forbids. */
export function x25519 (privateKey: KeyObject, point: Uint8Array | KeyObject): Buffer | null {
  let out: Buffer
  try {
    out = diffieHellman({ privateKey, publicKey: point instanceof Uint8Array ? x25519PublicKey(point) : point })
  } catch {
    return null
  }
  return isAllZero(out) ? null : out
}

/** Generates an ephemeral X25519 key pair: the key object and its raw public key. */
export function ephemeral (): { privateKey: KeyObject; publicRaw: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  return { privateKey, publicRaw: rawOkp(publicKey) }
}

export class X25519Recipient implements Recipient {
  readonly kind = 'X25519'
  readonly publicKey: Buffer
  #key: KeyObject | null = null // made once: a pack wraps a file key per file

  constructor (publicKey: Uint8Array) {
    if (publicKey.length !== 32) throw cryptoError('an X25519 public key must be 32 bytes')
    this.publicKey = Buffer.from(publicKey)
  }

  wrapFileKey (fileKey: Buffer): Stanza[] {
    const eph = ephemeral()
    this.#key ??= x25519PublicKey(this.publicKey)
    const shared = x25519(eph.privateKey, this.#key)
    if (shared === null) throw cryptoError(`invalid X25519 recipient ${this.toString()}`)
    const wrapKey = hkdf(shared, Buffer.concat([eph.publicRaw, this.publicKey]), LABEL)
    return [{ type: 'X25519', args: [b64encode(eph.publicRaw)], body: aeadSealZeroNonce(wrapKey, fileKey) }]
  }

  toString (): string {
    return bech32Encode(RECIPIENT_HRP, this.publicKey)
  }
}

export class X25519Identity implements Identity {
  readonly kind = 'X25519'
  readonly source?: string
  private readonly key: KeyObject
  readonly publicKey: Buffer
  private readonly secret: Buffer

  constructor (secret: Uint8Array, source?: string) {
    if (secret.length !== 32) throw cryptoError('an X25519 secret key must be 32 bytes', source)
    this.secret = Buffer.from(secret)
    this.key = x25519PrivateKey(secret)
    this.publicKey = rawOkp(createPublicKey(this.key))
    if (source !== undefined) this.source = source
  }

  unwrapFileKey (stanzas: Stanza[]): Buffer | null {
    for (const s of stanzas) {
      if (s.type !== 'X25519') continue
      if (s.args.length !== 1) throw corrupt('malformed X25519 stanza: it must have exactly one argument')
      const share = b64decodeStrict(s.args[0]!)
      if (share === null || share.length !== 32) throw corrupt('malformed X25519 stanza: the ephemeral share is not 32 bytes of canonical base64')
      if (s.body.length !== 32) throw corrupt('malformed X25519 stanza: the wrapped file key is not 32 bytes')
      const shared = x25519(this.key, share)
      if (shared === null) throw corrupt('malformed X25519 stanza: the ephemeral share is a low-order point')
      const wrapKey = hkdf(shared, Buffer.concat([share, this.publicKey]), LABEL)
      const fileKey = aeadOpenZeroNonce(wrapKey, s.body)
      if (fileKey !== null) return fileKey
    }
    return null
  }

  recipient (): X25519Recipient {
    return new X25519Recipient(this.publicKey)
  }

  recipientString (): string {
    return this.recipient().toString()
  }

  toString (): string {
    return bech32Encode(IDENTITY_HRP, this.secret, true)
  }
}

/** Parses an `age1…` recipient; throws CRYPTO when it is not a valid X25519 recipient. */
export function parseX25519Recipient (s: string): X25519Recipient {
  const d = bech32Decode(s)
  if (d === null || d.hrp !== RECIPIENT_HRP || d.upper || d.data.length !== 32) {
    throw cryptoError(`invalid age recipient "${s.length > 80 ? s.slice(0, 80) + '…' : s}" (expected age1… as age-keygen prints it)`)
  }
  return new X25519Recipient(d.data)
}

/** Parses an `AGE-SECRET-KEY-1…` identity. */
export function x25519IdentityFromString (s: string, source?: string): X25519Identity {
  const d = bech32Decode(s.trim())
  if (d === null || d.hrp !== IDENTITY_HRP || !d.upper || d.data.length !== 32) {
    throw cryptoError(`${source !== undefined ? source + ': ' : ''}invalid AGE-SECRET-KEY-1… identity (damaged or truncated key?)`, source)
  }
  return new X25519Identity(d.data, source)
}

/** A new X25519 key pair, as age-keygen makes it: the `AGE-SECRET-KEY-1…` identity and its `age1…` recipient. */
export function generateX25519Identity (): { identity: string; recipient: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519')
  return {
    identity: bech32Encode(IDENTITY_HRP, rawOkp(privateKey, 'd'), true),
    recipient: bech32Encode(RECIPIENT_HRP, rawOkp(publicKey)),
  }
}
