import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sha256, tmpDir } from '../helpers.js'
import { MiB, logText } from '../fixtures.js'
import { forgeSet, type ForgedLine } from '../forge-set.js'
import { CarSet } from '../../src/read/car-set.js'
import { SetReader } from '../../src/read/reader.js'
import { PackerError } from '../../src/errors.js'
import type { TableEntry } from '../../src/format/table-entry.js'
import { compressSeekable, seekTableSize, zstdCodecs } from '../../src/compress/zstd-seekable.js'

/**
 * The reader (mount, unpack, verify) on files stored compressed, in this process: frames are decompressed on its
 * worker threads (this thread's zstd decompresses only frames of 64 KiB or less), a sequential reader gets the next
 * frames decompressed before it asks, random reads start no read-ahead, and a damaged frame met by read-ahead is
 * an error for the read that wants it, after only right bytes.
 */

const SIZE = 12 * MiB + 777 // 13 frames, the last 777 bytes
const FRAMES = 13
const plain = logText(SIZE, 11)
let set: CarSet
let reader: SetReader
let good: TableEntry
let flipped: TableEntry
/** Frames this thread's zstd decompressed. */
let decompressedHere = 0

beforeAll(async () => {
  const codec = zstdCodecs()[0]!
  const stream = Buffer.from(compressSeekable(codec, plain, 3))
  const table = stream.length - seekTableSize(FRAMES)
  let frame7 = 0
  for (let i = 0; i < 7; i++) frame7 += stream.readUInt32LE(table + 8 + 12 * i)
  const bad = Buffer.from(stream)
  bad[frame7 + 100] ^= 0x20 // inside frame 7's compressed data
  const file = (name: string, data: Buffer): ForgedLine => ({ name, type: 'file', data, size: plain.length, storedSize: data.length, compression: 'zstd' })
  const dir = tmpDir()
  await forgeSet(dir, { chunks: [[{ dir: '' }, file('flipped.log', bad), file('good.log', stream)]] })
  set = await CarSet.open(dir)
  good = (await set.files.lookup(Buffer.from('good.log')))!
  flipped = (await set.files.lookup(Buffer.from('flipped.log')))!
  // Counts the frames decompressed on this thread (the workers load their own zstd).
  const original = codec.decompressFrame
  codec.decompressFrame = (src, dst) => { decompressedHere++; return original(src, dst) }
  // Unpack's cache (32 MiB: 4 MiB of frames, one frame ahead); the mount's default is 128 MiB (four ahead).
  reader = new SetReader(set, { cacheSize: 32 * MiB })
}, 120_000)

afterAll(async () => {
  await reader?.close()
  await set?.close()
})

describe('the reader on a file stored compressed', () => {
  it('streams the whole file byte for byte, decompressing its 1 MiB frames on the workers and reading ahead', async () => {
    const before = reader.frameStats()
    const hereBefore = decompressedHere
    const parts: Buffer[] = []
    for await (const p of reader.stream(good)) parts.push(Buffer.from(p))
    expect(sha256(Buffer.concat(parts))).toBe(sha256(plain))
    const after = reader.frameStats()
    expect(after.onWorkers - before.onWorkers).toBe(FRAMES - 1) // the 12 full frames
    expect(after.here - before.here).toBe(1) // the 777-byte last frame
    expect(decompressedHere - hereBefore).toBe(1)
    // Every frame after the first was asked for ahead of the read that wanted it.
    expect(after.ahead - before.ahead).toBe(FRAMES - 1)
  })

  it('has the next frame decompressed before a sequential reader asks: its read is answered at once', async () => {
    const fresh = new SetReader(set, { cacheSize: 32 * MiB })
    try {
      const h = fresh.open()
      const buf = Buffer.alloc(64 * 1024)
      const first = fresh.read(good, h, buf, buf.length, 5 * MiB) // random: no read-ahead
      expect(first).toBeInstanceOf(Promise)
      expect(await first).toBe(buf.length)
      expect(buf.equals(plain.subarray(5 * MiB, 5 * MiB + buf.length))).toBe(true)
      expect(fresh.frameStats().ahead).toBe(0)
      for (let at = 5 * MiB + buf.length; at < 6 * MiB; at += buf.length) {
        expect(await fresh.read(good, h, buf, buf.length, at)).toBe(buf.length) // sequential: frame 6 goes ahead
      }
      expect(fresh.frameStats().ahead).toBe(1)
      for (let i = 0; fresh.frameStats().aheadReady < 1; i++) {
        expect(i, 'frame 6 decompressed ahead within 30 s').toBeLessThan(600)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const n = fresh.read(good, h, buf, buf.length, 6 * MiB)
      expect(n).toBe(buf.length) // a number, not a promise: frame 6 was in memory
      expect(buf.equals(plain.subarray(6 * MiB, 6 * MiB + buf.length))).toBe(true)
      fresh.release(h)
    } finally {
      await fresh.close()
    }
  })

  it('serves random 4 KiB reads, each on its own handle, with no read-ahead', async () => {
    const before = reader.frameStats().ahead
    const buf = Buffer.alloc(4096)
    for (let k = 0; k < 200; k++) {
      const pos = 1 + Math.floor(Math.random() * (SIZE - 4097))
      const h = reader.open()
      expect(await reader.read(good, h, buf, buf.length, pos)).toBe(buf.length)
      reader.release(h)
      expect(buf.equals(plain.subarray(pos, pos + 4096)), `at ${pos}`).toBe(true)
    }
    expect(reader.frameStats().ahead).toBe(before)
  })

  it('a damaged frame read ahead is the error of the read that wants it, after only right bytes; later frames are served', async () => {
    const got: Buffer[] = []
    let error: unknown
    try {
      for await (const p of reader.stream(flipped)) got.push(Buffer.from(p))
    } catch (err) { error = err }
    expect(error).toBeInstanceOf(PackerError)
    expect((error as PackerError).code).toBe('CORRUPT')
    expect((error as PackerError).message).toMatch(/^flipped\.log: frame 7 of its zstd stream does not decompress \(.+\); the set is damaged$/)
    const bytes = Buffer.concat(got)
    expect(bytes.length).toBe(7 * MiB)
    expect(bytes.equals(plain.subarray(0, 7 * MiB))).toBe(true)
    const buf = Buffer.alloc(MiB)
    const h = reader.open()
    expect(await reader.read(flipped, h, buf, MiB, 8 * MiB)).toBe(MiB)
    expect(buf.equals(plain.subarray(8 * MiB, 9 * MiB))).toBe(true)
    await expect(reader.read(flipped, h, buf, 10, 7 * MiB + 5)).rejects.toThrow('flipped.log: frame 7 of its zstd stream does not decompress')
    reader.release(h)
  })
})

describe('seek tables the reader keeps', () => {
  it('at most 4,096 of them, whatever the number of compressed files read', async () => {
    const codec = zstdCodecs()[0]!
    const N = 4200
    const names = Array.from({ length: N }, (_, i) => `f${String(i).padStart(5, '0')}.log`)
    const plainOf = (i: number): Buffer => Buffer.from(`file ${i}\n`.repeat(20 + (i % 7)))
    const lines: ForgedLine[] = names.map((name, i) => {
      const stream = Buffer.from(compressSeekable(codec, plainOf(i), 3))
      return { name, type: 'file', data: stream, size: plainOf(i).length, storedSize: stream.length, compression: 'zstd' }
    })
    const dir = tmpDir()
    await forgeSet(dir, { chunks: [[{ dir: '' }, ...lines.slice(0, N / 2)], [{ dir: '' }, ...lines.slice(N / 2)]] })
    const many = await CarSet.open(dir)
    const r = new SetReader(many, { cacheSize: 32 * MiB })
    try {
      const buf = Buffer.alloc(4096)
      for (let i = 0; i < N; i++) {
        const e = (await many.files.lookup(Buffer.from(names[i]!)))!
        const h = r.open()
        const n = await r.read(e, h, buf, buf.length, 0)
        r.release(h)
        expect(buf.subarray(0, n).equals(plainOf(i)), names[i]).toBe(true)
      }
      expect(r.frameStats().tables).toBe(4096)
    } finally {
      await r.close()
      await many.close()
    }
  }, 120_000)
})
