import { describe, expect, it } from 'vitest'
import { bytes } from '../helpers.js'
import { nativeOpenFile } from '../../src/crypto/native-open.js'
import { nativeSealer } from '../../src/crypto/native-seal.js'
import { decryptStream, encryptStream, generateX25519Identity, newAgeFile, x25519IdentityFromString } from '../../src/crypto/index.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'
const recipient = () => x25519IdentityFromString(generateX25519Identity().identity).recipient()

async function jsOpen (file: Uint8Array, fileKey: Buffer): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of decryptStream([file], { fileKey })) parts.push(p)
  return Buffer.concat(parts)
}

/** An age file of `plain` written by the JavaScript sealer, with its file key. */
async function jsSealed (plain: Buffer): Promise<{ file: Buffer, fileKey: Buffer }> {
  const start = newAgeFile([recipient()])
  const parts: Uint8Array[] = []
  for await (const p of encryptStream([plain], start.fileKey, start.header)) parts.push(p)
  return { file: Buffer.concat(parts), fileKey: start.fileKey }
}

describe.skipIf(forcedOff)('whole age files opened by the native addon with their file key', () => {
  it('gives the plaintext of files sealed natively and in JavaScript, at every chunk boundary', async () => {
    const seal = nativeSealer([recipient()])!
    for (const size of [0, 1, 100, 65535, 65536, 65537, 2 * 65536, 3 * 65536 + 5]) {
      const plain = bytes(size, size + 7)
      const native = seal(plain)
      expect(nativeOpenFile(native.fileKey, native.file)?.equals(plain), `native, ${size} B`).toBe(true)
      const js = await jsSealed(plain)
      expect(nativeOpenFile(js.fileKey, js.file)?.equals(plain), `JavaScript, ${size} B`).toBe(true)
    }
  })

  it('gives null for every single-byte change, truncation, trailing byte or wrong key, where decryptStream throws', async () => {
    const plain = bytes(300, 3)
    const { file, fileKey } = await jsSealed(plain)
    const faults: Array<[string, Buffer, Buffer]> = [
      ['wrong key', file, Buffer.alloc(16, 1)],
      ['trailing byte', Buffer.concat([file, Buffer.from([0])]), fileKey],
      ['header only', file.subarray(0, file.indexOf('\n', file.indexOf('\n--- ') + 1) + 1), fileKey],
    ]
    for (let cut = 1; cut < file.length; cut += 7) faults.push([`first ${cut} bytes`, file.subarray(0, cut), fileKey])
    for (let i = 0; i < file.length; i++) {
      const bad = Buffer.from(file)
      bad[i] ^= 0x01
      faults.push([`byte ${i} changed`, bad, fileKey])
    }
    for (const [what, bad, key] of faults) {
      expect(nativeOpenFile(key, bad), what).toBeNull()
      await expect(jsOpen(bad, key), what).rejects.toThrow()
    }
    expect(faults.length).toBeGreaterThan(file.length)
  })

  it('refuses a file whose last full chunk is not marked final (a whole chunk cut off the end)', async () => {
    const plain = bytes(3 * 65536, 9)
    const { file, fileKey } = await jsSealed(plain)
    const cut = file.subarray(0, file.length - (65536 + 16)) // ends on a full chunk sealed as "not last"
    expect(nativeOpenFile(fileKey, cut)).toBeNull()
    await expect(jsOpen(cut, fileKey)).rejects.toThrow(/truncat|final|last/i)
  })
})
