import fs from 'node:fs/promises'
import { PackerError } from '../errors.js'
import {
  parseIdentities, parseRecipient, passphraseIdentity, readIdentityFile, readRecipientsFile, type Identity, type Recipient,
} from '../crypto/index.js'
import { passphraseEncryption, recipientEncryption, type SetEncryption } from '../pack/set-encryption.js'

/** A passphrase, or a function that supplies it when it is needed (e.g. asks the user). */
export type Passphrase = string | (() => Promise<string>)

/** Keys that open an encrypted set. */
export interface KeyOptions {
  /**
   * Identity files (paths), or identities as text: what an identity file holds (`AGE-SECRET-KEY-1…` lines, an RSA
   * PEM private key, an unencrypted OpenSSH private key). A string that starts with `AGE-`, holds `-----BEGIN ` or a
   * line break is text; any other string is a path.
   */
  identities?: string[]
  /** Opens a set packed with a passphrase. */
  passphrase?: Passphrase
}

/** Keys that pack encrypts to (`packer pack`'s -r, -R, --passphrase, --no-encrypt, --plain-names). */
export interface RecipientOptions {
  /** Recipients: `age1…`, `ssh-ed25519 …` or `ssh-rsa …` lines. */
  recipients?: string[]
  /** Files of recipients: an RSA certificate or public key (PEM or DER), or lines of age1…/ssh-… keys. */
  recipientFiles?: string[]
  /** Encrypts with a passphrase instead (it must then be the only recipient). */
  passphrase?: Passphrase
  /** false: store the files in clear (default: true, and a recipient or a passphrase is required). */
  encrypt?: boolean
  /** Keeps the UnixFS tree browsable: names in clear, contents still encrypted. */
  plainNames?: boolean
}

export async function passphraseText (p: Passphrase): Promise<string> {
  const text = typeof p === 'string' ? p : await p()
  if (text === '') throw new PackerError('CRYPTO', 'the passphrase is empty; choose a non-empty passphrase')
  return text
}

/** `identities` split into files (paths) and key texts, each text parsed (errors name it by its position). */
export function identitySources (identities: string[] = []): { files: string[], texts: Array<{ text: string, identities: Identity[] }> } {
  const files: string[] = []
  const texts: Array<{ text: string, identities: Identity[] }> = []
  for (const [i, s] of identities.entries()) {
    if (s.startsWith('AGE-') || s.includes('-----BEGIN ') || s.includes('\n')) texts.push({ text: s, identities: parseIdentities(s, `identity ${i + 1} (key text)`) })
    else files.push(s)
  }
  return { files, texts }
}

/** The identities that KeyOptions name: key texts, files, then the passphrase. */
export async function identitiesOf (o: KeyOptions): Promise<Identity[]> {
  const { files, texts } = identitySources(o.identities)
  const ids = texts.flatMap((t) => t.identities)
  for (const f of files) ids.push(...await readIdentityFile(f))
  if (o.passphrase !== undefined) ids.push(passphraseIdentity(await passphraseText(o.passphrase)))
  return ids
}

/** How pack encrypts the set (null: in clear); recipient files' warnings (an expired certificate) go to `warn`. */
export async function setEncryptionOf (o: RecipientOptions, warn: (m: string) => void): Promise<SetEncryption | null> {
  const given = (o.recipients?.length ?? 0) + (o.recipientFiles?.length ?? 0)
  if (o.encrypt === false) {
    if (given > 0 || o.passphrase !== undefined) throw new PackerError('USAGE', '--no-encrypt cannot be combined with -r, -R or --passphrase')
    return null
  }
  const names = o.plainNames ? 'plain' : 'hidden'
  if (o.passphrase !== undefined) {
    if (given > 0) throw new PackerError('USAGE', '--passphrase cannot be combined with -r or -R: a passphrase must be the only recipient')
    return passphraseEncryption(await passphraseText(o.passphrase), names)
  }
  if (given === 0) {
    throw new PackerError('USAGE', 'no recipient: give -R certificate.pem, -r age1…, or --passphrase to encrypt, or --no-encrypt to store files in clear')
  }
  const recipients: Recipient[] = []
  const specs: string[] = []
  for (const r of o.recipients ?? []) { recipients.push(parseRecipient(r)); specs.push(r.trim()) }
  for (const f of o.recipientFiles ?? []) {
    const { recipients: rs, warnings } = await readRecipientsFile(f)
    warnings.forEach(warn)
    recipients.push(...rs)
    specs.push(await fs.readFile(f, 'utf8'))
  }
  return recipientEncryption(recipients, names, specs)
}
