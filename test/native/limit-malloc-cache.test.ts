import { describe, expect, it } from 'vitest'
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

  it("collectGarbage('major') is a full collection (gc({ type: 'major' }) is not, in Node 20)", () => {
    let garbage: Array<{ n: number, s: string }> | null = []
    for (let i = 0; i < 300_000; i++) garbage.push({ n: i, s: `item ${i}` })
    const before = process.memoryUsage().heapUsed
    garbage = null
    collectGarbage('major')
    expect(before - process.memoryUsage().heapUsed).toBeGreaterThan(10 << 20)
  })
})
