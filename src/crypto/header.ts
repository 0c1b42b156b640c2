/**
 * The age v1 header: `age-encryption.org/v1`, recipient stanzas, and the HMAC line. Parsing is strict, per the spec
 * and the C2SP test vectors: canonical unpadded base64, 64-column body lines, exact spacing, LF only.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { PackerError } from '../errors.js'
import { encodeStanza, isArgString, type Identity, type Recipient, type Stanza } from './stanza.js'
import { b64decodeStrict, b64encode, corrupt, cryptoError, formatError, hkdf } from './util.js'

export const VERSION_LINE = 'age-encryption.org/v1\n'
const VERSION_BYTES = Buffer.from(VERSION_LINE, 'latin1')
const NL = 0x0a
const BODY_RE = /^[A-Za-z0-9+/]*$/

/** 16 random bytes: a fresh key for one file. */
export function newFileKey (): Buffer {
  return randomBytes(16)
}

function headerMac (fileKey: Buffer, macInput: Uint8Array): Buffer {
  const key = hkdf(fileKey, Buffer.alloc(0), 'header')
  return createHmac('sha256', key).update(macInput).digest()
}

/** Builds the whole header (stanzas and MAC line) for `fileKey` wrapped to every recipient. */
export function encodeHeader (fileKey: Buffer, recipients: Recipient[]): Buffer {
  if (fileKey.length !== 16) throw cryptoError(`age file key must be 16 bytes, got ${fileKey.length}`)
  if (recipients.length === 0) throw cryptoError('no recipients: give at least one key to encrypt to')
  const stanzas: Stanza[] = []
  for (const r of recipients) stanzas.push(...r.wrapFileKey(fileKey))
  if (stanzas.some(s => s.type === 'scrypt') && stanzas.length !== 1) {
    throw cryptoError('a passphrase (scrypt) recipient must be the only recipient of a file; drop the other keys or the passphrase')
  }
  let text = VERSION_LINE
  for (const s of stanzas) {
    if (!isArgString(s.type) || !s.args.every(isArgString)) throw cryptoError(`invalid stanza from a ${s.type} recipient`)
    text += encodeStanza(s)
  }
  text += '---'
  const macInput = Buffer.from(text, 'latin1')
  const mac = headerMac(fileKey, macInput)
  return Buffer.concat([macInput, Buffer.from(' ' + b64encode(mac) + '\n', 'latin1')])
}

/**
 * The length of the header when `bytes` holds all of it (through the MAC line's newline), else null: read more.
 * Throws FORMAT at once when `bytes` does not start like an age v1 file, so callers never wait for a header that
 * will not come.
 */
export function headerLengthOf (bytes: Uint8Array): number | null {
  const n = Math.min(bytes.length, VERSION_BYTES.length)
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== VERSION_BYTES[i]) throw formatError('not an age v1 file (the first line is not "age-encryption.org/v1")')
  }
  if (bytes.length < VERSION_BYTES.length) return null
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let pos = VERSION_BYTES.length
  for (;;) {
    const nl = buf.indexOf(NL, pos)
    if (nl < 0) return null
    if (nl - pos >= 3 && buf[pos] === 0x2d && buf[pos + 1] === 0x2d && buf[pos + 2] === 0x2d) return nl + 1
    pos = nl + 1
  }
}

export interface ParsedHeader { stanzas: Stanza[]; headerLength: number; macInput: Buffer; mac: Buffer }

/** Parses the header at the start of `bytes` (which may go on into the payload). Throws FORMAT when malformed. */
export function parseHeader (bytes: Buffer): ParsedHeader {
  const bad = (what: string): PackerError => formatError(`malformed age header: ${what}`)
  if (bytes.length < VERSION_BYTES.length || !bytes.subarray(0, VERSION_BYTES.length).equals(VERSION_BYTES)) {
    if (bytes.length >= 19 && bytes.subarray(0, 19).toString('latin1') === 'age-encryption.org/') {
      throw formatError('unsupported age version (only age-encryption.org/v1 is supported)')
    }
    if (bytes.length < VERSION_BYTES.length && VERSION_BYTES.subarray(0, bytes.length).equals(bytes)) throw bad('truncated')
    throw formatError('not an age v1 file (the first line is not "age-encryption.org/v1")')
  }
  let pos = VERSION_BYTES.length
  const readLine = (): { line: string; start: number; end: number } => {
    const nl = bytes.indexOf(NL, pos)
    if (nl < 0) throw bad('truncated (no MAC line)')
    const start = pos
    pos = nl + 1
    return { line: bytes.subarray(start, nl).toString('latin1'), start, end: nl + 1 }
  }
  const stanzas: Stanza[] = []
  for (;;) {
    const { line, start, end } = readLine()
    if (line.startsWith('---')) {
      const m = /^--- ([A-Za-z0-9+/]{43})$/.exec(line)
      const mac = m === null ? null : b64decodeStrict(m[1]!)
      if (mac === null || mac.length !== 32) throw bad('invalid MAC line')
      if (stanzas.length === 0) throw bad('no recipient stanzas')
      return { stanzas, headerLength: end, macInput: bytes.subarray(0, start + 3), mac }
    }
    if (!line.startsWith('-> ')) throw bad('expected a stanza ("-> ") or the MAC line ("--- ")')
    const parts = line.slice(3).split(' ')
    if (!parts.every(isArgString)) throw bad('invalid stanza type or argument')
    const bodyLines: string[] = []
    for (;;) {
      const { line: bl } = readLine()
      if (bl.length > 64 || !BODY_RE.test(bl)) throw bad('invalid stanza body line')
      bodyLines.push(bl)
      if (bl.length < 64) break
    }
    const body = b64decodeStrict(bodyLines.join(''))
    if (body === null) throw bad('stanza body is not canonical base64')
    stanzas.push({ type: parts[0]!, args: parts.slice(1), body })
  }
}

/** Checks the header MAC with `fileKey`; throws CORRUPT when it does not match. */
export function verifyHeaderMac (headerBytes: Buffer, fileKey: Buffer): void {
  const h = parseHeader(headerBytes)
  checkMac(h, fileKey)
}

function checkMac (h: ParsedHeader, fileKey: Buffer): void {
  const want = headerMac(fileKey, h.macInput)
  if (!timingSafeEqual(want, h.mac)) throw corrupt('the age header MAC does not match: the header was modified or damaged')
}

/** Throws when a scrypt stanza is mixed with others (the spec forbids it; it would let a passphrase file be re-keyed). */
export function checkScryptAlone (stanzas: Stanza[]): void {
  if (stanzas.length > 1 && stanzas.some(s => s.type === 'scrypt')) {
    throw formatError('malformed age header: a passphrase (scrypt) stanza must be the only stanza')
  }
}

function describeSources (identities: Identity[]): string {
  const sources = [...new Set(identities.map(i => i.source).filter((s): s is string => s !== undefined))]
  if (sources.length === 0 || sources.length !== new Set(identities.map(i => i.source)).size) return 'no identity'
  return `no identity in ${sources.join(', ')}`
}

/** Finds the file key with the first identity that opens a stanza, and verifies the header MAC with it. */
export function unwrapFileKey (headerBytes: Buffer, identities: Identity[]): Buffer {
  const h = parseHeader(headerBytes)
  checkScryptAlone(h.stanzas)
  for (const id of identities) {
    const key = id.unwrapFileKey(h.stanzas)
    if (key === null) continue
    if (key.length !== 16) throw corrupt(`a ${id.kind} stanza holds a ${key.length}-byte file key (must be 16)`)
    checkMac(h, key)
    return key
  }
  if (h.stanzas[0]!.type === 'scrypt' && identities.some(i => i.kind === 'scrypt')) {
    throw new PackerError('NO_IDENTITY', 'the passphrase does not open this file (wrong passphrase?)')
  }
  const types = [...new Set(h.stanzas.map(s => s.type))].join(', ')
  throw new PackerError('NO_IDENTITY', `${describeSources(identities)} matches this file (wrong key?; the file is for: ${types})`)
}
