// Bad inputs: wrong keys, damaged headers and payloads, scrypt limits. Every failure is a one-line PackerError, and
// decryption never releases plaintext that is not a prefix of the true plaintext.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  AGE_CHUNK_SIZE, decryptStream, encodeHeader, generateX25519Identity, headerLengthOf, newFileKey, parseHeader, parseRecipient,
  passphraseIdentity, passphraseRecipient, readIdentityFile, unwrapFileKey, verifyHeaderMac, x25519IdentityFromString,
  type Identity,
} from '../../src/crypto/index.js'
import { encrypt, expectPackerError, rand, ragged, tempDir } from './helpers.js'

const dir = tempDir()
const C = AGE_CHUNK_SIZE
const alice = generateX25519Identity()
const bob = generateX25519Identity()
const aliceId = (): Identity[] => [x25519IdentityFromString(alice.identity)]

/** Decrypts, checking that whatever is released before an error is a prefix of `plain`; rethrows the error. */
async function decryptChecked (file: Buffer, identities: Identity[], plain: Buffer): Promise<Buffer> {
  let off = 0
  for await (const c of decryptStream(ragged(file, 3), { identities })) {
    expect(Buffer.from(c).equals(plain.subarray(off, off + c.length))).toBe(true)
    off += c.length
  }
  return plain.subarray(0, off)
}

describe('wrong keys', () => {
  it('a wrong identity gives NO_IDENTITY naming the identity file, on one line', async () => {
    const { file } = await encrypt(rand(1000), [parseRecipient(alice.recipient)])
    writeFileSync(join(dir, 'bob.txt'), `# a comment\n${bob.identity}\n`)
    const ids = await readIdentityFile(join(dir, 'bob.txt'))
    const e = await expectPackerError(decryptChecked(file, ids, Buffer.alloc(0)), 'NO_IDENTITY', /bob\.txt/)
    expect(e.message).toMatch(/wrong key\?/)
    expect(e.message).toMatch(/X25519/)
  })

  it('a wrong passphrase gives NO_IDENTITY', async () => {
    const { file } = await encrypt(rand(10), [passphraseRecipient('right', 10)])
    await expectPackerError(decryptChecked(file, [passphraseIdentity('wrong')], Buffer.alloc(0)), 'NO_IDENTITY')
  })
})

describe('damaged headers', () => {
  it('every single-byte change of the header is refused (FORMAT, CORRUPT or NO_IDENTITY), never wrong plaintext', async () => {
    const plain = rand(2000)
    const { file, header } = await encrypt(plain, [parseRecipient(alice.recipient), parseRecipient(bob.recipient)])
    const seen = new Map<string, number>()
    for (let i = 0; i < header.length; i++) {
      const bad = Buffer.from(file)
      bad[i] = bad[i] === 0x41 ? 0x42 : 0x41
      let code = 'none'
      try {
        await decryptChecked(bad, aliceId(), plain)
      } catch (e) {
        code = (e as { code?: string }).code ?? String(e)
      }
      seen.set(code, (seen.get(code) ?? 0) + 1)
    }
    expect([...seen.keys()].every(c => ['FORMAT', 'CORRUPT', 'NO_IDENTITY'].includes(c)), JSON.stringify([...seen])).toBe(true)
    expect(seen.get('CORRUPT')).toBeGreaterThan(0) // e.g. a changed MAC or bob's stanza
    expect(seen.get('FORMAT')).toBeGreaterThan(0)
  })

  it('a truncated header is FORMAT; headerLengthOf says null until the MAC line is complete', async () => {
    const { file, header } = await encrypt(rand(10), [parseRecipient(alice.recipient)])
    for (const n of [0, 5, 21, 22, 40, header.length - 10, header.length - 1]) {
      expect(headerLengthOf(file.subarray(0, n))).toBeNull()
      await expectPackerError(decryptChecked(file.subarray(0, n), aliceId(), Buffer.alloc(0)), 'FORMAT')
      expect(() => parseHeader(file.subarray(0, n))).toThrow(/age/)
    }
    expect(headerLengthOf(file.subarray(0, header.length))).toBe(header.length)
    expect(headerLengthOf(file)).toBe(header.length)
    // Missing nonce.
    await expectPackerError(decryptChecked(file.subarray(0, header.length + 15), aliceId(), Buffer.alloc(0)), 'FORMAT', /nonce/)
  })

  it('not an age file: FORMAT at once, also from headerLengthOf', async () => {
    await expectPackerError(() => headerLengthOf(Buffer.from('PK\x03\x04')), 'FORMAT', /not an age v1 file/)
    await expectPackerError(decryptChecked(Buffer.from('hello world, this is not age\n'), aliceId(), Buffer.alloc(0)), 'FORMAT')
    await expectPackerError(() => parseHeader(Buffer.from('age-encryption.org/v2\n-> X\n\n--- AAAA\n')), 'FORMAT', /version/)
  })

  it('a header MAC computed with another key is CORRUPT (verifyHeaderMac and unwrapFileKey)', async () => {
    const fileKey = newFileKey()
    const header = encodeHeader(fileKey, [parseRecipient(alice.recipient)])
    verifyHeaderMac(header, fileKey)
    await expectPackerError(() => verifyHeaderMac(header, newFileKey()), 'CORRUPT', /MAC/)
    expect(unwrapFileKey(header, aliceId()).equals(fileKey)).toBe(true)
    const badMac = Buffer.from(header.toString('latin1').replace(/--- (.)/, (_m, c: string) => '--- ' + (c === 'A' ? 'B' : 'A')), 'latin1')
    await expectPackerError(() => unwrapFileKey(badMac, aliceId()), 'CORRUPT', /MAC/)
  })
})

describe('damaged payloads', () => {
  const size = 3 * C + 100
  it('a modified byte in any chunk is CORRUPT naming the chunk; earlier chunks were released intact', async () => {
    const plain = rand(size)
    const { file, header } = await encrypt(plain, [parseRecipient(alice.recipient)])
    for (const chunk of [0, 1, 3]) {
      for (const where of [0, 1000, C + 15]) {
        if (chunk === 3 && where > 115) continue
        const bad = Buffer.from(file)
        bad[header.length + 16 + chunk * (C + 16) + where]! ^= 0x80
        await expectPackerError(decryptChecked(bad, aliceId(), plain), 'CORRUPT', new RegExp(`chunk ${chunk}`))
      }
    }
    const badNonce = Buffer.from(file)
    badNonce[header.length + 3]! ^= 1
    await expectPackerError(decryptChecked(badNonce, aliceId(), plain), 'CORRUPT', /chunk 0/)
  })

  it('truncation (at and between chunk boundaries) and trailing data are CORRUPT', async () => {
    const plain = rand(size)
    const { file, header } = await encrypt(plain, [parseRecipient(alice.recipient)])
    const start = header.length + 16
    for (const cut of [start, start + 10, start + (C + 16), start + 2 * (C + 16), file.length - 1]) {
      const released = await decryptChecked(file.subarray(0, cut), aliceId(), plain).catch(e => e as Error)
      expect(released).toBeInstanceOf(Error)
      expect((released as { code?: string }).code).toBe('CORRUPT')
    }
    for (const extra of [Buffer.from([0]), rand(C + 16), rand(40)]) {
      await expectPackerError(decryptChecked(Buffer.concat([file, extra]), aliceId(), plain), 'CORRUPT')
    }
    // Chunks swapped: CORRUPT.
    const swapped = Buffer.concat([file.subarray(0, start), file.subarray(start + C + 16, start + 2 * (C + 16)), file.subarray(start, start + C + 16), file.subarray(start + 2 * (C + 16))])
    await expectPackerError(decryptChecked(swapped, aliceId(), plain), 'CORRUPT', /chunk 0/)
  })
})

describe('scrypt rules', () => {
  it('a work factor above the limit is refused with CRYPTO naming it (before any scrypt work)', async () => {
    const { file } = await encrypt(rand(10), [passphraseRecipient('pw', 10)])
    await expectPackerError(decryptChecked(file, [passphraseIdentity('pw', 9)], Buffer.alloc(0)), 'CRYPTO', /work factor 10.*limit of 9/)
    // A header asking for 2^40: refused by the default limit (22) at once. (The MAC is not reached.)
    const text = file.toString('latin1').replace(/^(-> scrypt \S+) 10$/m, '$1 40')
    const t0 = Date.now()
    await expectPackerError(decryptChecked(Buffer.from(text, 'latin1'), [passphraseIdentity('pw')], Buffer.alloc(0)), 'CRYPTO', /work factor 40.*limit of 22/)
    expect(Date.now() - t0).toBeLessThan(1000)
  })

  it('scrypt mixed with other stanzas: refused when encrypting (CRYPTO) and decrypting (FORMAT)', async () => {
    await expectPackerError(() => encodeHeader(newFileKey(), [passphraseRecipient('pw', 10), parseRecipient(alice.recipient)]), 'CRYPTO', /only recipient/)
    await expectPackerError(() => encodeHeader(newFileKey(), [passphraseRecipient('pw', 10), passphraseRecipient('pw2', 10)]), 'CRYPTO')
    // Splice an X25519 stanza into a passphrase file's header.
    const a = await encrypt(rand(10), [passphraseRecipient('pw', 10)])
    const b = await encrypt(rand(10), [parseRecipient(alice.recipient)])
    const x = /-> X25519 .*\n.*\n/.exec(b.header.toString('latin1'))![0]
    const mixed = Buffer.from(a.file.toString('latin1').replace('age-encryption.org/v1\n', 'age-encryption.org/v1\n' + x), 'latin1')
    for (const ids of [[passphraseIdentity('pw')], aliceId(), [...aliceId(), passphraseIdentity('pw')]]) {
      await expectPackerError(decryptChecked(mixed, ids, Buffer.alloc(0)), 'FORMAT', /scrypt/)
    }
  })

  it('an empty passphrase is refused', async () => {
    await expectPackerError(() => passphraseRecipient(''), 'CRYPTO', /empty/)
    await expectPackerError(() => passphraseIdentity(''), 'CRYPTO', /empty/)
  })
})
