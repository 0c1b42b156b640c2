import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { bytes } from '../helpers.js'
import { loadNativeAddon } from '../../src/native-addon.js'
import { compressBound } from '../../src/compress/zstd-seekable.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'
const ADDON_FILE = fileURLToPath(new URL('../../native/build/Release/packer_native.node', import.meta.url))
const TEXT = Buffer.from('the addon compresses one zstd frame per call, with its content size and checksum\n'.repeat(20_000))

interface WorkerResult { frame: Uint8Array, same: boolean, version: string }

/**
 * Runs `count` workers at once that load the addon, compress `size` bytes of TEXT at `level` and decompress them;
 * resolves to what each saw.
 */
function inWorkers (count: number, level = 3, size = TEXT.length): Promise<WorkerResult[]> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const addon = require(workerData.addon)
    const src = Buffer.alloc(workerData.size)
    for (let at = 0; at < src.length; at += workerData.text.length) src.set(workerData.text.subarray(0, src.length - at), at)
    const dst = Buffer.alloc(workerData.bound)
    const n = addon.zstdCompressFrame(src, workerData.level, dst)
    const back = Buffer.alloc(src.length)
    addon.zstdDecompressFrame(dst.subarray(0, n), back)
    parentPort.postMessage({ frame: dst.subarray(0, n), same: back.equals(src), version: addon.zstdVersion() })`
  const workerData = { addon: ADDON_FILE, text: TEXT, size, level, bound: compressBound(size) }
  return Promise.all(Array.from({ length: count }, () => new Promise<WorkerResult>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData })
    let result: WorkerResult | undefined
    w.once('message', (m: WorkerResult) => { result = m })
    w.once('error', reject)
    w.once('exit', (code) => { if (code === 0 && result !== undefined) resolve(result); else reject(new Error(`worker exited ${code}`)) })
  })))
}

describe.skipIf(forcedOff)('native zstd frames', () => {
  const addon = loadNativeAddon().addon!

  it('uses the system libzstd on Node 20, and node\'s own zstd on Node ≥ 22 (its symbols come first)', () => {
    const cli = /v(\d+\.\d+\.\d+)/.exec(spawnSync('zstd', ['--version'], { encoding: 'utf8' }).stdout)?.[1]
    expect(addon.zstdVersion()).toBe(process.versions.zstd ?? cli)
  })

  it('compresses one frame with its content size and checksum, and decompresses it into a buffer of that size', () => {
    const dst = Buffer.alloc(compressBound(TEXT.length))
    const n = addon.zstdCompressFrame(TEXT, 3, dst)
    expect(n).toBeLessThan(TEXT.length / 50)
    const frame = dst.subarray(0, n)
    expect(frame.readUInt32LE(0)).toBe(0xFD2FB528)
    expect(frame[4] & 0x04).toBe(0x04) // Content_Checksum_flag
    const out = Buffer.alloc(TEXT.length)
    expect(addon.zstdDecompressFrame(frame, out)).toBe(TEXT.length)
    expect(out.equals(TEXT)).toBe(true)
    // Same input, same level: the same frame, whichever call or thread makes it (contexts are reused, not shared).
    expect(Buffer.from(dst.subarray(0, addon.zstdCompressFrame(TEXT, 3, dst))).equals(Buffer.from(frame))).toBe(true)
  })

  it('refuses what is not exactly one frame of the expected size', () => {
    const random = bytes(10_000)
    const dst = Buffer.alloc(compressBound(random.length))
    const frame = Buffer.from(dst.subarray(0, addon.zstdCompressFrame(random, 1, dst)))
    const out = Buffer.alloc(random.length)
    expect(() => addon.zstdDecompressFrame(Buffer.concat([frame, frame]), out)).toThrow('zstd frame: the bytes hold more than one frame')
    expect(() => addon.zstdDecompressFrame(frame, Buffer.alloc(random.length - 1))).toThrow('zstd frame: its content size is not the expected size')
    expect(() => addon.zstdDecompressFrame(frame.subarray(0, frame.length - 1), out)).toThrow(/^zstd frame: /)
    const noSize = spawnSync('zstd', ['-q', '-c'], { input: random }).stdout // from a pipe: no content size
    expect(() => addon.zstdDecompressFrame(noSize, out)).toThrow('zstd frame: no content size in the frame header')
    const flipped = Buffer.from(frame)
    flipped[frame.length - 10] ^= 1 // a raw block's byte: decodes, then fails the frame checksum
    expect(() => addon.zstdDecompressFrame(flipped, out)).toThrow(/^zstd frame: .*checksum/i)
    try { addon.zstdDecompressFrame(flipped, out) } catch (err) { expect((err as NodeJS.ErrnoException).code).toBe('ZSTD') }
  })

  it('checks its arguments', () => {
    const src = Buffer.alloc(1000, 1)
    expect(() => addon.zstdCompressFrame(src, 3, Buffer.alloc(compressBound(1000) - 1))).toThrow(RangeError)
    expect(() => addon.zstdCompressFrame(src, 99, Buffer.alloc(compressBound(1000)))).toThrow('zstdCompressFrame: level must be an integer zstd level')
    expect(() => addon.zstdCompressFrame('text' as unknown as Uint8Array, 3, Buffer.alloc(100))).toThrow('zstdCompressFrame: src must be a Uint8Array')
    expect(() => addon.zstdDecompressFrame(src, new Uint16Array(10) as unknown as Uint8Array)).toThrow('zstdDecompressFrame: dst must be a Uint8Array')
    expect(addon.zstdCompressFrame(src.subarray(10, 20), 3, Buffer.alloc(compressBound(10)))).toBeGreaterThan(0) // views, in place
  })

  it('loads and works in worker threads, two at a time, making the main thread\'s frames', async () => {
    const dst = Buffer.alloc(compressBound(TEXT.length))
    const expected = Buffer.from(dst.subarray(0, addon.zstdCompressFrame(TEXT, 3, dst)))
    for (let round = 0; round < 3; round++) {
      for (const r of await inWorkers(2)) {
        expect(r.same).toBe(true)
        expect(r.version).toBe(addon.zstdVersion())
        expect(Buffer.from(r.frame).equals(expected)).toBe(true)
      }
    }
    // The main thread's context is untouched by the workers' coming and going.
    expect(Buffer.from(dst.subarray(0, addon.zstdCompressFrame(TEXT, 3, dst))).equals(expected)).toBe(true)
  })

  it('frees a worker\'s contexts when it exits (each is ~50 MB here: level 12, 8 MiB frames; kept, 10 workers took 500 MB)', async () => {
    await inWorkers(1, 12, 8 << 20)
    const before = process.memoryUsage().rss
    for (let i = 0; i < 10; i++) expect((await inWorkers(1, 12, 8 << 20))[0].same).toBe(true)
    expect(process.memoryUsage().rss - before).toBeLessThan(150e6)
  })
})
