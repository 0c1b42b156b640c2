import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { ROOT, bytes, tmpDir } from '../helpers.js'
import { PackerError } from '../../src/errors.js'
import {
  AUTO_LEVEL, FRAME_SIZE, MAX_FRAME_SIZE, SEEK_TABLE_FOOTER_SIZE, SeekTableWriter, compressBound, compressFrame, compressSeekable,
  decompressFrame, frameEntry, parseSeekTable, seekTableLength, seekTableSize, worthCompressing, zstdCodecs, type SeekTable, type ZstdCodec,
} from '../../src/compress/zstd-seekable.js'

const codecs = zstdCodecs()
const NAME = 'docs/f.txt'

/** Compressible bytes: numbered lines of words, like a log or a CSV. */
function text (n: number, seed = 1): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'packer', 'frame', 'seek', 'table', 'zstd', 'age']
  const lines: string[] = []
  let size = 0
  for (let i = 0; size < n; i++) {
    const line = `${i * seed},${words[(i * 7 + seed) % 10]},${words[(i * 3) % 10]},${(i * 2654435761) % 100000}\n`
    lines.push(line)
    size += line.length
  }
  return Buffer.from(lines.join('')).subarray(0, n)
}

/** Decompresses every frame of a stream through the reader's own path: seek table, then frame by frame. */
function readAll (zstd: ZstdCodec, stream: Uint8Array, fileSize?: number): Buffer {
  const table = parseSeekTable(stream, stream.length, NAME, fileSize)
  const parts: Buffer[] = []
  const dst = new Uint8Array(FRAME_SIZE)
  for (let i = 0; i < table.frames; i++) {
    const at = table.frame(i)
    const frame = stream.subarray(at.compressedOffset, at.compressedOffset + at.compressedSize)
    parts.push(Buffer.from(decompressFrame(zstd, at, frame, dst, NAME)))
  }
  return Buffer.concat(parts)
}

/** The zstd CLI's view of a stream in a file: `zstd -d` output and whether `zstd -t` passes. */
function zstdCli (stream: Uint8Array): { decoded: Buffer, tested: number | null } {
  const file = path.join(tmpDir(), 's.zst')
  fs.writeFileSync(file, stream)
  const d = spawnSync('zstd', ['-q', '-d', '-c', file], { maxBuffer: 64 << 20 })
  expect(d.status, d.stderr.toString()).toBe(0)
  return { decoded: d.stdout, tested: spawnSync('zstd', ['-q', '-t', file]).status }
}

/** Expects `fn` to throw a one-line PackerError of `code` whose message is `message` (or matches it). */
function expectRefused (fn: () => unknown, code: string, message: string | RegExp, errorClass: typeof PackerError = PackerError): void {
  let err: unknown
  try { fn() } catch (e) { err = e }
  expect(err).toBeInstanceOf(errorClass)
  const e = err as PackerError
  expect(e.code).toBe(code)
  expect(e.message).not.toContain('\n')
  if (typeof message === 'string') expect(e.message).toBe(message)
  else expect(e.message).toMatch(message)
}

describe('zstd codecs', () => {
  it.skipIf(process.env.PACKER_NO_NATIVE === '1')('the native addon\'s zstd comes first; Node ≥ 22.15 also has node:zlib\'s', () => {
    expect(codecs[0].name).toMatch(/^native addon, zstd 1\.\d+\.\d+$/)
    expect(codecs.map((c) => c.name.split(',')[0])).toEqual(process.versions.zstd !== undefined ? ['native addon', 'node:zlib'] : ['native addon'])
  })

  it('without the addon (PACKER_NO_NATIVE=1): node:zlib\'s zstd where Node has it, else one line saying what to do', async () => {
    vi.resetModules()
    const saved = process.env.PACKER_NO_NATIVE
    process.env.PACKER_NO_NATIVE = '1'
    try {
      const mod = await import('../../src/compress/zstd-seekable.js')
      const errors = await import('../../src/errors.js') // the module's own PackerError, after resetModules
      if (process.versions.zstd !== undefined) {
        expect(mod.zstdCodec()?.name).toBe(`node:zlib, zstd ${process.versions.zstd}`)
        expect(mod.zstdMissingReason()).toBe('')
      } else {
        expect(mod.zstdCodec()).toBeNull()
        const reason = `packer's native addon is not available (disabled by PACKER_NO_NATIVE=1) and Node ${process.versions.node} has no zstd in node:zlib (Node 22.15 and later have)`
        expect(mod.zstdMissingReason()).toBe(reason)
        expectRefused(() => mod.requireZstdCodec('docs/f.txt is compressed with zstd'), 'FORMAT',
          `docs/f.txt is compressed with zstd, and this packer has no zstd: ${reason}; install Debian's libzstd-dev and rebuild the addon (node ${path.join(ROOT, 'native/build.mjs')}), or use Node 22.15 or later`, errors.PackerError)
      }
    } finally {
      if (saved === undefined) delete process.env.PACKER_NO_NATIVE
      else process.env.PACKER_NO_NATIVE = saved
      vi.resetModules()
    }
  })
})

describe.each(codecs.map((c) => [c.name, c] as const))('seekable streams with %s', (_, zstd) => {
  const sizes = [0, 1, FRAME_SIZE - 1, FRAME_SIZE, FRAME_SIZE + 1, 3 * FRAME_SIZE + 17]
  it.each(sizes)('round trip of %i random and compressible bytes, through packer\'s reader and `zstd -d`, byte for byte', (size) => {
    for (const data of [bytes(size, size), text(size, 3)]) {
      const stream = compressSeekable(zstd, data, 3)
      const frames = Math.ceil(size / FRAME_SIZE)
      const table = parseSeekTable(stream, stream.length, NAME, size)
      expect(table.frames).toBe(frames)
      expect(table.fileSize).toBe(size)
      expect(readAll(zstd, stream, size).equals(data)).toBe(true)
      const cli = zstdCli(stream)
      expect(cli.decoded.equals(data)).toBe(true)
      expect(cli.tested).toBe(0)
    }
  })

  it('compresses text, and stores random bytes in barely more than their size', () => {
    const t = text(FRAME_SIZE)
    expect(compressSeekable(zstd, t, 3).length).toBeLessThan(t.length / 3)
    const r = bytes(FRAME_SIZE)
    const stored = compressSeekable(zstd, r, 3).length
    expect(stored).toBeGreaterThan(r.length)
    expect(stored).toBeLessThanOrEqual(compressBound(r.length) + seekTableSize(1))
  })

  it('the seek table follows the spec: hand-decoded, its frames are the zstd frames and its checksums are XXH64s (xxhsum)', () => {
    const data = text(10_000, 5)
    const frameSize = 4096
    const stream = compressSeekable(zstd, data, 3, frameSize)
    const dir = tmpDir()
    const u32 = (at: number): number => stream.readUInt32LE(at)
    // Footer: Number_Of_Frames, Seek_Table_Descriptor (checksum flag only), Seekable_Magic_Number — the last bytes.
    const end = stream.length
    expect(u32(end - 4)).toBe(0x8F92EAB1)
    expect(stream[end - 5]).toBe(0x80)
    expect(u32(end - 9)).toBe(3)
    // A skippable frame (magic 0x184D2A5E) of 3 entries of 12 bytes plus the footer.
    const tableStart = end - (8 + 3 * 12 + 9)
    expect(u32(tableStart)).toBe(0x184D2A5E)
    expect(u32(tableStart + 4)).toBe(3 * 12 + 9)
    let offset = 0
    for (let i = 0; i < 3; i++) {
      const [compressed, decompressed, checksum] = [0, 4, 8].map((k) => u32(tableStart + 8 + i * 12 + k))
      const plain = data.subarray(i * frameSize, (i + 1) * frameSize)
      expect(decompressed).toBe(plain.length)
      // The entry's compressed size is exactly one zstd frame, which `zstd -d` turns into this frame's bytes.
      const frameFile = path.join(dir, `frame${i}.zst`)
      fs.writeFileSync(frameFile, stream.subarray(offset, offset + compressed))
      const listed = spawnSync('zstd', ['-lv', frameFile], { encoding: 'utf8' }).stdout
      expect(listed).toMatch(/# Zstandard Frames: 1\n/)
      expect(listed).toMatch(/Check: XXH64/)
      expect(spawnSync('zstd', ['-q', '-d', '-c', frameFile]).stdout.equals(plain)).toBe(true)
      // The checksum: the low 32 bits of XXH64 of the frame's plaintext, little-endian.
      const plainFile = path.join(dir, `plain${i}`)
      fs.writeFileSync(plainFile, plain)
      const xxh64 = spawnSync('xxhsum', ['-H1', plainFile], { encoding: 'utf8' }).stdout.split(/\s/)[0]
      expect(xxh64).toMatch(/^[0-9a-f]{16}$/)
      expect(checksum).toBe(parseInt(xxh64.slice(8), 16))
      offset += compressed
    }
    expect(offset).toBe(tableStart)
    const whole = path.join(dir, 'whole.zst')
    fs.writeFileSync(whole, stream)
    const listed = spawnSync('zstd', ['-lv', whole], { encoding: 'utf8' }).stdout
    expect(listed).toMatch(/# Zstandard Frames: 3\n# Skippable Frames: 1\n/)
    expect(listed).toMatch(/Decompressed Size: .* \(10000 B\)/)
  })

  it('frames made one by one, in any order, and a SeekTableWriter make the same stream as compressSeekable', () => {
    const data = text(2 * FRAME_SIZE + 100, 9)
    const pieces = [0, 1, 2].map((i) => data.subarray(i * FRAME_SIZE, (i + 1) * FRAME_SIZE))
    const dst = new Uint8Array(compressBound(FRAME_SIZE))
    const frames = [2, 1, 0].map((i) => Buffer.from(compressFrame(zstd, pieces[i], 3, dst))).reverse()
    const writer = new SeekTableWriter()
    frames.forEach((f, i) => writer.add(frameEntry(f, pieces[i].length)))
    const stream = Buffer.concat([...frames, writer.finish()])
    expect(writer.frames).toBe(3)
    expect(writer.decompressedSize).toBe(data.length)
    expect(writer.streamSize).toBe(stream.length)
    expect(stream.equals(compressSeekable(zstd, data, 3))).toBe(true)
    expect(() => compressFrame(zstd, new Uint8Array(0), 3, dst)).toThrow(RangeError)
    expect(() => compressFrame(zstd, new Uint8Array(MAX_FRAME_SIZE + 1), 3, dst)).toThrow(RangeError)
  })

  it('maps plaintext ranges to frames and frames to stream ranges; reads the table from the stream\'s tail alone', () => {
    const data = text(3 * FRAME_SIZE + 10, 2)
    const stream = compressSeekable(zstd, data, 1)
    const footer = stream.subarray(stream.length - SEEK_TABLE_FOOTER_SIZE)
    const length = seekTableLength(footer, stream.length, NAME)
    expect(length).toBe(seekTableSize(4))
    const table = parseSeekTable(stream.subarray(stream.length - length), stream.length, NAME)
    expect(table.framesFor(0, 1)).toEqual([0, 0])
    expect(table.framesFor(FRAME_SIZE - 4096, FRAME_SIZE)).toEqual([0, 0])
    expect(table.framesFor(FRAME_SIZE - 1, FRAME_SIZE + 1)).toEqual([0, 1])
    expect(table.framesFor(FRAME_SIZE, FRAME_SIZE + 4096)).toEqual([1, 1])
    expect(table.framesFor(5, data.length)).toEqual([0, 3])
    expect(table.framesFor(data.length - 1, data.length)).toEqual([3, 3])
    for (const [start, end] of [[-1, 1], [0, 0], [10, 5], [0, data.length + 1]]) expect(() => table.framesFor(start, end)).toThrow(RangeError)
    expect(() => table.frame(4)).toThrow(RangeError)
    // A 4 KiB read in the middle: one frame, read from the stream range the table gives.
    const [first] = table.framesFor(2 * FRAME_SIZE + 5000, 2 * FRAME_SIZE + 9096)
    const at = table.frame(first)
    expect(at.decompressedOffset).toBe(2 * FRAME_SIZE)
    const plain = decompressFrame(zstd, at, stream.subarray(at.compressedOffset, at.compressedOffset + at.compressedSize), new Uint8Array(FRAME_SIZE), NAME)
    expect(Buffer.from(plain.subarray(5000, 9096)).equals(data.subarray(2 * FRAME_SIZE + 5000, 2 * FRAME_SIZE + 9096))).toBe(true)
  })

  describe('a damaged seek table is refused with one line', () => {
    const data = text(10_000, 4)
    const good = compressSeekable(zstd, data, 3, 4096)
    const tableStart = good.length - seekTableSize(3)
    const entry = (i: number, k: number): number => tableStart + 8 + i * 12 + k
    /** The stream with `change` applied to a copy. */
    const damaged = (change: (b: Buffer) => void): Buffer => { const b = Buffer.from(good); change(b); return b }
    const parse = (b: Uint8Array, fileSize?: number): SeekTable => parseSeekTable(b, b.length, NAME, fileSize)

    it('the intact stream parses', () => {
      expect(parse(good, data.length).frames).toBe(3)
    })
    it.each([
      ['too short a stream', () => parse(good.subarray(good.length - 16)), 'FORMAT',
        `${NAME}: 16 bytes are too few for a zstd seekable stream; the set is damaged or was not written by packer`],
      ['seekable magic', () => parse(damaged((b) => { b[b.length - 1] ^= 1 })), 'FORMAT',
        `${NAME}: no zstd seek table at the end of its stored stream; the set is damaged or was not written by packer`],
      ['reserved descriptor bits', () => parse(damaged((b) => { b[b.length - 5] |= 0x04 })), 'FORMAT',
        `${NAME}: its zstd seek table has reserved bits set (descriptor 0x84); the set is damaged or was not written by packer`],
      ['no checksum flag', () => parse(damaged((b) => { b[b.length - 5] = 0 })), 'FORMAT',
        `${NAME}: its zstd seek table has no frame checksums; the set is damaged or was not written by packer`],
      ['frame count beyond the stream', () => parse(damaged((b) => { b.writeUInt32LE(1000, b.length - 9) })), 'CORRUPT',
        `${NAME}: its zstd seek table lists 1000 frames, more than a ${good.length}-byte stream holds; the set is damaged`],
      ['frame count too small', () => parse(damaged((b) => { b.writeUInt32LE(2, b.length - 9) })), 'FORMAT',
        `${NAME}: its zstd seek table does not start a skippable frame; the set is damaged or was not written by packer`],
      ['skippable magic', () => parse(damaged((b) => { b[tableStart] ^= 0x10 })), 'FORMAT',
        `${NAME}: its zstd seek table does not start a skippable frame; the set is damaged or was not written by packer`],
      ['skippable frame size', () => parse(damaged((b) => { b.writeUInt32LE(44, tableStart + 4) })), 'CORRUPT',
        `${NAME}: its zstd seek table frame says 44 bytes, its frame count needs 45; the set is damaged`],
      ['an empty frame', () => parse(damaged((b) => { b.writeUInt32LE(0, entry(1, 4)) })), 'CORRUPT',
        `${NAME}: frame 1 of its zstd stream holds 0 bytes (1 to ${MAX_FRAME_SIZE} expected); the set is damaged`],
      ['a frame larger than readers take', () => parse(damaged((b) => { b.writeUInt32LE(MAX_FRAME_SIZE + 1, entry(2, 4)) })), 'CORRUPT',
        `${NAME}: frame 2 of its zstd stream holds ${MAX_FRAME_SIZE + 1} bytes (1 to ${MAX_FRAME_SIZE} expected); the set is damaged`],
      ['a compressed size of 0', () => parse(damaged((b) => { b.writeUInt32LE(0, entry(0, 0)) })), 'CORRUPT',
        `${NAME}: frame 0 of its zstd stream takes 0 bytes for 4096, more than zstd ever needs; the set is damaged`],
      ['a compressed size beyond zstd\'s bound', () => parse(damaged((b) => { b.writeUInt32LE(5000, entry(0, 0)) })), 'CORRUPT',
        `${NAME}: frame 0 of its zstd stream takes 5000 bytes for 4096, more than zstd ever needs; the set is damaged`],
      ['compressed sizes that miss the stream\'s length', () => parse(damaged((b) => { b.writeUInt32LE(b.readUInt32LE(entry(1, 0)) + 1, entry(1, 0)) })), 'CORRUPT',
        `${NAME}: its zstd frames and seek table take ${good.length + 1} bytes, the stream has ${good.length}; the set is damaged`],
      ['a stream shorter than its frames', () => parseSeekTable(good.subarray(1), good.length - 1, NAME), 'CORRUPT',
        `${NAME}: its zstd frames and seek table take ${good.length} bytes, the stream has ${good.length - 1}; the set is damaged`],
      ['decompressed sizes that miss the file\'s size', () => parse(good, data.length + 1), 'CORRUPT',
        `${NAME}: its zstd frames hold ${data.length} bytes, the file table says ${data.length + 1}; the set is damaged`],
    ])('%s', (_, fn, code, message) => expectRefused(fn, code, message))

    it('unused descriptor bits are not interpreted (the spec reserves them for compatible changes)', () => {
      expect(parse(damaged((b) => { b[b.length - 5] |= 0x03 }), data.length).frames).toBe(3)
    })
  })

  describe('a damaged frame is refused, never turned into wrong bytes', () => {
    const random = bytes(3 * 4096, 7) // raw zstd blocks: a changed byte still decodes, only the checksum can tell
    const good = compressSeekable(zstd, random, 3, 4096)
    const table = parseSeekTable(good, good.length, NAME, random.length)
    const at = table.frame(1)
    const frameOf = (b: Uint8Array): Uint8Array => b.subarray(at.compressedOffset, at.compressedOffset + at.compressedSize)
    const dst = new Uint8Array(4096)

    it('the intact frame decompresses to its bytes', () => {
      expect(Buffer.from(decompressFrame(zstd, at, frameOf(good), dst, NAME)).equals(random.subarray(4096, 8192))).toBe(true)
    })
    it('a changed byte of its content: zstd\'s checksum of the frame refuses it', () => {
      const b = Buffer.from(good)
      b[at.compressedOffset + 100] ^= 0x55
      expectRefused(() => decompressFrame(zstd, at, frameOf(b), dst, NAME), 'CORRUPT',
        /^docs\/f\.txt: frame 1 of its zstd stream does not decompress \(.*checksum.*\); the set is damaged$/i)
    })
    it('a seek table checksum that is not the frame\'s', () => {
      expectRefused(() => decompressFrame(zstd, { ...at, checksum: (at.checksum ^ 1) >>> 0 }, frameOf(good), dst, NAME), 'CORRUPT',
        `${NAME}: frame 1 of its zstd stream does not have the checksum its seek table gives; the set is damaged`)
    })
    it('a frame checksum changed along with its seek table entry: the plaintext does not match it', () => {
      const b = Buffer.from(good)
      const end = at.compressedOffset + at.compressedSize
      b[end - 1] ^= 0x80
      expectRefused(() => decompressFrame(zstd, { ...at, checksum: b.readUInt32LE(end - 4) }, frameOf(b), dst, NAME), 'CORRUPT',
        /^docs\/f\.txt: frame 1 of its zstd stream does not decompress \(.*checksum.*\); the set is damaged$/i)
    })
    it('a frame whose content size is not its seek table\'s', () => {
      expectRefused(() => decompressFrame(zstd, { ...at, decompressedSize: 4095 }, frameOf(good), dst, NAME), 'CORRUPT',
        `${NAME}: frame 1 of its zstd stream holds 4096 bytes, its seek table says 4095; the set is damaged`)
    })
    it('frames without a checksum or without a content size (zstd --no-check; zstd reading a pipe)', () => {
      const plain = path.join(tmpDir(), 'plain')
      fs.writeFileSync(plain, random.subarray(4096, 8192))
      const noCheck = spawnSync('zstd', ['-q', '-c', '--no-check', plain]).stdout
      const noSize = spawnSync('bash', ['-c', `cat ${plain} | zstd -q -c --check`]).stdout
      for (const frame of [noCheck, noSize]) {
        const here = { ...at, compressedSize: frame.length, checksum: frame.readUInt32LE(frame.length - 4) }
        expectRefused(() => decompressFrame(zstd, here, frame, dst, NAME), 'CORRUPT',
          `${NAME}: frame 1 of its zstd stream is not a zstd frame with its content size and checksum; the set is damaged`)
      }
    })
    it('bytes that are not a zstd frame at all', () => {
      expectRefused(() => decompressFrame(zstd, at, Buffer.alloc(at.compressedSize, 1), dst, NAME), 'CORRUPT',
        `${NAME}: frame 1 of its zstd stream is not a zstd frame with its content size and checksum; the set is damaged`)
    })
  })

  describe('--compress auto: the first MiB must shrink by at least 10 %', () => {
    const dst = new Uint8Array(compressBound(FRAME_SIZE))
    it('random bytes (media, archives) are left alone', () => {
      expect(worthCompressing(zstd, bytes(FRAME_SIZE, 3), dst)).toBeNull()
      expect(worthCompressing(zstd, bytes(100, 3), dst)).toBeNull()
      expect(worthCompressing(zstd, new Uint8Array(0), dst)).toBeNull()
    })
    it('text is compressed, and the sample\'s frame is the file\'s first frame, at the auto level', () => {
      const file = text(3 * FRAME_SIZE, 8)
      const frame = worthCompressing(zstd, file.subarray(0, FRAME_SIZE), dst)
      expect(frame).not.toBeNull()
      const stream = compressSeekable(zstd, file, AUTO_LEVEL)
      const table = parseSeekTable(stream, stream.length, NAME, file.length)
      expect(Buffer.from(frame!).equals(stream.subarray(0, table.frame(0).compressedSize))).toBe(true)
    })
    it('a small text file is compressed when its frame and seek table save 10 %', () => {
      expect(worthCompressing(zstd, text(4000), dst)).not.toBeNull()
      expect(worthCompressing(zstd, Buffer.from('abc'), dst)).toBeNull()
    })
    it('data that shrinks by less than 10 % is left alone: half random, half zeros shrinks ~50 %, 95 % random ~5 %', () => {
      // 95 %: 50,000 zero bytes of 1 MiB
      const half = Buffer.concat([bytes(FRAME_SIZE / 2, 4), Buffer.alloc(FRAME_SIZE / 2)])
      expect(worthCompressing(zstd, half, dst)).not.toBeNull()
      const mostly = Buffer.concat([bytes(FRAME_SIZE - 50_000, 4), Buffer.alloc(50_000)])
      expect(worthCompressing(zstd, mostly, dst)).toBeNull()
    })
  })
})
