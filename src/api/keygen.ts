import path from 'node:path'
import { generateRsaCertificatePair, writeX25519IdentityFile } from '../crypto/index.js'

/** An age X25519 identity file and its recipient (what `pack`'s `recipients` takes). */
export interface AgeKey { type: 'age', identityFile: string, recipient: string }
/** An RSA key and self-signed certificate, as the original tool made them (`recipientFiles` takes the certificate). */
export interface RsaKeyPair { type: 'rsa', privateKey: string, certificate: string }

/**
 * `packer keygen`: writes an age X25519 identity file at `output` (mode 0600), or with `rsa`, private_key.pem and
 * certificate.pem in the directory `output`. Never overwrites a key.
 */
export async function keygen (output: string, options?: { rsa?: false }): Promise<AgeKey>
export async function keygen (output: string, options: { rsa: true }): Promise<RsaKeyPair>
export async function keygen (output: string, options: { rsa?: boolean } = {}): Promise<AgeKey | RsaKeyPair> {
  if (options.rsa) return { type: 'rsa', ...await generateRsaCertificatePair(output) }
  const recipient = await writeX25519IdentityFile(output)
  return { type: 'age', identityFile: path.resolve(output), recipient }
}
