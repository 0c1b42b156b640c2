import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { tmpDir } from '../helpers.js'
import { encryptStream, generateX25519Identity, newAgeFile, parseRecipient } from '../../src/crypto/index.js'
import { nativeAddon } from '../../src/native-addon.js'
import { CHUNK, NONCE } from '../../src/read/chunks.js'
import { runJob, type LeafJob, type LeafResult } from '../../src/read/worker.js'

/**
 * A leaf that is a whole small age file (header, nonce, every chunk) is opened in one native call when the addon is
 * there: the same plaintext as chunk by chunk, and a chunk that fails authentication is still named.
 */

async function sealed (plain: Buffer): Promise<{ file: Buffer, fileKey: Buffer, headerLength: number }> {
  const { fileKey, header } = newAgeFile([parseRecipient(generateX25519Identity().recipient)])
  const parts: Uint8Array[] = []
  for await (const p of encryptStream([plain], fileKey, header)) parts.push(p)
  return { file: Buffer.concat(parts), fileKey, headerLength: header.length }
}

/** Runs the leaf job for a whole age file stored in a file of its own (pread, hash-checked), as the reader would. */
async function openLeaf (file: Buffer, fileKey: Buffer, headerLength: number, size: number): Promise<{ results: LeafResult[], out: Buffer }> {
  const p = path.join(tmpDir(), 'leaf')
  fs.writeFileSync(p, file)
  const fd = fs.openSync(p, 'r')
  const chunks = size === 0 ? 1 : Math.ceil(size / CHUNK)
  const job: LeafJob = {
    id: 1,
    slot: 0,
    at: { fd, offset: 0 },
    length: file.length,
    digest: createHash('sha256').update(file).digest(),
    dec: { key: null, fileKey, nonceAt: headerLength, first: 0, count: chunks, firstAt: headerLength + NONCE, lastIndex: chunks - 1, lastPlain: size - (chunks - 1) * CHUNK },
  }
  const out = Buffer.alloc(17 * CHUNK)
  const results: LeafResult[] = []
  try {
    await runJob(job, out, (r) => results.push(r))
  } finally { fs.closeSync(fd) }
  return { results, out }
}

describe('a leaf that is a whole age file', () => {
  it('opens to the file\'s plaintext, empty, small and several chunks', async () => {
    expect(nativeAddon()).not.toBeNull()
    for (const size of [0, 1, 12_000, CHUNK, CHUNK + 1, 3 * CHUNK + 5]) {
      const plain = randomBytes(size)
      const { file, fileKey, headerLength } = await sealed(plain)
      const { results, out } = await openLeaf(file, fileKey, headerLength, size)
      expect(results, `size ${size}`).toEqual([{ id: 1, ok: true, dataLength: size, count: Math.max(1, Math.ceil(size / CHUNK)) }])
      expect(out.subarray(0, size).equals(plain), `size ${size}`).toBe(true)
    }
  })

  it('names the chunk that fails authentication (its hash matching: the block is what the set says, its contents forged)', async () => {
    const size = 2 * CHUNK + 100
    const { file, fileKey, headerLength } = await sealed(randomBytes(size))
    const forged = Buffer.from(file)
    forged[headerLength + NONCE + CHUNK + 16 + 7] ^= 1 // a byte of chunk 1
    const { results } = await openLeaf(forged, fileKey, headerLength, size)
    expect(results).toEqual([{ id: 1, ok: false, kind: 'auth', chunk: 1, message: 'age chunk 1 failed authentication' }])
  })
})
