import crypto from 'node:crypto'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, tmpDir } from '../helpers.js'
import { nativeSealer } from '../../src/crypto/native-seal.js'
import { decryptStream, generateX25519Identity, newAgeFile, parseRecipient, readIdentityFile, x25519IdentityFromString } from '../../src/crypto/index.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'

async function open (file: Uint8Array, identities: any[]): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of decryptStream([file], { identities })) parts.push(p)
  return Buffer.concat(parts)
}

describe.skipIf(forcedOff)('whole files sealed by the native addon', () => {
  it('are age files any reader opens (X25519 and ssh-rsa stanzas), with the SHA-256, key and header length they report', async () => {
    const id = generateX25519Identity()
    const dir = tmpDir()
    const keyFile = path.join(dir, 'rsa.pem')
    expect(spawnSync('openssl', ['genrsa', '-out', keyFile, '2048']).status).toBe(0)
    const pub = spawnSync('ssh-keygen', ['-y', '-f', keyFile]).stdout.toString().trim()
    const recipients = [x25519IdentityFromString(id.identity).recipient(), parseRecipient(pub)]
    const seal = nativeSealer(recipients)!
    expect(seal).not.toBeNull()
    const rsa = await readIdentityFile(keyFile)
    const idFile = path.join(dir, 'id.txt')
    fs.writeFileSync(idFile, id.identity + '\n')
    const jsHeader = newAgeFile(recipients).header.length
    const keys = new Set<string>()
    for (const size of [0, 1, 65535, 65536, 65537, 3 * 65536 + 5, 1024 * 1024 - 2000]) {
      const plain = bytes(size, size + 1)
      const s = seal(plain)
      expect(s.headerLength).toBe(jsHeader)
      expect(Buffer.from(s.digest).equals(crypto.createHash('sha256').update(s.file).digest())).toBe(true)
      expect((await open(s.file, [x25519IdentityFromString(id.identity)])).equals(plain)).toBe(true)
      expect((await open(s.file, rsa)).equals(plain)).toBe(true)
      // The file key it reports opens the payload, as the file table will use it.
      const parts: Uint8Array[] = []
      for await (const p of decryptStream([s.file], { fileKey: Buffer.from(s.fileKey) })) parts.push(p)
      expect(Buffer.concat(parts).equals(plain)).toBe(true)
      // And stock age agrees, with either key.
      const sealed = path.join(dir, `f${size}.age`)
      fs.writeFileSync(sealed, s.file)
      for (const k of [idFile, keyFile]) {
        const r = spawnSync('age', ['-d', '-i', k, sealed], { maxBuffer: 1 << 24 })
        expect(r.status, r.stderr.toString()).toBe(0)
        expect(r.stdout.equals(plain)).toBe(true)
      }
      keys.add(Buffer.from(s.fileKey).toString('hex'))
    }
    expect(keys.size).toBe(7) // a fresh file key every time
  })

  it('declines recipients it does not do (ssh-ed25519): the JavaScript sealer takes those', () => {
    const dir = tmpDir()
    expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'k')]).status).toBe(0)
    const ed = parseRecipient(fs.readFileSync(path.join(dir, 'k.pub'), 'utf8'))
    expect(nativeSealer([ed])).toBeNull()
    expect(nativeSealer([x25519IdentityFromString(generateX25519Identity().identity).recipient(), ed])).toBeNull()
  })
})
