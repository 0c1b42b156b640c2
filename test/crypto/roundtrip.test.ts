// Round trips for every recipient type and the sizes around chunk boundaries.
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  AGE_CHUNK_SIZE, ciphertextSize, decryptStream, encodeHeader, encryptStream, generateX25519Identity, newFileKey, parseHeader,
  parseRecipient, passphraseIdentity, passphraseRecipient, readIdentityFile, readRecipientsFile, x25519IdentityFromString,
  type Identity, type Recipient,
} from '../../src/crypto/index.js'
import { collect, decrypt, encrypt, rand, ragged, sh, tempDir } from './helpers.js'

const dir = tempDir()
const SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 65536 + 17, 5 * 1024 * 1024 + 3]

async function pairs (): Promise<Array<{ name: string; recipients: Recipient[]; identities: Identity[] }>> {
  const x = generateX25519Identity()
  sh('openssl', ['req', '-x509', '-nodes', '-days', '3650', '-newkey', 'rsa:2048', '-keyout', 'private_key.pem', '-out', 'certificate.pem', '-subj', '/CN=roundtrip'], { cwd: dir })
  sh('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-C', 'rt', '-f', join(dir, 'id_rsa')])
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'rt', '-f', join(dir, 'id_ed25519')])
  return [
    { name: 'X25519', recipients: [parseRecipient(x.recipient)], identities: [x25519IdentityFromString(x.identity)] },
    { name: 'scrypt', recipients: [passphraseRecipient('correct horse', 12)], identities: [passphraseIdentity('correct horse')] },
    { name: 'ssh-rsa (openssl certificate)', recipients: (await readRecipientsFile(join(dir, 'certificate.pem'))).recipients, identities: await readIdentityFile(join(dir, 'private_key.pem')) },
    { name: 'ssh-rsa (ssh-keygen)', recipients: (await readRecipientsFile(join(dir, 'id_rsa.pub'))).recipients, identities: await readIdentityFile(join(dir, 'id_rsa')) },
    { name: 'ssh-ed25519 (ssh-keygen)', recipients: (await readRecipientsFile(join(dir, 'id_ed25519.pub'))).recipients, identities: await readIdentityFile(join(dir, 'id_ed25519')) },
  ]
}

describe('round trips', async () => {
  const all = await pairs()
  for (const p of all) {
    it(`${p.name}: sizes ${SIZES.join(', ')}`, async () => {
      expect(p.recipients[0]!.kind).toBe(p.name.split(' ')[0])
      for (const size of SIZES) {
        const plain = rand(size)
        const { file, header } = await encrypt(plain, p.recipients)
        expect(file.length).toBe(ciphertextSize(size, header.length))
        const back = await decrypt(file, p.identities)
        expect(back.equals(plain)).toBe(true)
      }
    })
  }

  it('several recipients of different types in one header; each identity opens it', async () => {
    const recipients = all.filter(p => p.name !== 'scrypt').flatMap(p => p.recipients)
    const plain = rand(100_000)
    const { file } = await encrypt(plain, recipients)
    expect(parseHeader(file).stanzas.map(s => s.type)).toEqual(['X25519', 'ssh-rsa', 'ssh-rsa', 'ssh-ed25519'])
    for (const p of all.filter(p => p.name !== 'scrypt')) expect((await decrypt(file, p.identities)).equals(plain)).toBe(true)
  })

  it('encryptStream yields header, 16-byte nonce, then 65,552-byte chunks and a short last one; buffers are fresh', async () => {
    const fileKey = newFileKey()
    const header = encodeHeader(fileKey, [all[0]!.recipients[0]!])
    const plain = rand(3 * AGE_CHUNK_SIZE + 5)
    const input = Buffer.from(plain)
    const parts: Uint8Array[] = []
    for await (const c of encryptStream([input], fileKey, header)) parts.push(c)
    expect(parts.map(p => p.length)).toEqual([header.length, 16, 65552, 65552, 65552, 5 + 16])
    expect(Buffer.from(parts[0]!).equals(header)).toBe(true)
    expect(new Set(parts.map(p => p.buffer)).size).toBe(parts.length) // no two yields share memory
    const back = await collect(decryptStream(parts, { fileKey }))
    expect(back.equals(plain)).toBe(true)
  })

  it('empty input gives one empty final chunk; exact multiple of 64 KiB ends with a full final chunk', async () => {
    const fileKey = newFileKey()
    const header = encodeHeader(fileKey, [all[0]!.recipients[0]!])
    const empty: Uint8Array[] = []
    for await (const c of encryptStream([], fileKey, header)) empty.push(c)
    expect(empty.map(p => p.length)).toEqual([header.length, 16, 16])
    const full: number[] = []
    for await (const c of encryptStream(ragged(rand(2 * AGE_CHUNK_SIZE)), fileKey, header)) full.push(c.length)
    expect(full).toEqual([header.length, 16, 65552, 65552])
  })

  it('decryptStream with the file key gives the same plaintext, and checks the header MAC', async () => {
    const plain = rand(70_000)
    const { file, fileKey } = await encrypt(plain, all[0]!.recipients)
    expect((await collect(decryptStream([file], { fileKey }))).equals(plain)).toBe(true)
    await expect(collect(decryptStream([file], { fileKey: newFileKey() }))).rejects.toMatchObject({ code: 'CORRUPT' })
  })
})
