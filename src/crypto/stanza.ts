/** The recipient-stanza model shared by every recipient type, and its text encoding in the age header. */
import { b64encode } from './util.js'

export interface Stanza { type: string; args: string[]; body: Buffer }

/** Something a file key can be wrapped for. `kind` is the stanza type it produces (X25519, scrypt, ssh-rsa…). */
export interface Recipient {
  readonly kind: string
  wrapFileKey (fileKey: Buffer): Stanza[]
}

/**
 * Something that can unwrap a file key. `unwrapFileKey` returns null when none of the stanzas is for it, and throws a
 * PackerError (CORRUPT or CRYPTO) when a stanza addressed to it is malformed. `source` (optional) names the file the
 * identity came from, so that "no identity matches" errors can name it.
 */
export interface Identity {
  readonly kind: string
  readonly source?: string
  unwrapFileKey (stanzas: Stanza[]): Buffer | null
}

/** True for a valid stanza type or argument: one or more VCHAR (0x21–0x7e). */
export function isArgString (s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

/** `-> type args…\n` then the body in unpadded base64, 64 columns, ending with a line shorter than 64 (maybe empty). */
export function encodeStanza (s: Stanza): string {
  let out = '-> ' + [s.type, ...s.args].join(' ') + '\n'
  const b64 = b64encode(s.body)
  for (let i = 0; i < b64.length; i += 64) out += b64.slice(i, i + 64) + '\n'
  if (b64.length % 64 === 0) out += '\n'
  return out
}
