import { nativeAddon } from '../native-addon.js'
import type { Recipient } from './stanza.js'
import { X25519Recipient } from './x25519.js'
import { SshRsaRecipient } from './ssh.js'

/** A whole file sealed as an age file: the file, its SHA-256, its file key and header length. */
export interface SealedFile { file: Uint8Array, digest: Uint8Array, fileKey: Uint8Array, headerLength: number }

/**
 * Seals whole files as age v1 files to `recipients` in the native addon (native/src/age.c): one call per file, for
 * the small files that are most of a tree. null when the addon is absent or a recipient is of a kind it does not do
 * (ssh-ed25519, RSA over 4096 bits): then newAgeFile and the JavaScript payload sealing do it, byte-compatible.
 */
export function nativeSealer (recipients: Recipient[]): ((plain: Uint8Array) => SealedFile) | null {
  const addon = nativeAddon()
  if (addon === null || recipients.length === 0) return null
  const specs: Array<{ x25519: Buffer } | { spki: Buffer, tag: string }> = []
  for (const r of recipients) {
    if (r instanceof X25519Recipient) specs.push({ x25519: r.publicKey })
    else if (r instanceof SshRsaRecipient) specs.push({ spki: r.spki(), tag: r.tag })
    else return null
  }
  const handle = addon.ageRecipients(specs)
  if (handle === null) return null
  return (plain) => {
    const out = addon.ageSealFile(handle, plain)
    return {
      fileKey: out.subarray(0, 16),
      digest: out.subarray(16, 48),
      headerLength: out.readUInt32LE(48),
      file: out.subarray(52),
    }
  }
}
