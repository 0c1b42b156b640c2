/** Passphrase (scrypt) recipients and identities. A scrypt stanza must be the only stanza of its file. */
import { randomBytes, scryptSync } from 'node:crypto'
import type { Identity, Recipient, Stanza } from './stanza.js'
import { aeadOpenZeroNonce, aeadSealZeroNonce, b64decodeStrict, b64encode, corrupt, cryptoError, formatError } from './util.js'

const SALT_LABEL = 'age-encryption.org/v1/scrypt'
/** age's default work factor for encryption (2^18: about 256 MiB and a second of CPU). */
export const DEFAULT_SCRYPT_LOG_N = 18
/** The largest work factor we agree to compute when decrypting (2^22: 4 GiB), as age does. */
export const MAX_SCRYPT_LOG_N = 22

function scryptKey (passphrase: string, salt: Buffer, logN: number): Buffer {
  const N = 2 ** logN
  const r = 8
  try {
    return scryptSync(Buffer.from(passphrase, 'utf8'), Buffer.concat([Buffer.from(SALT_LABEL), salt]), 32,
      { N, r, p: 1, maxmem: 128 * N * r + 64 * 1024 * 1024 })
  } catch (err) {
    throw cryptoError(`scrypt with work factor ${logN} failed (${(err as Error).message}); not enough memory?`, undefined, err)
  }
}

export class ScryptRecipient implements Recipient {
  readonly kind = 'scrypt'
  private readonly passphrase: string
  private readonly logN: number

  constructor (passphrase: string, logN = DEFAULT_SCRYPT_LOG_N) {
    if (passphrase.length === 0) throw cryptoError('the passphrase is empty; choose a non-empty passphrase')
    if (!Number.isInteger(logN) || logN < 1 || logN > 30) throw cryptoError(`invalid scrypt work factor ${logN} (must be 1–30)`)
    this.passphrase = passphrase
    this.logN = logN
  }

  wrapFileKey (fileKey: Buffer): Stanza[] {
    const salt = randomBytes(16)
    const key = scryptKey(this.passphrase, salt, this.logN)
    return [{ type: 'scrypt', args: [b64encode(salt), String(this.logN)], body: aeadSealZeroNonce(key, fileKey) }]
  }
}

export class ScryptIdentity implements Identity {
  readonly kind = 'scrypt'
  private readonly passphrase: string
  private readonly maxLogN: number

  constructor (passphrase: string, maxLogN = MAX_SCRYPT_LOG_N) {
    if (passphrase.length === 0) throw cryptoError('the passphrase is empty; give the passphrase the files were encrypted with')
    this.passphrase = passphrase
    this.maxLogN = maxLogN
  }

  unwrapFileKey (stanzas: Stanza[]): Buffer | null {
    if (!stanzas.some(s => s.type === 'scrypt')) return null
    if (stanzas.length !== 1) throw formatError('malformed age header: a passphrase (scrypt) stanza must be the only stanza')
    const s = stanzas[0]!
    if (s.args.length !== 2) throw corrupt('malformed scrypt stanza: it must have exactly two arguments')
    const salt = b64decodeStrict(s.args[0]!)
    if (salt === null || salt.length !== 16) throw corrupt('malformed scrypt stanza: the salt is not 16 bytes of canonical base64')
    const w = s.args[1]!
    if (!/^[1-9][0-9]*$/.test(w)) throw corrupt(`malformed scrypt stanza: invalid work factor "${w.slice(0, 30)}"`)
    const logN = w.length > 3 ? Infinity : Number(w)
    if (logN > this.maxLogN) {
      throw cryptoError(`the passphrase file asks for scrypt work factor ${w.length > 20 ? w.slice(0, 20) + '…' : w}, above the limit of ${this.maxLogN}; refusing (it would take too much memory and time)`)
    }
    if (s.body.length !== 32) throw corrupt('malformed scrypt stanza: the wrapped file key is not 32 bytes')
    return aeadOpenZeroNonce(scryptKey(this.passphrase, salt, logN), s.body)
  }
}

export function passphraseRecipient (passphrase: string, logN = DEFAULT_SCRYPT_LOG_N): Recipient {
  return new ScryptRecipient(passphrase, logN)
}

export function passphraseIdentity (passphrase: string, maxLogN = MAX_SCRYPT_LOG_N): Identity {
  return new ScryptIdentity(passphrase, maxLogN)
}
