import {
  encodeHeader, encryptStream, generateX25519Identity, newFileKey, parseRecipient, passphraseRecipient, type Recipient,
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
  setIdentity?: string
  sealFile: (plain: AsyncIterable<Uint8Array>) => { fileKey: Buffer, headerLength: number, stream: AsyncIterable<Uint8Array> }
  sealTable: (plain: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>
}

function seal (recipients: Recipient[], plain: AsyncIterable<Uint8Array>): { fileKey: Buffer, headerLength: number, stream: AsyncIterable<Uint8Array> } {
  const fileKey = newFileKey()
  const header = encodeHeader(fileKey, recipients)
  return { fileKey, headerLength: header.length, stream: encryptStream(plain, fileKey, header) }
}

export function recipientEncryption (recipients: Recipient[], names: 'hidden' | 'plain'): SetEncryption {
  return {
    names,
    recipientKinds: [...new Set(recipients.map((r) => r.kind))],
    sealFile: (plain) => seal(recipients, plain),
    sealTable: (plain) => seal(recipients, plain).stream,
  }
}

export function passphraseEncryption (passphrase: string, names: 'hidden' | 'plain', logN?: number): SetEncryption {
  const setKey = generateX25519Identity()
  const fileRecipients = [parseRecipient(setKey.recipient)]
  const tableRecipients = [passphraseRecipient(passphrase, logN)]
  return {
    names,
    recipientKinds: ['scrypt'],
    setIdentity: setKey.identity,
    sealFile: (plain) => seal(fileRecipients, plain),
    sealTable: (plain) => seal(tableRecipients, plain).stream,
  }
}
