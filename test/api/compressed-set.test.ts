import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { keygen, openSet, pack } from '../../src/index.js'
import { AUTO_LEVEL, compressSeekable, zstdCodec } from '../../src/compress/zstd-seekable.js'
import { SetReader } from '../../src/read/reader.js'
import { bytes, tmpDir } from '../helpers.js'
import { MiB, logText } from '../fixtures.js'

/**
 * openSet on a set packed with --compress auto (the default): entries say which files are stored compressed and
 * their stored and payload sizes (what the bench sums against per-file zstd -3), and read/stream give the files' own
 * bytes, decompressed through the reader the CLI uses (frames on its worker threads).
 */
const big = logText(3 * MiB + 4321, 31) // four frames
const small = logText(20_000, 32)
const noise = bytes(300_000, 33)
let set: string
let key: string

beforeAll(async () => {
  const src = tmpDir()
  fs.writeFileSync(path.join(src, 'big.log'), big)
  fs.writeFileSync(path.join(src, 'small.log'), small)
  fs.writeFileSync(path.join(src, 'noise.bin'), noise)
  const k = await keygen(path.join(tmpDir(), 'key.txt'))
  key = fs.readFileSync(k.identityFile, 'utf8')
  set = path.join(tmpDir(), 'set')
  await pack(src, { output: set, recipients: [k.recipient], stateDir: tmpDir() })
})

afterEach(() => { vi.restoreAllMocks() })

describe('openSet on a compressed set', () => {
  it('says which files are compressed, with their stored and payload sizes: the payload is the zstd seekable stream at auto\'s level', async () => {
    const zstd = zstdCodec()!
    const s = await openSet(set, { identities: [key] })
    try {
      const e = async (p: string) => (await s.entry(p))!
      for (const [p, plain] of [['big.log', big], ['small.log', small]] as const) {
        const x = await e(p)
        expect(x.compression).toBe('zstd')
        expect(x.size).toBe(plain.length)
        // The same codec at the same level makes the same frames: the stored stream is exactly this one.
        expect(x.payloadSize).toBe(compressSeekable(zstd, plain, AUTO_LEVEL).length)
        // auto's level is zstd's default, 3 (chosen by measurement: bench/README.md), not level 1.
        expect(x.payloadSize).toBe(compressSeekable(zstd, plain, 3).length)
        expect(compressSeekable(zstd, plain, 1).length).not.toBe(x.payloadSize)
        expect(x.payloadSize!).toBeLessThan(plain.length / 2)
        expect(x.storedSize!).toBeGreaterThan(x.payloadSize!)
      }
      const n = await e('noise.bin')
      expect(n.compression).toBeUndefined()
      expect(n.payloadSize).toBe(noise.length)
      // age: header, 16-byte nonce, 16-byte tag per 64 KiB chunk.
      expect(n.storedSize! - n.payloadSize! - 16 - 16 * Math.ceil(noise.length / 65536)).toBeGreaterThan(100)
    } finally { await s.close() }
  })

  it('reads compressed files whole, streamed and by range through the reader\'s worker threads, byte for byte', async () => {
    const streams = vi.spyOn(SetReader.prototype, 'stream')
    const reads = vi.spyOn(SetReader.prototype, 'read')
    const s = await openSet(set, { identities: [key] })
    try {
      expect(Buffer.from(await s.readFile('big.log')).equals(big)).toBe(true)
      expect(Buffer.from(await s.readFile('small.log')).equals(small)).toBe(true)
      expect(Buffer.from(await s.readFile('noise.bin')).equals(noise)).toBe(true)
      const parts: Uint8Array[] = []
      for await (const p of s.stream('big.log')) parts.push(p)
      expect(Buffer.concat(parts).equals(big)).toBe(true)
      // Ranges within a frame, across frame boundaries, at the end, past the end.
      for (const [at, len] of [[0, 4096], [MiB - 100, 200], [MiB - 5, 2 * MiB + 10], [big.length - 10, 4096], [big.length + 5, 10], [12345, 0]]) {
        const got = Buffer.from(await s.read('big.log', at, len))
        expect(got.equals(big.subarray(at, at + len))).toBe(true)
      }
      expect(Buffer.from(await s.read('noise.bin', 70_000, 1000)).equals(noise.subarray(70_000, 71_000))).toBe(true)
      // Compressed files went through the reader (the CLI's: frames decompressed on its workers); noise.bin did not.
      expect(streams.mock.calls.map((c) => c[0].path.toString())).toEqual(['big.log', 'small.log', 'big.log'])
      expect(reads.mock.calls.filter((c) => c[0].compression === 'zstd').length).toBeGreaterThanOrEqual(5)
      expect(reads.mock.calls.filter((c) => c[0].path.toString() === 'noise.bin')).toEqual([])
    } finally { await s.close() }
  })
})
