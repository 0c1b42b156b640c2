import { describe, expect, it } from 'vitest'
import { loadNativeAddon } from '../../src/native-addon.js'
import { boundHeapGrowth, limitMallocCache } from '../../src/memory.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'

describe.skipIf(forcedOff)('limitMallocCache', () => {
  it('fixes the mmap threshold on this glibc system (Debian); the memory helpers call it without failing', () => {
    const addon = loadNativeAddon().addon
    expect(addon).not.toBeNull()
    expect(addon!.limitMallocCache()).toBe(true)
    expect(() => { limitMallocCache(); boundHeapGrowth() }).not.toThrow()
    // Buffers of the size pack churns through still work once the threshold is fixed.
    const b = Buffer.alloc(1 << 20, 7)
    expect(b.readUInt8(b.length - 1)).toBe(7)
  })
})
