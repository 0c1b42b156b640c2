// Bounded lookahead: encryptStream and decryptStream never pull more than about two chunks (plus one input piece)
// ahead of what they have emitted, whatever the input size.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { AGE_CHUNK_SIZE, decryptStream, encodeHeader, encryptStream, generateX25519Identity, newFileKey, parseRecipient } from '../../src/crypto/index.js'

const MiB = 1024 * 1024

describe('bounded memory', () => {
  it('encrypt then decrypt 192 MiB in a pipeline; each stage stays within 2 chunks + 1 piece of its input', async () => {
    const total = 192 * MiB
    const pieceSize = 1_000_003 // deliberately unaligned
    const piece = randomBytes(pieceSize)
    let produced = 0
    let encryptedOut = 0
    let plainOut = 0
    let maxEncLag = 0
    let maxDecLag = 0
    async function * source (): AsyncGenerator<Uint8Array> {
      for (let n = 0; n < total; n += pieceSize) {
        const len = Math.min(pieceSize, total - n)
        produced += len
        yield piece.subarray(0, len)
      }
    }
    const fileKey = newFileKey()
    const header = encodeHeader(fileKey, [parseRecipient(generateX25519Identity().recipient)])
    let yields = 0
    async function * encrypted (): AsyncGenerator<Uint8Array> {
      for await (const c of encryptStream(source(), fileKey, header)) {
        encryptedOut += c.length
        yields++
        if (yields > 2) {
          // Plaintext emitted so far: ciphertext minus header, nonce and one tag per chunk.
          const plainEmitted = encryptedOut - header.length - 16 - (yields - 2) * 16
          maxEncLag = Math.max(maxEncLag, produced - plainEmitted)
        }
        yield c
      }
    }
    for await (const p of decryptStream(encrypted(), { fileKey })) {
      plainOut += p.length
      const chunksDone = Math.ceil(plainOut / AGE_CHUNK_SIZE)
      maxDecLag = Math.max(maxDecLag, encryptedOut - header.length - 16 - chunksDone * 16 - plainOut)
    }
    expect(plainOut).toBe(total)
    expect(maxEncLag).toBeGreaterThan(0)
    expect(maxEncLag).toBeLessThanOrEqual(AGE_CHUNK_SIZE + pieceSize)
    // The decryptor's input arrives in 65,552-byte pieces: it holds at most 2 of them beyond what it emitted.
    expect(maxDecLag).toBeLessThanOrEqual(2 * (AGE_CHUNK_SIZE + 16))
  })
})
