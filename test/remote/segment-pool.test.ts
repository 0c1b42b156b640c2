/**
 * A fetching thread's pool of shared memory (src/remote/segment-pool.ts): a segment is taken again only once the run
 * filling it is over and every block lent from it has had its lease freed; a lease frees once; with every segment
 * busy there is none to take (the thread then uses memory of its own).
 */
import { describe, expect, it } from 'vitest'
import { POOL_SEGMENTS, SEGMENT, SegmentPool, newLeases, segmentLease } from '../../src/remote/segment-pool.js'

describe('SegmentPool', () => {
  it('takes a segment again only when it is neither being filled nor lent', () => {
    const leases = newLeases()
    const pool = new SegmentPool(leases)
    expect(pool.take()).toBe(0)
    expect(pool.take()).toBe(1) // 0 is being filled
    pool.filled(0)
    expect(pool.take()).toBe(0) // nothing was lent from it
    pool.lend(0)
    pool.lend(0)
    pool.filled(0)
    expect(pool.take()).toBe(2) // two blocks of 0 are lent
    const first = segmentLease(leases, 0)
    const second = segmentLease(leases, 0)
    first.free()
    first.free() // once only
    expect(pool.take()).toBe(3)
    second.free()
    expect(pool.take()).toBe(0)
    expect(first.pins).toBe(SEGMENT)
  })

  it('has none to take when every segment is busy; its segments are distinct pieces of one memory', () => {
    const pool = new SegmentPool(newLeases())
    const taken: number[] = []
    for (let s = pool.take(); s !== undefined; s = pool.take()) taken.push(s)
    expect(taken.length).toBe(POOL_SEGMENTS)
    const a = pool.memory(0)
    const b = pool.memory(1)
    expect(a.length).toBe(SEGMENT)
    expect(a.buffer).toBe(b.buffer)
    expect(b.byteOffset - a.byteOffset).toBe(SEGMENT)
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer)
    pool.filled(5)
    expect(pool.take()).toBe(5)
  })
})
