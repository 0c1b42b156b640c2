import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmpDir } from '../helpers.js'
import { loadNativeAddon } from '../../src/native-addon.js'
import { collectGarbage, limitMallocCache, trimMalloc } from '../../src/memory.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'

describe.skipIf(forcedOff)('limitMallocCache', () => {
  it('fixes the mmap threshold and trims arenas on this glibc system (Debian); the memory helpers call them', () => {
    const addon = loadNativeAddon().addon
    expect(addon).not.toBeNull()
    expect(addon!.limitMallocCache()).toBe(true)
    expect(addon!.trimMalloc()).toBeTypeOf('boolean')
    expect(() => { limitMallocCache(); trimMalloc() }).not.toThrow()
    // Buffers of the size pack churns through still work once the threshold is fixed.
    const b = Buffer.alloc(1 << 20, 7)
    expect(b.readUInt8(b.length - 1)).toBe(7)
  })

  it('adviseWillNeed starts reading an existing file (also by raw-byte path), says false for a missing one, never follows a symlink', () => {
    const addon = loadNativeAddon().addon!
    const dir = tmpDir()
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(100_000, 1))
    fs.symlinkSync(file, path.join(dir, 'link'))
    expect(addon.adviseWillNeed(file)).toBe(true)
    expect(addon.adviseWillNeed(new Uint8Array(Buffer.from(file)))).toBe(true)
    expect(addon.adviseWillNeed(path.join(dir, 'missing'))).toBe(false)
    expect(addon.adviseWillNeed(path.join(dir, 'link'))).toBe(false)
    expect(() => addon.adviseWillNeed(42 as unknown as string)).toThrow(/path must be a string or a Uint8Array/)
  })

  it("collectGarbage('major') is a full collection (gc({ type: 'major' }) is not, in Node 20)", () => {
    let garbage: Array<{ n: number, s: string }> | null = []
    for (let i = 0; i < 300_000; i++) garbage.push({ n: i, s: `item ${i}` })
    const before = process.memoryUsage().heapUsed
    garbage = null
    collectGarbage('major')
    expect(before - process.memoryUsage().heapUsed).toBeGreaterThan(10 << 20)
  })
})
