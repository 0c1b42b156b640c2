import fs from 'node:fs/promises'
import { PackerError } from '../errors.js'
import {
  parseRecipient, passphraseIdentity, readIdentityFile, readRecipientsFile, type Identity, type Recipient,
} from '../crypto/index.js'
import { passphraseEncryption, recipientEncryption, type SetEncryption } from '../pack/set-encryption.js'
import { readPassphrase } from './passphrase.js'

export interface RecipientOptions { encrypt: boolean, recipient?: string[], recipientsFile?: string[], passphrase?: boolean, plainNames?: boolean }
export interface IdentityOptions { identity?: string[], passphrase?: boolean }

/** Turns pack's key options into how the set is encrypted (null for --no-encrypt). */
export async function setEncryptionFrom (o: RecipientOptions, warn: (m: string) => void): Promise<SetEncryption | null> {
  const given = (o.recipient?.length ?? 0) + (o.recipientsFile?.length ?? 0)
  if (!o.encrypt) {
    if (given > 0 || o.passphrase) throw new PackerError('USAGE', '--no-encrypt cannot be combined with -r, -R or --passphrase')
    return null
  }
  const names = o.plainNames ? 'plain' : 'hidden'
  if (o.passphrase) {
    if (given > 0) throw new PackerError('USAGE', '--passphrase cannot be combined with -r or -R: a passphrase must be the only recipient')
    return passphraseEncryption(await readPassphrase(true), names)
  }
  if (given === 0) {
    throw new PackerError('USAGE', 'no recipient: give -R certificate.pem, -r age1…, or --passphrase to encrypt, or --no-encrypt to store files in clear')
  }
  const recipients: Recipient[] = []
  const specs: string[] = []
  for (const r of o.recipient ?? []) { recipients.push(parseRecipient(r)); specs.push(r.trim()) }
  for (const f of o.recipientsFile ?? []) {
    const { recipients: rs, warnings } = await readRecipientsFile(f)
    warnings.forEach(warn)
    recipients.push(...rs)
    specs.push(await fs.readFile(f, 'utf8'))
  }
  return recipientEncryption(recipients, names, specs)
}

export async function identitiesFrom (o: IdentityOptions): Promise<Identity[]> {
  const ids: Identity[] = []
  for (const f of o.identity ?? []) ids.push(...await readIdentityFile(f))
  if (o.passphrase || (ids.length === 0 && process.env.PACKER_PASSPHRASE !== undefined)) ids.push(passphraseIdentity(await readPassphrase(false)))
  return ids
}
