// SeekableAgeReader: random access compared with the plaintext; tampering and truncation are detected.
import { describe, expect, it } from 'vitest'
import { AGE_CHUNK_SIZE, SeekableAgeReader, generateX25519Identity, parseHeader, parseRecipient } from '../../src/crypto/index.js'
import { encrypt, expectPackerError, rand } from './helpers.js'

const C = AGE_CHUNK_SIZE

async function setup (size: number) {
  const plain = rand(size)
  const { file, fileKey } = await encrypt(plain, [parseRecipient(generateX25519Identity().recipient)])
  const headerLength = parseHeader(file).headerLength
  const reads: Array<[number, number]> = []
  const make = (bytes: Buffer, plaintextSize = size): SeekableAgeReader => new SeekableAgeReader({
    readCiphertext: async (offset, length) => { reads.push([offset, length]); return bytes.subarray(offset, offset + length) },
    fileKey, headerLength, plaintextSize,
  })
  return { plain, file, reads, make, headerLength }
}

describe('SeekableAgeReader', () => {
  it('reads at chunk boundaries, the last byte and across chunks, identical to the plaintext', async () => {
    const size = 5 * C + 123
    const { plain, file, make } = await setup(size)
    const r = make(file)
    const ranges: Array<[number, number]> = [
      [0, 1], [0, 10], [C - 1, C], [C - 1, C + 1], [C, C + 1], [C + 1, C + 2], [size - 1, size], [0, size],
      [C - 100, 3 * C + 100], [2 * C, 4 * C], [size - C - 5, size], [size - 10, size + 1000], [123_456, 234_567], [size, size + 5],
    ]
    let checked = 0
    for (const [a, b] of ranges) {
      const got = await r.read(a, b)
      expect(got.equals(plain.subarray(a, Math.min(b, size))), `[${a}, ${b})`).toBe(true)
      checked++
    }
    // Random ranges on a fresh reader (so cache state differs).
    const r2 = make(file)
    for (let i = 0; i < 200; i++) {
      const a = Math.floor(Math.random() * size)
      const b = a + Math.floor(Math.random() * 3 * C)
      expect((await r2.read(a, b)).equals(plain.subarray(a, Math.min(b, size)))).toBe(true)
      checked++
    }
    expect(checked).toBe(ranges.length + 200)
  })

  it('reads the nonce once and only the chunks a range needs; small sequential reads reuse the cached chunk', async () => {
    const size = 10 * C
    const { plain, file, reads, make, headerLength } = await setup(size)
    const r = make(file)
    expect((await r.read(3 * C + 5, 3 * C + 10)).equals(plain.subarray(3 * C + 5, 3 * C + 10))).toBe(true)
    expect(reads).toEqual([[headerLength, 16], [headerLength + 16 + 3 * (C + 16), C + 16]])
    reads.length = 0
    for (let off = 3 * C; off < 4 * C; off += 4096) await r.read(off, off + 4096)
    expect(reads).toEqual([]) // all from the cached chunk 3
    await r.read(5 * C, 7 * C)
    expect(reads).toEqual([[headerLength + 16 + 5 * (C + 16), 2 * (C + 16)]])
  })

  it('an empty file and a file of exactly one full chunk', async () => {
    for (const size of [0, C, 2 * C]) {
      const { plain, file, make } = await setup(size)
      const r = make(file)
      expect((await r.read(0, size + 10)).equals(plain)).toBe(true)
      if (size > 0) expect((await r.read(size - 1, size)).equals(plain.subarray(size - 1))).toBe(true)
    }
  })

  it('a flipped ciphertext byte gives CORRUPT naming the chunk', async () => {
    const size = 3 * C + 50
    const { file, make, headerLength } = await setup(size)
    const bad = Buffer.from(file)
    bad[headerLength + 16 + 2 * (C + 16) + 77]! ^= 0x01
    const r = make(bad)
    expect((await r.read(0, 10)).length).toBe(10) // chunk 0 is fine
    await expectPackerError(r.read(2 * C + 1, 2 * C + 2), 'CORRUPT', /chunk 2/)
    await expectPackerError(make(bad).read(0, size), 'CORRUPT', /chunk 2/)
  })

  it('a truncated file is an error, also when truncated at a chunk boundary', async () => {
    const size = 3 * C + 50
    const { file, make, headerLength } = await setup(size)
    await expectPackerError(make(file.subarray(0, file.length - 1)).read(size - 1, size), 'CORRUPT', /truncated/)
    // Cut after chunk 2 and claim the plaintext ends there: chunk 2 was not written as the last chunk.
    const cut = file.subarray(0, headerLength + 16 + 3 * (C + 16))
    await expectPackerError(make(cut, 3 * C).read(3 * C - 1, 3 * C), 'CORRUPT', /chunk 2/)
    await expectPackerError(make(file.subarray(0, headerLength + 8)).read(0, 1), 'CORRUPT', /nonce/)
  })

  it('a wrong file key gives CORRUPT', async () => {
    const { file, headerLength } = await setup(1000)
    const r = new SeekableAgeReader({ readCiphertext: async (o, l) => file.subarray(o, o + l), fileKey: rand(16), headerLength, plaintextSize: 1000 })
    await expectPackerError(r.read(0, 1), 'CORRUPT')
  })
})
