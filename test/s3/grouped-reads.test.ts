/**
 * GroupedReads: a pack's leaf reads of one object share ranged GETs of up to groupBytes, and each read still gets
 * exactly its bytes in a buffer of its own.
 */
import { describe, expect, it } from 'vitest'
import { GroupedReads } from '../../src/s3/grouped-reads.js'
import { bytes } from '../helpers.js'

const MiB = 1024 * 1024
const data = bytes(30 * MiB + 12345, 9)

/** Bytes [s, e) into the buffer given, each GET recorded. */
function store (gets: Array<[number, number]>, fail?: Error): (s: number, e: number, out: Buffer) => Promise<Buffer> {
  return async (s, e, out) => {
    gets.push([s, e])
    await new Promise((resolve) => setTimeout(resolve, 2))
    if (fail !== undefined) throw fail
    data.copy(out, 0, s, e)
    return out
  }
}

describe('GroupedReads', () => {
  it('reads of leaves side by side (and overlapping, as an age chunk across two leaves) share 8 MiB GETs, each read exact, shared or its own', async () => {
    const gets: Array<[number, number]> = []
    const reads = new GroupedReads(store(gets), data.length, 8 * MiB)
    const ranges: Array<[number, number]> = []
    for (let s = 0; s < data.length; s += MiB) ranges.push([Math.max(0, s - 200), Math.min(data.length, s + MiB)])
    const got = await Promise.all(ranges.map(async ([s, e]) => await reads.read(s, e)))
    got.forEach((b, i) => {
      const [s, e] = ranges[i]!
      expect(b.equals(data.subarray(s, e)), `${s}-${e}`).toBe(true)
      // a view of its GET's shared buffer (posted to a worker as it is), or, across two GETs, a buffer of its own
      if (b.buffer instanceof SharedArrayBuffer) expect(b.buffer.byteLength).toBeGreaterThan(e - s)
      else expect(b.buffer.byteLength).toBe(e - s)
    })
    expect(gets.length).toBeLessThanOrEqual(Math.ceil(data.length / (8 * MiB)) + 1)
    expect(gets.every(([s, e]) => e - s <= 8 * MiB)).toBe(true)
  })

  it('a failed GET fails every read of it', async () => {
    const reads = new GroupedReads(store([], new Error('412: replaced')), data.length, 8 * MiB)
    const all = await Promise.allSettled([reads.read(0, MiB), reads.read(MiB, 2 * MiB)])
    expect(all.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(['412: replaced', '412: replaced'])
  })
})
