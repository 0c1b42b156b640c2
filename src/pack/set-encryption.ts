import crypto from 'node:crypto'
import type { FileEncryption } from '../format/table-entry.js'
import type { PlannedEncryption } from './work-dir.js'
import {
  encodeHeader, encryptStream, generateX25519Identity, newAgeFile, newFileKey, parseRecipient, passphraseRecipient, x25519IdentityFromString,
  type AgeFileStart, type Recipient,
} from '../crypto/index.js'

/**
 * How a set is encrypted (docs/FORMAT.md, "Encryption"): every file is an age v1 file with its own file key, the file
 * table is an age file too. With recipients, files and table are encrypted to them. With a passphrase, scrypt would cost
 * a second per file, so files are encrypted to a random X25519 key made for the set, and only the table is encrypted
 * with the passphrase; the table holds that key's identity.
 */
export interface SetEncryption {
  names: 'hidden' | 'plain'
  /** Stanza types, for the manifest (e.g. ["ssh-rsa", "X25519"]). */
  recipientKinds: string[]
  /** Identifies the recipients without holding a secret: a resumed pack must use the same ones. */
  fingerprint: string
  setIdentity?: string
  /** A new file's key, age header and payload key; the payload is sealed by the leaf workers (src/pack/leaf-workers.ts). */
  newFile: () => AgeFileStart
  /** The files' recipients as parseRecipient reads them: leaf workers make headers of small files themselves. */
  fileRecipients: string[]
  /** Seals the table index (to the recipients, or with the passphrase): the set ID is its CID. */
  sealTable: (plain: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>
  /** Passphrase sets: the same encryption with the set key of an interrupted pack, so that its files stay valid. */
  withSetIdentity?: (identity: string) => SetEncryption
}

function seal (recipients: Recipient[], plain: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const fileKey = newFileKey()
  return encryptStream(plain, fileKey, encodeHeader(fileKey, recipients))
}

/** One piece of the table (a chunk) as an age file to the files' recipients, with the key and header length the index keeps. */
export function sealTablePart (enc: SetEncryption, plain: Uint8Array): { bytes: AsyncIterable<Uint8Array>, enc: FileEncryption } {
  const start = enc.newFile()
  return { bytes: encryptStream([plain], start.fileKey, start.header), enc: { key: start.fileKey, headerLength: start.header.length } }
}

/** `specs` are the recipient strings and recipient files' contents the user gave, for the fingerprint. */
export function recipientEncryption (recipients: Recipient[], names: 'hidden' | 'plain', specs: string[]): SetEncryption {
  const fingerprint = 'recipients:' + crypto.createHash('sha256').update([...specs].sort().join('\n')).digest('hex').slice(0, 32)
  return {
    names,
    recipientKinds: [...new Set(recipients.map((r) => r.kind))],
    fingerprint,
    newFile: () => newAgeFile(recipients),
    fileRecipients: recipients.map(String),
    sealTable: (plain) => seal(recipients, plain),
  }
}

export function passphraseEncryption (passphrase: string, names: 'hidden' | 'plain', setIdentity?: string, logN?: number): SetEncryption {
  const identity = setIdentity ?? generateX25519Identity().identity
  const fileRecipients = [x25519IdentityFromString(identity).recipient()]
  const tableRecipients = [passphraseRecipient(passphrase, logN)]
  return {
    names,
    recipientKinds: ['scrypt'],
    fingerprint: 'passphrase',
    setIdentity: identity,
    newFile: () => newAgeFile(fileRecipients),
    fileRecipients: fileRecipients.map(String),
    sealTable: (plain) => seal(tableRecipients, plain),
    withSetIdentity: (id) => passphraseEncryption(passphrase, names, id, logN),
  }
}

/**
 * A planned set's encryption (WORK's plan.json): the recipients as the plan recorded them, or for a passphrase set its
 * own key and the table index's age key and header sealed with the passphrase at plan time, so that neither shards
 * nor the join ask for the passphrase.
 */
export function plannedSetEncryption (p: PlannedEncryption): SetEncryption | null {
  if (p === null) return null
  if ('recipients' in p) {
    const recipients = p.recipients.map((r) => parseRecipient(r))
    return { ...recipientEncryption(recipients, p.names, []), fingerprint: p.fingerprint, recipientKinds: p.kinds }
  }
  const fileRecipients = [x25519IdentityFromString(p.passphrase.setIdentity).recipient()]
  const indexKey = Buffer.from(p.passphrase.indexKey, 'base64')
  const indexHeader = Buffer.from(p.passphrase.indexHeader, 'base64')
  return {
    names: p.names,
    recipientKinds: ['scrypt'],
    fingerprint: 'passphrase',
    setIdentity: p.passphrase.setIdentity,
    newFile: () => newAgeFile(fileRecipients),
    fileRecipients: fileRecipients.map(String),
    sealTable: (plain) => encryptStream(plain, indexKey, indexHeader),
  }
}
