import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { Piece } from '@web3-storage/data-segment'
import * as PieceMultihash from '@web3-storage/data-segment/multihash'
import { describe, expect, it, vi } from 'vitest'

import { createPieceHasher, pieceDigestFrom, pieceHasherBackend, pieceSizeFor, type PieceDigest, type PieceHasher } from '../../src/car/piece-hasher.js'
import { loadNativeAddon } from '../../src/native-addon.js'

const MiB = 1024 * 1024
const load = loadNativeAddon()
const addon = load.addon
const forcedOff = process.env.PACKER_NO_NATIVE === '1'
const ADDON_FILE = fileURLToPath(new URL('../../native/build/Release/packer_native.node', import.meta.url))

/** Deterministic pseudo-random bytes (xorshift32), so a failure can be reproduced. */
function bytesOf (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  const words = new Uint32Array(out.buffer, 0, Math.floor(n / 4))
  let x = seed >>> 0 || 1
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    words[i] = x
  }
  for (let i = words.length * 4; i < n; i++) out[i] = (i * 151 + seed) & 0xff
  return out
}

/** The reference: @web3-storage/data-segment fed in one write, CIDs built by data-segment itself. */
const refCache = new Map<string, PieceDigest>()
function reference (data: Uint8Array, key: string): PieceDigest {
  let d = refCache.get(key)
  if (d === undefined) {
    const h = PieceMultihash.create()
    h.write(data)
    const piece = Piece.fromDigest(h.digest())
    d = {
      pieceCid: piece.toInfo().link.toString(),
      pieceCidV2: piece.toString(),
      paddedSize: Number(piece.size),
      payloadSize: data.byteLength,
    }
    refCache.set(key, d)
  }
  return d
}

async function feed (hasher: PieceHasher, data: Uint8Array, pieces: number | number[]): Promise<PieceDigest> {
  const sizes = Array.isArray(pieces) ? pieces : [pieces]
  let off = 0
  let i = 0
  while (off < data.byteLength) {
    const n = Math.min(sizes[i++ % sizes.length], data.byteLength - off)
    await hasher.update(data.subarray(off, off + n))
    off += n
  }
  return await hasher.digest()
}

const SIZES = [0, 1, 64, 65, 126, 127, 128, 254, 255, 260_096, 260_097, MiB - 1, MiB, MiB + 1, 5 * MiB + 12345]

describe('pieceSizeFor', () => {
  it('is 128 × the next power of two ≥ ceil(size / 127), at least 128', () => {
    expect(pieceSizeFor(0)).toBe(128)
    expect(pieceSizeFor(65)).toBe(128)
    expect(pieceSizeFor(127)).toBe(128)
    expect(pieceSizeFor(128)).toBe(256)
    expect(pieceSizeFor(254)).toBe(256)
    expect(pieceSizeFor(255)).toBe(512)
    expect(pieceSizeFor(MiB)).toBe(2 * MiB)
    expect(pieceSizeFor(34_091_302_912)).toBe(32 * 1024 * MiB)
    expect(pieceSizeFor(34_091_302_913)).toBe(64 * 1024 * MiB)
    expect(pieceSizeFor(1_065_353_216)).toBe(1024 * MiB)
  })
  it('agrees with the padded size of the digests', () => {
    for (const n of SIZES) expect(reference(bytesOf(n, n), `${n}`).paddedSize).toBe(pieceSizeFor(n))
  })
})

describe('data-segment backend', () => {
  it('matches the reference in odd-sized pieces', async () => {
    for (const n of [65, 127, 128, 254, MiB + 1]) {
      const data = bytesOf(n, n)
      expect(await feed(createPieceHasher('data-segment'), data, [1, 127, 1000, 65536 + 3])).toEqual(reference(data, `${n}`))
    }
  })
  it('prints the known CIDs of 127 bytes of 0x01', async () => {
    const d = await feed(createPieceHasher('data-segment'), new Uint8Array(127).fill(1), 127)
    expect(d.pieceCid).toBe('baga6ea4seaqffs4jcd4iheeo5wisbmurjb7l4xgpmzgyzrenebvjjhsbwgx4smy')
    expect(d.pieceCidV2).toBe('bafkzcibcaabffs4jcd4iheeo5wisbmurjb7l4xgpmzgyzrenebvjjhsbwgx4smy')
    expect(d.paddedSize).toBe(128)
  })
})

describe.skipIf(forcedOff)('native backend', () => {
  it('loads', () => {
    // Not built? `npm run build:native` (node-gyp rebuild -C native). Without it packer falls back, slowly.
    expect(load.reason).toBeUndefined()
    expect(addon).not.toBeNull()
    expect(pieceHasherBackend()).toBe('native')
  })

  it.each(SIZES)('matches data-segment on %i random bytes (CID v1, v2, sizes)', async (n) => {
    const data = bytesOf(n, n)
    const ref = reference(data, `${n}`)
    expect(await feed(createPieceHasher('native'), data, 4 * MiB)).toEqual(ref)
    expect(ref.pieceCid.startsWith('baga6ea4sea')).toBe(true)
    expect(ref.pieceCidV2.startsWith('bafkzcib')).toBe(true)
  })

  it('does not depend on how the bytes are cut', async () => {
    const n = 5 * MiB + 12345
    const data = bytesOf(n, n)
    const ref = reference(data, `${n}`)
    for (const pieces of [127, MiB + 3, [1, 127, MiB + 3, 65535, 65536, 3, 260_096, 999_999]]) {
      expect(await feed(createPieceHasher('native'), data, pieces)).toEqual(ref)
    }
    const small = bytesOf(600_000, 7) // crosses two native blocks, one byte at a time
    expect(await feed(createPieceHasher('native'), small, 1)).toEqual(reference(small, 'small'))
  })

  it('gives the same digests with several worker threads', async () => {
    const n = 5 * MiB + 12345
    const data = bytesOf(n, n)
    for (const threads of [2, 3]) {
      expect(await feed(createPieceHasher('native', { threads }), data, [MiB + 3, 4096, 200_000])).toEqual(reference(data, `${n}`))
    }
  })

  it('gives the same digests with every SHA-256 implementation on this machine', async () => {
    const n = MiB + 1
    const data = bytesOf(n, n)
    const impls = addon!.commpImpls()
    expect(impls).toContain('portable')
    for (const impl of impls) {
      expect(await feed(createPieceHasher('native', { impl }), data, 300_000)).toEqual(reference(data, `${n}`))
    }
  })

  it('holds at most 64 MiB and keeps the caller waiting until the worker catches up', async () => {
    const chunk = bytesOf(16 * MiB, 3)
    const h = createPieceHasher('native')
    let total = 0
    for (let i = 0; i < 12; i++) { // 192 MiB through a 64 MiB window
      await h.update(chunk)
      total += chunk.byteLength
    }
    const d = await h.digest()
    expect(d.payloadSize).toBe(total)
    const whole = new Uint8Array(total)
    for (let i = 0; i < 12; i++) whole.set(chunk, i * chunk.byteLength)
    const r = addon!.commpOneshot(whole)
    expect(d).toEqual(pieceDigestFrom(r.root, r.height, r.payloadSize))
    expect(d.paddedSize).toBe(pieceSizeFor(total))
    expect(await feed(createPieceHasher('native', { impl: 'portable' }), whole.subarray(0, 3 * MiB), MiB))
      .toEqual(await feed(createPieceHasher('native'), whole.subarray(0, 3 * MiB), MiB))
  })

  it("lets go of a caller's bytes only once they are hashed: bytes overwritten at their release do not change the digest", async () => {
    const cuts = [MiB, 3000, 70_000, 2 * MiB + 5] // referenced and staged (< 64 KiB) updates
    for (const [backend, size] of [['native', 40 * MiB + 777], ['data-segment', 3 * MiB + 777]] as const) {
      const data = bytesOf(size, 11)
      const h = createPieceHasher(backend)
      let updates = 0
      let released = 0
      for (let off = 0; off < data.length; updates++) {
        const n = Math.min(cuts[updates % cuts.length]!, data.length - off)
        const mine = data.slice(off, off + n) // the caller's own buffer, scribbled on when let go
        await h.update(mine, () => { mine.fill(0xa5); released++ })
        off += n
      }
      const r = addon!.commpOneshot(data)
      expect(await h.digest()).toEqual(pieceDigestFrom(r.root, r.height, r.payloadSize))
      expect(released).toBe(updates)
    }
  })

  it('does not wait forever on one chunk larger than the window', async () => {
    const big = bytesOf(80 * MiB + 12345, 9)
    const h = createPieceHasher('native')
    await h.update(big) // most of it hashed, the tail waits for digest()
    await h.update(big.subarray(0, 1000))
    expect((await h.digest()).payloadSize).toBe(big.byteLength + 1000)
  })

  it('refuses updates after digest and can be destroyed midway', async () => {
    const h = createPieceHasher('native')
    await h.update(bytesOf(MiB, 1))
    await h.digest()
    await expect(h.update(new Uint8Array(10))).rejects.toThrow(/after digest/)
    const g = createPieceHasher('native')
    await g.update(bytesOf(3 * MiB, 2))
    g.destroy?.()
    g.destroy?.()
    const k = createPieceHasher('native')
    await k.update(bytesOf(3 * MiB, 2))
    const pending = k.digest()
    k.destroy?.()
    await pending.then((d) => expect(d.payloadSize).toBe(3 * MiB), (err) => expect(String(err)).toMatch(/destroyed/))
  })

  it.skipIf(process.platform !== 'linux')('lets idle worker threads go, so abandoned hashers hold no threads', async () => {
    const { readdirSync, readFileSync } = await import('node:fs')
    const tasks = async (): Promise<number> => readdirSync('/proc/self/task')
      .filter((t) => { try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'packer-commp' } catch { return false } })
      .length
    await feed(createPieceHasher('native', { threads: 2 }), bytesOf(2 * MiB, 5), MiB) // warm up
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const before = await tasks()
    const abandoned: PieceHasher[] = []
    for (let i = 0; i < 6; i++) {
      const h = createPieceHasher('native', { threads: 2 })
      await h.update(bytesOf(2 * MiB + 77, i))
      abandoned.push(h)
    }
    expect(await tasks()).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 2500))
    expect(before).toBe(0)
    expect(await tasks()).toBe(0)
    // …and an idle hasher starts working again when fed.
    const h = abandoned[0]
    await h.update(bytesOf(3 * MiB, 11))
    const whole = new Uint8Array(5 * MiB + 77)
    whole.set(bytesOf(2 * MiB + 77, 0))
    whole.set(bytesOf(3 * MiB, 11), 2 * MiB + 77)
    const r = addon!.commpOneshot(whole)
    expect(await h.digest()).toEqual(pieceDigestFrom(r.root, r.height, r.payloadSize))
    for (const g of abandoned.slice(1)) g.destroy?.()
  })

  it('does not keep the process alive when abandoned, and finishes when awaited', () => {
    const script = (finish: boolean): string => `
      const a = require(${JSON.stringify(ADDON_FILE)})
      const h = a.commpCreate(1, undefined, (released, done, r) => { if (done) console.log('root', r.height, r.payloadSize) })
      const b = new Uint8Array(3 * 1024 * 1024 + 5).fill(7)
      a.commpWrite(h, b)
      ${finish ? 'a.commpFinish(h)' : ''}`
    const abandoned = spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8', timeout: 20_000 })
    expect(abandoned.status).toBe(0)
    expect(abandoned.stdout).toBe('')
    const finished = spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8', timeout: 20_000 })
    expect(finished.status).toBe(0)
    expect(finished.stdout).toBe(`root ${Math.log2(pieceSizeFor(3 * MiB + 5) / 32)} ${3 * MiB + 5}\n`)
  })
})

describe('fallback', () => {
  it('PACKER_NO_NATIVE=1 selects data-segment, warns once, and gives the same digests', async () => {
    vi.resetModules()
    const saved = process.env.PACKER_NO_NATIVE
    process.env.PACKER_NO_NATIVE = '1'
    const writes: string[] = []
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => { writes.push(String(s)); return true })
    try {
      const mod = await import('../../src/car/piece-hasher.js')
      expect(mod.pieceHasherBackend()).toBe('data-segment')
      for (const n of [65, 254, MiB + 1]) {
        const data = bytesOf(n, n)
        expect(await feed(mod.createPieceHasher(), data, [MiB + 3, 127])).toEqual(reference(data, `${n}`))
      }
      expect(() => mod.createPieceHasher('native')).toThrow(/PACKER_NO_NATIVE/)
      expect(writes).toEqual(['packer: native CommP addon not available (disabled by PACKER_NO_NATIVE=1); using @web3-storage/data-segment, which is much slower\n'])
    } finally {
      spy.mockRestore()
      if (saved === undefined) delete process.env.PACKER_NO_NATIVE
      else process.env.PACKER_NO_NATIVE = saved
      vi.resetModules()
    }
  })
})
