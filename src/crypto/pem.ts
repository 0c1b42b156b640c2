/** PEM blocks and the X.509 / SPKI / PKCS#1 / PKCS#8 keys packer accepts (RSA, as ssh-rsa recipients/identities). */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto'
import { SshEd25519Identity, SshRsaIdentity, SshRsaRecipient } from './ssh.js'
import type { Identity, Recipient } from './stanza.js'
import { cryptoError } from './util.js'
import { rawOkp } from './x25519.js'

export interface PemBlock {
  label: string
  /** RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`…), present in legacy encrypted PKCS#1 keys. */
  headers: Record<string, string>
  /** The whole block text, BEGIN to END line. */
  text: string
  /** 1-based line of the BEGIN line. */
  line: number
}

/** Splits text into PEM blocks and the remaining lines (with their 1-based line numbers). */
export function splitPem (text: string, source: string): { blocks: PemBlock[]; lines: Array<{ line: number; text: string }> } {
  const all = text.split(/\r?\n/)
  const blocks: PemBlock[] = []
  const lines: Array<{ line: number; text: string }> = []
  for (let i = 0; i < all.length; i++) {
    const m = /^-----BEGIN ([A-Z0-9 ]+)-----\s*$/.exec(all[i]!)
    if (m === null) {
      lines.push({ line: i + 1, text: all[i]! })
      continue
    }
    const label = m[1]!
    const start = i
    const headers: Record<string, string> = {}
    const end = `-----END ${label}-----`
    for (i++; i < all.length && all[i]!.trim() !== end; i++) {
      const h = /^([A-Za-z-]+):\s*(.*)$/.exec(all[i]!)
      if (h !== null) headers[h[1]!] = h[2]!
    }
    if (i >= all.length) throw cryptoError(`${source}: line ${start + 1}: the ${label} block has no END line (truncated file?)`, source)
    blocks.push({ label, headers, text: all.slice(start, i + 1).join('\n') + '\n', line: start + 1 })
  }
  return { blocks, lines }
}

const DAY = 24 * 3600 * 1000

/** A recipient from a DER file: an X.509 certificate or an SPKI / PKCS#1 RSA public key. */
export function recipientFromDer (der: Buffer, source: string, warnings: string[]): Recipient {
  let pem: string | null = null
  try {
    pem = new X509Certificate(der).toString()
  } catch {
    for (const type of ['spki', 'pkcs1'] as const) {
      try {
        pem = createPublicKey({ key: der, format: 'der', type }).export({ format: 'pem', type: 'spki' }).toString()
        break
      } catch {}
    }
  }
  if (pem === null) throw cryptoError(`${source}: binary file that is neither a DER certificate nor a DER public key`, source)
  const { blocks } = splitPem(pem, source)
  return recipientFromPem({ ...blocks[0]!, line: 1 }, source, warnings)
}

/** A recipient from a public PEM block (CERTIFICATE, PUBLIC KEY, RSA PUBLIC KEY); pushes warnings (expiry). */
export function recipientFromPem (b: PemBlock, source: string, warnings: string[]): Recipient {
  const where = `${source}: line ${b.line}`
  let key: KeyObject
  if (b.label === 'CERTIFICATE') {
    let cert: X509Certificate
    try {
      cert = new X509Certificate(b.text)
      key = cert.publicKey // parsed lazily: a damaged key inside a readable certificate fails here
    } catch (err) {
      throw cryptoError(`${where}: unreadable X.509 certificate (${(err as Error).message})`, source, err)
    }
    if (key.asymmetricKeyType !== 'rsa') {
      throw cryptoError(`${where}: the certificate holds a ${key.asymmetricKeyType?.toUpperCase() ?? 'non-RSA'} key; packer needs an RSA certificate (or an age1…/ssh-ed25519 recipient)`, source)
    }
    const notAfter = new Date(cert.validTo)
    if (Number.isFinite(notAfter.getTime()) && notAfter.getTime() < Date.now()) {
      warnings.push(`${source}: the certificate (${cert.subject.replace(/\n/g, ', ')}) expired on ${notAfter.toISOString().slice(0, 10)}; using its RSA key anyway (expiry does not weaken the key)`)
    } else if (Number.isFinite(notAfter.getTime()) && notAfter.getTime() < Date.now() + 30 * DAY) {
      warnings.push(`${source}: the certificate expires on ${notAfter.toISOString().slice(0, 10)} (its key still works afterwards)`)
    }
  } else if (b.label === 'PUBLIC KEY' || b.label === 'RSA PUBLIC KEY') {
    try {
      key = createPublicKey(b.text)
    } catch (err) {
      throw cryptoError(`${where}: unreadable ${b.label} (${(err as Error).message})`, source, err)
    }
    if (key.asymmetricKeyType !== 'rsa') {
      throw cryptoError(`${where}: the public key is ${key.asymmetricKeyType?.toUpperCase() ?? 'not RSA'}; packer takes RSA PEM keys (or age1…/ssh-ed25519 lines)`, source)
    }
  } else if (/PRIVATE KEY/.test(b.label)) {
    throw cryptoError(`${where}: this is a private key; give the certificate or the public key to encrypt (keep the private key for decryption)`, source)
  } else {
    throw cryptoError(`${where}: unsupported PEM block "${b.label}"; expected a CERTIFICATE or a PUBLIC KEY`, source)
  }
  return new SshRsaRecipient(key, source)
}

/** Identities from a private PEM block (PRIVATE KEY, RSA PRIVATE KEY); null for blocks to skip (CERTIFICATE…). */
export function identityFromPem (b: PemBlock, source: string): Identity | null {
  const where = `${source}: line ${b.line}`
  if (b.label === 'CERTIFICATE' || b.label === 'PUBLIC KEY' || b.label === 'RSA PUBLIC KEY') return null
  if (b.label === 'ENCRYPTED PRIVATE KEY' || /ENCRYPTED/.test(b.headers['Proc-Type'] ?? '')) {
    const cmd = b.label === 'ENCRYPTED PRIVATE KEY' ? 'openssl pkey -in KEY -out plain.pem' : 'openssl rsa -in KEY -out plain.pem'
    throw cryptoError(`${source} is encrypted with a passphrase; decrypt it first with \`${cmd}\` and give plain.pem (mode 0600)`, source)
  }
  if (b.label !== 'PRIVATE KEY' && b.label !== 'RSA PRIVATE KEY') {
    throw cryptoError(`${where}: unsupported key type "${b.label}"; packer reads RSA private keys (PKCS#8 or PKCS#1), OpenSSH keys and AGE-SECRET-KEY-1… lines`, source)
  }
  let key: KeyObject
  try {
    key = createPrivateKey(b.text)
  } catch (err) {
    throw cryptoError(`${where}: unreadable ${b.label} (${(err as Error).message})`, source, err)
  }
  if (key.asymmetricKeyType === 'rsa') return new SshRsaIdentity(key, source)
  if (key.asymmetricKeyType === 'ed25519') {
    return new SshEd25519Identity(rawOkp(key, 'd'), rawOkp(createPublicKey(key)), source)
  }
  throw cryptoError(`${where}: unsupported ${key.asymmetricKeyType?.toUpperCase() ?? ''} private key; packer reads RSA and Ed25519 keys`, source)
}
