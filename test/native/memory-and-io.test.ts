import { execFileSync } from 'node:child_process'
import { getHeapStatistics } from 'node:v8'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmpDir } from '../helpers.js'
import { loadNativeAddon } from '../../src/native-addon.js'
import { collectGarbage, sharedMemory, sharedMemoryTaken, trimMalloc } from '../../src/memory.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'

describe.skipIf(forcedOff)('trimMalloc', () => {
  it('trims arenas on this glibc system (Debian); the memory helper calls it', () => {
    const addon = loadNativeAddon().addon
    expect(addon).not.toBeNull()
    expect(addon!.trimMalloc()).toBeTypeOf('boolean')
    expect(() => { trimMalloc() }).not.toThrow()
  })

  it('trimMallocInBackground trims on libuv\'s pool, one at a time: a second call while one is under way does nothing', async () => {
    const addon = loadNativeAddon().addon!
    expect(addon.trimMallocInBackground()).toBe(true)
    // its completion is heard on this thread's event loop, so within this turn it is still under way
    expect(addon.trimMallocInBackground()).toBe(false)
    let again = false
    for (let i = 0; i < 200 && !again; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5))
      again = addon.trimMallocInBackground()
    }
    expect(again).toBe(true)
    // Buffers of the size pack churns through still work once the threshold is fixed.
    const b = Buffer.alloc(1 << 20, 7)
    expect(b.readUInt8(b.length - 1)).toBe(7)
  })

  it('adviseWillNeed reads files into the page cache off the calling thread; a symlink is never followed', async () => {
    const addon = loadNativeAddon().addon!
    const dir = tmpDir()
    const file = path.join(dir, 'f.bin')
    const target = path.join(dir, 'target.bin')
    for (const f of [file, target]) fs.writeFileSync(f, Buffer.alloc(4 << 20, 1))
    fs.symlinkSync(target, path.join(dir, 'link'))
    // Pages of a file in the page cache (util-linux fincore); dd with iflag=nocache and no count drops them.
    const cached = (f: string): number => Number(execFileSync('fincore', ['-n', '-o', 'PAGES', '-b', f]).toString().trim())
    const drop = (f: string): void => { execFileSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']) }
    for (const f of [file, target]) { execFileSync('sync'); drop(f) }
    expect(cached(file) + cached(target)).toBe(0)
    addon.adviseWillNeed([Buffer.from(file), Buffer.from(path.join(dir, 'missing')), Buffer.from(path.join(dir, 'link'))])
    for (let i = 0; i < 100 && cached(file) < 1024; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(cached(file)).toBe(1024)
    expect(cached(target)).toBe(0)
    expect(() => addon.adviseWillNeed([42 as unknown as Uint8Array])).toThrow(/paths must be Buffers/)
  })

  it('sharedMemory: fresh shared memory on huge pages, a small fraction of the page faults, where the kernel gives them', () => {
    const addon = loadNativeAddon().addon!
    expect(addon.hugePagesAt(new Uint8Array(100), 4 << 20)).toBe(-1)
    const sab = new Uint8Array(new SharedArrayBuffer((6 << 20) - 1))
    const at = addon.hugePagesAt(sab, 4 << 20)
    expect(at >= 0 && at < (2 << 20) && at + (4 << 20) <= sab.length).toBe(true)
    const MiB = 1 << 20
    const faults = (make: () => Buffer): number => {
      const before = process.resourceUsage().minorPageFault
      for (let i = 0; i < 8; i++) {
        const b = make()
        expect(b.length).toBe(4 * MiB)
        expect(b.buffer).toBeInstanceOf(SharedArrayBuffer)
        b.fill(i + 1)
        expect(b[0] + b[b.length - 1]).toBe(2 * (i + 1))
      }
      return process.resourceUsage().minorPageFault - before
    }
    const plain = faults(() => Buffer.from(new SharedArrayBuffer(4 * MiB)))
    const huge = faults(() => sharedMemory(4 * MiB))
    // 32 MiB: 8,192 faults of 4 KiB pages; on 2 MiB pages, 16 (and whatever else the process touched meanwhile)
    const thp = fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8')
    expect(plain).toBeGreaterThan(8000)
    if (!thp.includes('[never]')) expect(huge).toBeLessThan(plain / 4)
  })

  it('sharedMemoryTaken: a full collection once 32 MiB of shared memory has been taken, so dead handles free theirs', async () => {
    // an old-generation handle (a minor collection would not free it) to shared memory, then dropped
    let handle: Buffer | undefined = Buffer.from(new SharedArrayBuffer(1 << 20))
    const ref = new WeakRef(handle)
    collectGarbage('major')
    collectGarbage('major')
    handle = undefined
    await new Promise((resolve) => setImmediate(resolve)) // a WeakRef keeps its target until the job that made it ends
    // (deref() would keep it alive to the end of this job: asked only after)
    const enough = Math.max(32 << 20, getHeapStatistics().used_heap_size / 2)
    for (let taken = 0; taken <= enough; taken += 1 << 20) sharedMemoryTaken(1 << 20)
    await new Promise((resolve) => setImmediate(resolve))
    expect(ref.deref()).toBeUndefined()
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

describe('collectWhenGrown', () => {
  it('collects only once the heap in use passes 64 MiB (or twice what the last collection left), then frees the garbage', () => {
    // In a process of its own: this one's heap is whatever the test runner made it.
    const script = `
      import { collectGarbage, collectWhenGrown } from ${JSON.stringify(path.resolve('dist/memory.js'))}
      import { getHeapStatistics } from 'node:v8'
      const tick = () => new Promise((resolve) => setImmediate(resolve))
      const used = () => getHeapStatistics().used_heap_size
      const out = {}
      let small = { items: Array.from({ length: 1000 }, (_, i) => ({ i })) }
      const smallRef = new WeakRef(small)
      collectGarbage('major'); collectGarbage('major')
      small = undefined
      await tick()
      collectWhenGrown()
      await tick()
      out.smallKept = smallRef.deref() !== undefined
      let big = Array.from({ length: 1_500_000 }, (_, i) => ({ i, s: 'item ' + i }))
      const bigRef = new WeakRef(big)
      out.grownMiB = used() / 1048576
      big = undefined
      await tick()
      collectWhenGrown()
      await tick()
      out.bigKept = bigRef.deref() !== undefined
      out.afterMiB = used() / 1048576
      process.stdout.write(JSON.stringify(out))
    `
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as Record<string, number | boolean>
    expect(out.smallKept).toBe(true)
    expect(out.grownMiB).toBeGreaterThan(64)
    expect(out.bigKept).toBe(false)
    expect(out.afterMiB).toBeLessThan(32)
  })
})
