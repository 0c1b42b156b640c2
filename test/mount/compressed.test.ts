import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, carFiles, packerOk, run, sha256, tmpDir } from '../helpers.js'
import { MiB, logText } from '../fixtures.js'
import { forgeSet, type ForgedLine } from '../forge-set.js'
import { RANDOM_READS, sh, shOk, startMount, type RunningMount } from './mount-helpers.js'

/**
 * Files stored compressed (zstd seekable streams), read through a real mount in a child process: sizes are the
 * files' own, whole files and random ranges are the source's bytes, and a damaged or forged frame gives EIO, never
 * wrong bytes.
 */

const SMALL = 300_000 // one frame
const MULTI = 6 * MiB + 777 // seven frames, the last short

describe('a mounted encrypted set whose files are stored compressed', () => {
  let src: string
  let m: RunningMount
  const files = { small: 'small.log', multi: 'logs/multi.log', random: 'random.bin' }

  beforeAll(async () => {
    src = tmpDir()
    fs.mkdirSync(path.join(src, 'logs'))
    fs.writeFileSync(path.join(src, files.small), logText(SMALL, 3))
    fs.writeFileSync(path.join(src, files.multi), logText(MULTI, 4))
    fs.writeFileSync(path.join(src, files.random), bytes(MiB + 5, 5)) // auto stores it as it is
    const work = tmpDir()
    const key = path.join(work, 'key.txt')
    const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
    const set = path.join(work, 'set')
    await packerOk(['pack', src, '-o', set, '-r', recipient, '-b', '2MiB', '-q'], { env: { PACKER_STATE_DIR: tmpDir() } })
    // auto (the default when encrypting) compresses the two logs, ~3× here, and stores random.bin as it is.
    const carBytes = carFiles(set).reduce((n, c) => n + fs.statSync(path.join(set, c)).size, 0)
    expect(carBytes).toBeLessThan(MiB + (SMALL + MULTI) / 2)
    const mnt = tmpDir('packer-mnt-')
    m = await startMount([set, mnt, '-i', key, '--cache-size', '8MiB'], mnt)
  })

  afterAll(async () => { await m?.cleanup() })

  it('shows each file at its own size and gives its whole bytes (cmp)', async () => {
    for (const f of Object.values(files)) {
      expect((await shOk(`stat -c %s ${m.mnt}/${f}`)).trim(), f).toBe(String(fs.statSync(path.join(src, f)).size))
      const r = await sh(`cmp ${path.join(src, f)} ${m.mnt}/${f}`)
      expect(r.code, `${f}: ${r.stdout}${r.stderr}`).toBe(0)
    }
  })

  it('serves random ranges, at frame edges and across frames, of a one-frame and a many-frame file', async () => {
    const fixed = (size: number): string[] => {
      const out = ['0:1', `${size - 1}:1`, `${size - 4096}:4096`, '4095:2', `0:${size}`]
      for (let k = 1; k * MiB < size; k++) for (const d of [-4096, -1, 0, 1]) out.push(`${k * MiB + d}:${d < 0 ? 8192 : 4096}`)
      return out
    }
    for (const [f, size] of [[files.small, SMALL], [files.multi, MULTI]] as const) {
      const r = await run(process.execPath, ['-e', RANDOM_READS, `${m.mnt}/${f}`, path.join(src, f), '300', ...fixed(size)])
      expect(r.stdout, f).toMatch(/checked \d+ bad 0/)
    }
    const data = fs.readFileSync(path.join(src, files.multi))
    for (const off of [0, MiB - 10, 3 * MiB + 12345, MULTI - 700]) {
      const r = await shOk(`dd if=${m.mnt}/${files.multi} bs=4096 iflag=skip_bytes,count_bytes skip=${off} count=2000000 status=none | sha256sum`)
      expect(r.split(' ')[0], `offset ${off}`).toBe(sha256(data.subarray(off, off + 2_000_000)))
    }
  })

  it('serves concurrent readers of the same frames', async () => {
    const want = sha256(fs.readFileSync(path.join(src, files.multi)))
    const r = await shOk(`for i in 1 2 3 4; do sha256sum ${m.mnt}/${files.multi} & done; wait`)
    expect(r.trim().split('\n').map((l) => l.split(' ')[0])).toEqual([want, want, want, want])
  })
})

describe('a mounted set holding damaged and forged compressed streams', () => {
  const plain = logText(2 * MiB + 100_000, 6) // three frames
  let m: RunningMount

  beforeAll(async () => {
    const { compressSeekable, zstdCodec, seekTableSize } = await import('../../src/compress/zstd-seekable.js')
    const stream = Buffer.from(compressSeekable(zstdCodec()!, plain, 3))
    const table = stream.length - seekTableSize(3)
    const size0 = stream.readUInt32LE(table + 8)
    const size1 = stream.readUInt32LE(table + 8 + 12)
    const flipped = Buffer.from(stream)
    flipped[size0 + (size1 >> 1)] ^= 0x20 // inside frame 1's compressed data
    const forged = Buffer.from(stream)
    const checksum1 = table + 8 + 12 + 8
    forged.writeUInt32LE((forged.readUInt32LE(checksum1) ^ 1) >>> 0, checksum1) // the table's checksum of frame 1
    const file = (name: string, data: Buffer, size = plain.length): ForgedLine => ({ name, type: 'file', data, size, storedSize: data.length, compression: 'zstd' })
    const set = tmpDir()
    await forgeSet(set, { chunks: [[{ dir: '' }, file('flipped', flipped), file('forged', forged), file('good', stream), file('wrong-size', stream, plain.length + 1)]] })
    const mnt = tmpDir('packer-mnt-')
    m = await startMount([set, mnt], mnt)
  })

  afterAll(async () => { await m?.cleanup() })

  it('serves the good frames and answers EIO for a bad one or a size the frames do not make, never a wrong byte', async () => {
    const out = tmpDir()
    fs.writeFileSync(path.join(out, 'plain'), plain)
    expect((await sh(`cmp ${out}/plain ${m.mnt}/good`)).code).toBe(0)
    for (const name of ['flipped', 'forged']) {
      const head = await shOk(`head -c ${MiB - 10} ${m.mnt}/${name} | sha256sum`)
      expect(head.split(' ')[0], name).toBe(sha256(plain.subarray(0, MiB - 10)))
      const r = await sh(`cat ${m.mnt}/${name} > ${out}/${name}`)
      expect(r.code, name).not.toBe(0)
      expect(r.stderr, name).toContain('Input/output error')
      const got = fs.readFileSync(path.join(out, name))
      expect(got.length, name).toBeLessThanOrEqual(MiB)
      expect(got.equals(plain.subarray(0, got.length)), name).toBe(true)
      const tail = await sh(`dd if=${m.mnt}/${name} bs=4096 iflag=skip_bytes skip=${2 * MiB} status=none | sha256sum`)
      expect(tail.stdout.split(' ')[0], name).toBe(sha256(plain.subarray(2 * MiB))) // frame 2 is good
    }
    // The same stream as good's, under a size its frames do not add up to: nothing is served.
    const wrongSize = await sh(`cat ${m.mnt}/wrong-size | wc -c`)
    expect(wrongSize.stderr).toContain('Input/output error')
    expect(wrongSize.stdout.trim()).toBe('0')
    expect(m.stderr()).toContain(`EIO reading /wrong-size: wrong-size: its zstd frames hold ${plain.length} bytes, the file table says ${plain.length + 1}; the set is damaged`)
    expect(m.stderr()).toContain('EIO reading /flipped: flipped: frame 1 of its zstd stream does not decompress')
    expect(m.stderr()).toContain('EIO reading /forged: forged: frame 1 of its zstd stream does not have the checksum its seek table gives; the set is damaged')
  })
})

describe('a large compressed file read through a mount with its default cache (frames decompressed ahead on the workers)', () => {
  const BIG = 40 * MiB + 12_345 // 41 frames: read-ahead grows to its most, eight frames
  const plain = logText(BIG, 21)
  let src: string
  let m: RunningMount
  let m2: RunningMount

  beforeAll(async () => {
    src = tmpDir()
    fs.writeFileSync(path.join(src, 'big.log'), plain)
    const { compressSeekable, zstdCodec, seekTableSize } = await import('../../src/compress/zstd-seekable.js')
    const stream = Buffer.from(compressSeekable(zstdCodec()!, plain, 1))
    const table = stream.length - seekTableSize(41)
    let frame30 = 0
    for (let i = 0; i < 30; i++) frame30 += stream.readUInt32LE(table + 8 + 12 * i)
    stream[frame30 + 1000] ^= 0x01 // inside frame 30: met by read-ahead before any read wants it
    const set = tmpDir()
    await forgeSet(set, { chunks: [[{ dir: '' }, { name: 'flipped.log', type: 'file', data: stream, size: BIG, storedSize: stream.length, compression: 'zstd' }]] })
    const work = tmpDir()
    const key = path.join(work, 'key.txt')
    const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
    await packerOk(['pack', src, '-o', path.join(work, 'set'), '-r', recipient, '-b', '4MiB', '-q'], { env: { PACKER_STATE_DIR: tmpDir() } })
    expect(carFiles(path.join(work, 'set')).reduce((n, c) => n + fs.statSync(path.join(work, 'set', c)).size, 0)).toBeLessThan(BIG / 2) // auto compressed it
    const mnt = tmpDir('packer-mnt-')
    m = await startMount([path.join(work, 'set'), mnt, '-i', key], mnt)
    const mnt2 = tmpDir('packer-mnt-')
    m2 = await startMount([set, mnt2], mnt2)
  }, 300_000)

  afterAll(async () => {
    await m?.cleanup()
    await m2?.cleanup()
  })

  it('sequential reads (cat, dd from the middle with 4 KiB and 1 MiB blocks) give the source bytes', async () => {
    const want = sha256(plain)
    expect((await shOk(`cat ${m.mnt}/big.log | sha256sum`)).split(' ')[0]).toBe(want)
    for (const [bs, off] of [[4096, 7 * MiB + 3], [MiB, 19 * MiB - 5]] as const) {
      const r = await shOk(`dd if=${m.mnt}/big.log bs=${bs} iflag=skip_bytes skip=${off} status=none | sha256sum`)
      expect(r.split(' ')[0], `bs=${bs} from ${off}`).toBe(sha256(plain.subarray(off)))
    }
  })

  it('random reads of 1 byte to 3 MiB, and at every tenth frame edge, give the source bytes', async () => {
    const edges: string[] = []
    for (let k = 1; k * MiB < BIG; k += 10) edges.push(`${k * MiB - 2048}:4096`)
    const r = await run(process.execPath, ['-e', RANDOM_READS, `${m.mnt}/big.log`, path.join(src, 'big.log'), '400', ...edges])
    expect(r.stdout).toMatch(/checked \d+ bad 0/)
  })

  it('a damaged frame met by read-ahead: right bytes up to it, then EIO; frames after it are served', async () => {
    const out = path.join(tmpDir(), 'got')
    const r = await sh(`cat ${m2.mnt}/flipped.log > ${out}`)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('Input/output error')
    const got = fs.readFileSync(out)
    expect(got.length).toBeLessThanOrEqual(30 * MiB)
    expect(got.length).toBeGreaterThanOrEqual(29 * MiB) // the kernel stops at the first failed read
    expect(got.equals(plain.subarray(0, got.length))).toBe(true)
    const tail = await shOk(`dd if=${m2.mnt}/flipped.log bs=65536 iflag=skip_bytes skip=${31 * MiB} status=none | sha256sum`)
    expect(tail.split(' ')[0]).toBe(sha256(plain.subarray(31 * MiB)))
    expect(m2.stderr()).toContain('EIO reading /flipped.log: flipped.log: frame 30 of its zstd stream does not decompress')
  })
})
