/**
 * SSH keys as age recipients and identities: `ssh-rsa` (RSA-OAEP-SHA256) and `ssh-ed25519` (the Ed25519 key
 * converted to X25519, with a tweak), SSH wire format, and unencrypted `openssh-key-v1` private keys.
 */
import { createHash, createPrivateKey, createPublicKey, privateDecrypt, publicEncrypt, constants, type KeyObject } from 'node:crypto'
import type { Identity, Recipient, Stanza } from './stanza.js'
import { aeadOpenZeroNonce, aeadSealZeroNonce, b64decodeStrict, b64encode, corrupt, cryptoError, hkdf } from './util.js'
import { ephemeral, rawOkp, x25519, x25519PrivateKey } from './x25519.js'

const RSA_LABEL = Buffer.from('age-encryption.org/v1/ssh-rsa')
const ED_LABEL = 'age-encryption.org/v1/ssh-ed25519'
export const MIN_RSA_BITS = 2048

// ---- SSH wire format -------------------------------------------------------------------------------------------

export class SshReader {
  private pos = 0
  constructor (private readonly buf: Buffer) {}
  get done (): boolean { return this.pos === this.buf.length }
  get remaining (): Buffer { return this.buf.subarray(this.pos) }
  uint32 (): number {
    if (this.pos + 4 > this.buf.length) throw new Error('truncated')
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  bytes (): Buffer {
    const n = this.uint32()
    if (this.pos + n > this.buf.length) throw new Error('truncated')
    const v = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  string (): string { return this.bytes().toString('latin1') }
}

function sshString (b: Uint8Array | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b, 'latin1') : Buffer.from(b)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
}

/** An SSH mpint from an unsigned big-endian magnitude: minimal, with a 0x00 prefix when the top bit is set. */
function sshMpint (magnitude: Uint8Array): Buffer {
  let i = 0
  while (i < magnitude.length && magnitude[i] === 0) i++
  let m = Buffer.from(magnitude.subarray(i))
  if (m.length > 0 && (m[0]! & 0x80) !== 0) m = Buffer.concat([Buffer.alloc(1), m])
  return sshString(m)
}

/** Strips the sign byte of a (positive) mpint, giving the unsigned magnitude. */
function unsignedMpint (b: Buffer): Buffer {
  let i = 0
  while (i < b.length - 1 && b[i] === 0) i++
  return b.subarray(i)
}

/** First 4 bytes of SHA-256 of the wire-format public key, base64: the tag age puts in ssh-* stanzas. */
export function sshTag (wire: Buffer): string {
  return b64encode(createHash('sha256').update(wire).digest().subarray(0, 4))
}

/** `string "ssh-rsa", mpint e, mpint n` for an RSA key object. */
export function rsaWireKey (key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' })
  if (typeof jwk.n !== 'string' || typeof jwk.e !== 'string') throw cryptoError('not an RSA key')
  return Buffer.concat([sshString('ssh-rsa'), sshMpint(Buffer.from(jwk.e, 'base64url')), sshMpint(Buffer.from(jwk.n, 'base64url'))])
}

export function ed25519WireKey (publicKey: Uint8Array): Buffer {
  return Buffer.concat([sshString('ssh-ed25519'), sshString(publicKey)])
}

// ---- Ed25519 → X25519 ----------------------------------------------------------------------------------------

const P = 2n ** 255n - 19n
const D = (-121665n * modInv(121666n)) % P + P

function modPow (b: bigint, e: bigint): bigint {
  let r = 1n
  b %= P
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P
    b = (b * b) % P
    e >>= 1n
  }
  return r
}

function modInv (a: bigint): bigint { return modPow(((a % P) + P) % P, P - 2n) }

function leToBig (b: Uint8Array): bigint {
  let v = 0n
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!)
  return v
}

function bigToLe (v: bigint, n: number): Buffer {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) { out[i] = Number(v & 0xffn); v >>= 8n }
  return out
}

/**
 * The Montgomery u-coordinate of an Ed25519 public key, u = (1 + y) / (1 − y). Returns null for encodings that are
 * not a point of the curve (non-canonical y or no matching x).
 */
export function ed25519PublicToX25519 (pk: Uint8Array): Buffer | null {
  if (pk.length !== 32) return null
  const yb = Buffer.from(pk)
  yb[31]! &= 0x7f
  const y = leToBig(yb)
  if (y >= P) return null
  // x² = (y² − 1) / (d·y² + 1) must be a square.
  const y2 = (y * y) % P
  const x2 = (((y2 - 1n + P) % P) * modInv((D * y2 + 1n) % P)) % P
  if (x2 !== 0n && modPow(x2, (P - 1n) / 2n) !== 1n) return null
  if (y === 1n) return null
  const u = (((1n + y) % P) * modInv((1n - y + P) % P)) % P
  return bigToLe(u, 32)
}

// ---- ssh-rsa -------------------------------------------------------------------------------------------------------

function rsaBits (key: KeyObject): number {
  return key.asymmetricKeyDetails?.modulusLength ?? 0
}

export class SshRsaRecipient implements Recipient {
  readonly kind = 'ssh-rsa'
  readonly tag: string
  private readonly key: KeyObject

  /** `key`: an RSA public key object (from an SSH line, a certificate or a PEM public key). */
  constructor (key: KeyObject, source = 'RSA key') {
    if (key.asymmetricKeyType !== 'rsa') throw cryptoError(`${source}: not an RSA key`, source)
    if (rsaBits(key) < MIN_RSA_BITS) throw cryptoError(`${source}: the RSA key has ${rsaBits(key)} bits; age needs at least ${MIN_RSA_BITS}`, source)
    this.key = key
    this.tag = sshTag(rsaWireKey(key))
  }

  wrapFileKey (fileKey: Buffer): Stanza[] {
    const body = publicEncrypt({ key: this.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: RSA_LABEL }, fileKey)
    return [{ type: 'ssh-rsa', args: [this.tag], body }]
  }

  /** The `ssh-rsa AAAA…` line for this key (what `age -R` takes). */
  toString (): string {
    return 'ssh-rsa ' + rsaWireKey(this.key).toString('base64')
  }

  /** The public key as DER SubjectPublicKeyInfo (for the native sealer). */
  spki (): Buffer {
    return this.key.export({ type: 'spki', format: 'der' })
  }
}

export class SshRsaIdentity implements Identity {
  readonly kind = 'ssh-rsa'
  readonly source?: string
  readonly tag: string
  private readonly key: KeyObject

  constructor (privateKey: KeyObject, source?: string) {
    if (privateKey.asymmetricKeyType !== 'rsa') throw cryptoError(`${source ?? 'key'}: not an RSA private key`, source)
    this.key = privateKey
    this.tag = sshTag(rsaWireKey(createPublicKey(privateKey)))
    if (source !== undefined) this.source = source
  }

  unwrapFileKey (stanzas: Stanza[]): Buffer | null {
    for (const s of stanzas) {
      if (s.type !== 'ssh-rsa') continue
      if (s.args.length !== 1) throw corrupt('malformed ssh-rsa stanza: it must have exactly one argument')
      if (s.args[0] !== this.tag) continue
      try {
        return privateDecrypt({ key: this.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: RSA_LABEL }, s.body)
      } catch (err) {
        throw corrupt(`the ssh-rsa stanza for ${this.source ?? 'this key'} does not decrypt (damaged header?)`, err)
      }
    }
    return null
  }

  recipient (): SshRsaRecipient {
    return new SshRsaRecipient(createPublicKey(this.key), this.source)
  }
}

// ---- ssh-ed25519 ------------------------------------------------------------------------------------------------

export class SshEd25519Recipient implements Recipient {
  readonly kind = 'ssh-ed25519'
  readonly tag: string
  private readonly wire: Buffer
  private readonly montgomery: Buffer
  #tweak: KeyObject | null = null // made once: a pack wraps a file key per file

  constructor (publicKey: Uint8Array, source = 'ssh-ed25519 key') {
    const u = ed25519PublicToX25519(publicKey)
    if (u === null) throw cryptoError(`${source}: invalid Ed25519 public key`, source)
    this.montgomery = u
    this.wire = ed25519WireKey(publicKey)
    this.tag = sshTag(this.wire)
  }

  wrapFileKey (fileKey: Buffer): Stanza[] {
    const eph = ephemeral()
    const s1 = x25519(eph.privateKey, this.montgomery)
    if (s1 === null) throw cryptoError('invalid ssh-ed25519 recipient (low-order key)')
    this.#tweak ??= x25519PrivateKey(hkdf(Buffer.alloc(0), this.wire, ED_LABEL))
    const shared = x25519(this.#tweak, s1)
    if (shared === null) throw cryptoError('invalid ssh-ed25519 recipient')
    const wrapKey = hkdf(shared, Buffer.concat([eph.publicRaw, this.montgomery]), ED_LABEL)
    return [{ type: 'ssh-ed25519', args: [this.tag, b64encode(eph.publicRaw)], body: aeadSealZeroNonce(wrapKey, fileKey) }]
  }

  toString (): string {
    return 'ssh-ed25519 ' + this.wire.toString('base64')
  }
}

export class SshEd25519Identity implements Identity {
  readonly kind = 'ssh-ed25519'
  readonly source?: string
  readonly tag: string
  private readonly wire: Buffer
  private readonly secret: KeyObject
  private readonly ourPublic: Buffer
  private readonly tweak: KeyObject
  private readonly publicKey: Buffer

  /** `seed`: the 32-byte Ed25519 private seed; `publicKey`: its 32-byte public key. */
  constructor (seed: Uint8Array, publicKey: Uint8Array, source?: string) {
    const h = createHash('sha512').update(seed).digest().subarray(0, 32)
    this.secret = x25519PrivateKey(h)
    this.ourPublic = rawOkp(createPublicKey(this.secret))
    this.publicKey = Buffer.from(publicKey)
    const expected = ed25519PublicToX25519(publicKey)
    if (expected === null || !expected.equals(this.ourPublic)) throw cryptoError(`${source ?? 'key'}: the Ed25519 private and public keys do not match`, source)
    this.wire = ed25519WireKey(publicKey)
    this.tag = sshTag(this.wire)
    this.tweak = x25519PrivateKey(hkdf(Buffer.alloc(0), this.wire, ED_LABEL))
    if (source !== undefined) this.source = source
  }

  unwrapFileKey (stanzas: Stanza[]): Buffer | null {
    for (const s of stanzas) {
      if (s.type !== 'ssh-ed25519') continue
      if (s.args.length !== 2) throw corrupt('malformed ssh-ed25519 stanza: it must have exactly two arguments')
      const share = b64decodeStrict(s.args[1]!)
      if (share === null || share.length !== 32) throw corrupt('malformed ssh-ed25519 stanza: the ephemeral share is not 32 bytes of canonical base64')
      if (s.args[0] !== this.tag) continue
      if (s.body.length !== 32) throw corrupt('malformed ssh-ed25519 stanza: the wrapped file key is not 32 bytes')
      const s1 = x25519(this.secret, share)
      if (s1 === null) throw corrupt('malformed ssh-ed25519 stanza: the ephemeral share is a low-order point')
      const shared = x25519(this.tweak, s1)
      if (shared === null) throw corrupt('malformed ssh-ed25519 stanza')
      const wrapKey = hkdf(shared, Buffer.concat([share, this.ourPublic]), ED_LABEL)
      const fileKey = aeadOpenZeroNonce(wrapKey, s.body)
      if (fileKey === null) throw corrupt(`the ssh-ed25519 stanza for ${this.source ?? 'this key'} does not decrypt (damaged header?)`)
      return fileKey
    }
    return null
  }

  recipient (): SshEd25519Recipient {
    return new SshEd25519Recipient(this.publicKey, this.source)
  }
}

// ---- parsing ------------------------------------------------------------------------------------------------------

/** Parses the wire-format public key blob of an `ssh-rsa`/`ssh-ed25519` line into a recipient. */
export function sshRecipientFromWire (blob: Buffer, expectedType: string, source: string): Recipient {
  const r = new SshReader(blob)
  let type: string
  try {
    type = r.string()
    if (type !== expectedType) throw new Error(`the key blob says ${type}`)
    if (type === 'ssh-rsa') {
      const e = unsignedMpint(r.bytes())
      const n = unsignedMpint(r.bytes())
      if (!r.done) throw new Error('trailing data')
      const key = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' })
      return new SshRsaRecipient(key, source)
    }
    if (type === 'ssh-ed25519') {
      const pk = r.bytes()
      if (pk.length !== 32 || !r.done) throw new Error('bad Ed25519 key length')
      return new SshEd25519Recipient(pk, source)
    }
  } catch (err) {
    if (err instanceof Error && err.name === 'PackerError') throw err
    throw cryptoError(`${source}: malformed ${expectedType} public key (${(err as Error).message})`, source, err)
  }
  throw cryptoError(`${source}: unsupported SSH key type ${type}; use ssh-rsa or ssh-ed25519`, source)
}

/** Parses `ssh-rsa AAAA… [comment]` or `ssh-ed25519 AAAA… [comment]`. */
export function parseSshRecipient (line: string, source = 'SSH recipient'): Recipient {
  const parts = line.trim().split(/\s+/)
  const type = parts[0] ?? ''
  if (type !== 'ssh-rsa' && type !== 'ssh-ed25519') {
    throw cryptoError(`${source}: unsupported SSH key type ${type.slice(0, 40)}; use ssh-rsa or ssh-ed25519`, source)
  }
  const blob = parts[1] === undefined ? null : Buffer.from(parts[1], 'base64')
  if (blob === null || blob.length === 0 || !/^[A-Za-z0-9+/]+=*$/.test(parts[1]!)) throw cryptoError(`${source}: malformed ${type} public key`, source)
  return sshRecipientFromWire(blob, type, source)
}

const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1')

/**
 * Identities from the base64 body of an `OPENSSH PRIVATE KEY` block. Throws CRYPTO for passphrase-protected keys
 * and unsupported key types.
 */
export function parseOpenSshPrivateKey (der: Buffer, source: string): Identity[] {
  const fail = (what: string): never => { throw cryptoError(`${source}: ${what}`, source) }
  if (der.length < OPENSSH_MAGIC.length || !der.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC)) fail('not an openssh-key-v1 private key')
  try {
    const r = new SshReader(der.subarray(OPENSSH_MAGIC.length))
    const cipher = r.string()
    const kdf = r.string()
    r.bytes() // kdf options
    if (cipher !== 'none' || kdf !== 'none') {
      fail(`the OpenSSH key is encrypted with a passphrase; decrypt a copy first with \`ssh-keygen -p -N "" -f COPY\` and give that copy`)
    }
    const nkeys = r.uint32()
    for (let i = 0; i < nkeys; i++) r.bytes() // public keys
    const priv = new SshReader(r.bytes())
    if (priv.uint32() !== priv.uint32()) fail('damaged OpenSSH private key (check bytes differ)')
    const out: Identity[] = []
    for (let i = 0; i < nkeys; i++) {
      const type = priv.string()
      if (type === 'ssh-ed25519') {
        const pub = priv.bytes()
        const sk = priv.bytes()
        priv.bytes() // comment
        if (pub.length !== 32 || sk.length !== 64) fail('damaged ssh-ed25519 private key')
        out.push(new SshEd25519Identity(sk.subarray(0, 32), pub, source))
      } else if (type === 'ssh-rsa') {
        const [n, e, d, iqmp, p, q] = [priv.bytes(), priv.bytes(), priv.bytes(), priv.bytes(), priv.bytes(), priv.bytes()].map(unsignedMpint) as [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer]
        priv.bytes() // comment
        const big = (b: Buffer): bigint => BigInt('0x' + (b.length === 0 ? '0' : b.toString('hex')))
        const toB64 = (v: bigint): string => {
          let hex = v.toString(16)
          if (hex.length % 2 === 1) hex = '0' + hex
          return Buffer.from(hex, 'hex').toString('base64url')
        }
        const D = big(d)
        const key = createPrivateKey({
          key: {
            kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url'), d: d.toString('base64url'),
            p: p.toString('base64url'), q: q.toString('base64url'),
            dp: toB64(D % (big(p) - 1n)), dq: toB64(D % (big(q) - 1n)), qi: iqmp.toString('base64url'),
          },
          format: 'jwk',
        })
        out.push(new SshRsaIdentity(key, source))
      } else {
        fail(`unsupported OpenSSH key type ${type}; packer reads ssh-rsa and ssh-ed25519 keys`)
      }
    }
    return out
  } catch (err) {
    if (err instanceof Error && err.name === 'PackerError') throw err
    throw cryptoError(`${source}: damaged OpenSSH private key (${(err as Error).message})`, source, err)
  }
}
