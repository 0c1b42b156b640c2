import { parseIdentities } from '../crypto/index.js'
import type { KeyOptions } from '../api/keys.js'
import { readPassphrase } from './passphrase.js'

export interface KeyFlags { identity?: string[], passphrase?: boolean }

async function readStdin (): Promise<string> {
  const parts: Buffer[] = []
  for await (const chunk of process.stdin) parts.push(chunk as Buffer)
  return Buffer.concat(parts).toString('utf8')
}

/**
 * The API's keys from -i (a file, or - for standard input) and --passphrase; without -i, PACKER_PASSPHRASE alone
 * opens a passphrase set too. The passphrase is asked (or read from PACKER_PASSPHRASE) only when the API needs it.
 */
export async function keyOptionsFrom (o: KeyFlags): Promise<KeyOptions> {
  const identities: string[] = []
  for (const f of o.identity ?? []) {
    if (f !== '-') { identities.push(f); continue }
    const text = await readStdin()
    parseIdentities(text, 'standard input') // named as the user gave it; the API takes it as key text
    identities.push(text)
  }
  const asked = o.passphrase || (identities.length === 0 && process.env.PACKER_PASSPHRASE !== undefined)
  return { identities, passphrase: asked ? async () => await readPassphrase(false) : undefined }
}
