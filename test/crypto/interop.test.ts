// Interoperability with the reference `age` command (Debian age 1.1.1), both ways.
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  parseHeader, parseRecipient, passphraseIdentity, passphraseRecipient, readIdentityFile, readRecipientsFile, writeX25519IdentityFile,
  generateRsaCertificatePair,
} from '../../src/crypto/index.js'
import { decrypt, encrypt, rand, sh, tempDir, withTty } from './helpers.js'

const dir = tempDir()
const SIZES = [0, 1, 65536, 65537, 3 * 65536 + 5, 2 * 1024 * 1024 + 11]
const p = (f: string): string => join(dir, f)

function ageDecrypt (file: Buffer, identityPath: string): Buffer {
  writeFileSync(p('in.age'), file)
  return sh('age', ['-d', '-i', identityPath, p('in.age')])
}

describe('our files decrypted by age', () => {
  it('age -d -i private_key.pem (openssl req -x509 -nodes certificate pair, PKCS#8 key)', async () => {
    sh('openssl', ['req', '-x509', '-nodes', '-days', '3650', '-newkey', 'rsa:2048', '-keyout', 'private_key.pem', '-out', 'certificate.pem', '-subj', '/CN=interop'], { cwd: dir })
    expect(readFileSync(p('private_key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    const { recipients } = await readRecipientsFile(p('certificate.pem'))
    for (const size of SIZES) {
      const plain = rand(size)
      const { file } = await encrypt(plain, recipients)
      expect(parseHeader(file).stanzas[0]!.type).toBe('ssh-rsa')
      expect(ageDecrypt(file, p('private_key.pem')).equals(plain)).toBe(true)
    }
  })

  it('age -d -i on the pair made by generateRsaCertificatePair', async () => {
    mkdirSync(p('gen'))
    const { privateKey, certificate } = await generateRsaCertificatePair(p('gen'), 'made by packer')
    expect(statSync(privateKey).mode & 0o777).toBe(0o600)
    const { recipients } = await readRecipientsFile(certificate)
    const plain = rand(100_000)
    const { file } = await encrypt(plain, recipients)
    expect(ageDecrypt(file, privateKey).equals(plain)).toBe(true)
    expect(sh('openssl', ['x509', '-in', certificate, '-noout', '-subject']).toString()).toMatch(/CN *= *made by packer/)
  })

  it('age -d -i key.txt (age-keygen identity)', async () => {
    sh('age-keygen', ['-o', p('key.txt')])
    const recipient = sh('age-keygen', ['-y', p('key.txt')]).toString().trim()
    for (const size of SIZES) {
      const plain = rand(size)
      const { file } = await encrypt(plain, [parseRecipient(recipient)])
      expect(ageDecrypt(file, p('key.txt')).equals(plain)).toBe(true)
    }
  })

  it('age -d -i on an identity file written by writeX25519IdentityFile', async () => {
    const recipient = await writeX25519IdentityFile(p('ours.key'))
    expect(sh('age-keygen', ['-y', p('ours.key')]).toString().trim()).toBe(recipient)
    const plain = rand(70_000)
    const { file } = await encrypt(plain, [parseRecipient(recipient)])
    expect(ageDecrypt(file, p('ours.key')).equals(plain)).toBe(true)
  })

  it('age -d -i id_ed25519 / id_rsa (ssh-keygen keys)', async () => {
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', p('id_ed25519')])
    sh('ssh-keygen', ['-q', '-t', 'rsa', '-b', '3072', '-N', '', '-f', p('id_rsa')])
    for (const k of ['id_ed25519', 'id_rsa']) {
      const { recipients } = await readRecipientsFile(p(k + '.pub'))
      const plain = rand(200_000)
      const { file } = await encrypt(plain, recipients)
      expect(ageDecrypt(file, p(k)).equals(plain)).toBe(true)
    }
  })

  it('age -d with a passphrase typed on a pseudo-terminal (script)', async () => {
    const plain = rand(100_000)
    const { file } = await encrypt(plain, [passphraseRecipient('interop passphrase')]) // default work factor 18
    expect(parseHeader(file).stanzas[0]!.args[1]).toBe('18')
    writeFileSync(p('pp.age'), file)
    const r = withTty('age -d -o pp.out pp.age', ['interop passphrase'], dir)
    expect(r.status, r.out).toBe(0)
    expect(readFileSync(p('pp.out')).equals(plain)).toBe(true)
  })
})

describe('age files decrypted by ours', () => {
  it('age -r age1… and age -i key.txt as identity', async () => {
    sh('age-keygen', ['-o', p('k2.txt')])
    const recipient = sh('age-keygen', ['-y', p('k2.txt')]).toString().trim()
    for (const size of SIZES) {
      const plain = rand(size)
      writeFileSync(p('plain'), plain)
      const file = sh('age', ['-r', recipient, p('plain')])
      expect((await decrypt(file, await readIdentityFile(p('k2.txt')))).equals(plain)).toBe(true)
    }
  })

  it('age -R ssh-rsa line made from the certificate; ours decrypts with private_key.pem', async () => {
    // The documented manual route: certificate → SPKI PEM → ssh-rsa line.
    const pub = sh('openssl', ['x509', '-in', p('certificate.pem'), '-pubkey', '-noout'])
    writeFileSync(p('pub.pem'), pub)
    const line = sh('ssh-keygen', ['-i', '-m', 'PKCS8', '-f', p('pub.pem')]).toString()
    writeFileSync(p('cert.ssh'), line)
    const ours = (await readRecipientsFile(p('certificate.pem'))).recipients[0] as unknown as { toString(): string }
    expect(ours.toString()).toBe(line.trim())
    const plain = rand(300_000)
    writeFileSync(p('plain'), plain)
    const file = sh('age', ['-R', p('cert.ssh'), p('plain')])
    expect((await decrypt(file, await readIdentityFile(p('private_key.pem')))).equals(plain)).toBe(true)
  })

  it('age -R id_ed25519.pub / id_rsa.pub; ours decrypts with the OpenSSH private keys', async () => {
    for (const k of ['id_ed25519', 'id_rsa']) {
      const plain = rand(65537)
      writeFileSync(p('plain'), plain)
      const file = sh('age', ['-R', p(k + '.pub'), p('plain')])
      expect((await decrypt(file, await readIdentityFile(p(k)))).equals(plain)).toBe(true)
    }
  })

  it('age -p (passphrase typed on a pseudo-terminal)', async () => {
    const plain = rand(150_000)
    writeFileSync(p('pp.plain'), plain)
    const r = withTty('age -p -o pp2.age pp.plain', ['from age', 'from age'], dir)
    expect(r.status, r.out).toBe(0)
    const file = readFileSync(p('pp2.age'))
    expect(parseHeader(file).stanzas[0]!.type).toBe('scrypt')
    expect((await decrypt(file, [passphraseIdentity('from age')])).equals(plain)).toBe(true)
    await expect(decrypt(file, [passphraseIdentity('wrong')])).rejects.toMatchObject({ code: 'NO_IDENTITY' })
  })
})
