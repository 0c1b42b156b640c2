/**
 * BlockBatcher, with a fake FetchRun that records the runs it is asked for: blocks asked for in one turn go out in
 * runs of blocks side by side (gap ≤ RUN_GAP, run ≤ requestBytes); blocks asked for while every request is busy wait
 * and join later runs, CARs taking turns; blocks are given one by one, a failed fetch fails only those not given; a
 * block is fetched once while on its way, kept once read, and fetched again after it failed.
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { BlockBatcher, RUN_GAP, type FetchRun, type GiveBlock } from '../../src/store/block-batcher.js'
import type { BlockAt } from '../../src/store/car-store.js'
import { bytes } from '../helpers.js'

const car = bytes(1 << 20, 4)
const cid = CID.create(1, raw.code, await sha256.digest(Buffer.from('any')))

function blockAt (offset: number, length: number): BlockAt {
  return { cid, offset, length }
}

const bytesOf = (b: BlockAt): Buffer => Buffer.from(car.subarray(b.offset, b.offset + b.length))

interface Asked { car: number, run: BlockAt[], give: GiveBlock, done: (rest?: PackerError) => void, fail: (err: unknown) => void }

/**
 * A FetchRun that records each run as `car:offset,offset,…`; with `hold`, a run stays in flight until the test ends
 * it (`asked[k].done()`), else every block is given its bytes at once.
 */
function fake (hold = false): { fetchRun: FetchRun, runs: string[], asked: Asked[] } {
  const runs: string[] = []
  const asked: Asked[] = []
  const fetchRun: FetchRun = async (c, run, give) => {
    runs.push(`${c}:${run.map((b) => b.offset).join(',')}`)
    return await new Promise<PackerError | undefined>((resolve, reject) => {
      const done = (rest?: PackerError): void => {
        if (rest === undefined) run.forEach((b, i) => give(i, bytesOf(b)))
        resolve(rest)
      }
      asked.push({ car: c, run, give, done, fail: reject })
      if (!hold) done()
    })
  }
  return { fetchRun, runs, asked }
}

const turn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))
const outcome = (r: Buffer | PackerError): string => r instanceof PackerError ? r.message : 'ok'

describe('BlockBatcher', () => {
  it('cuts the blocks asked for in one turn into runs: sorted, gaps of at most RUN_GAP, at most requestBytes a run', async () => {
    const { fetchRun, runs } = fake()
    const bb = new BlockBatcher(fetchRun, { requests: 8, requestBytes: 10_000, recentBytes: 1 << 20 })
    const asked = [
      blockAt(1040, 1000), // 40 bytes after the first: joins
      blockAt(0, 1000),
      blockAt(2040 + RUN_GAP, 1000), // RUN_GAP after the second: joins
      blockAt(3040 + 2 * RUN_GAP + 1, 1000), // one byte more than RUN_GAP after: a new run
      blockAt(3040 + 2 * RUN_GAP + 1 + 1000, 9001), // side by side, but past requestBytes from its run's first block
      blockAt(500_000, 4096), // far away
    ]
    const got = await bb.blocks(0, asked)
    expect(runs).toEqual(['0:0,1040,6136', '0:11233', '0:12233', '0:500000'])
    got.forEach((b, i) => expect((b as Buffer).equals(bytesOf(asked[i]!))).toBe(true))
  })

  it('blocks asked for while every request is busy wait and join later runs; CARs take turns', async () => {
    const { fetchRun, runs, asked } = fake(true)
    const bb = new BlockBatcher(fetchRun, { requests: 1, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const first = bb.block(0, blockAt(0, 100))
    await turn()
    expect(runs).toEqual(['0:0'])
    // a sequential reader's read-ahead, a block a turn, while the one request is busy; another CAR's block meanwhile
    const later: Array<Promise<Buffer>> = []
    for (const at of [100, 200, 300]) {
      later.push(bb.block(0, blockAt(at, 100)))
      await turn()
    }
    later.push(bb.block(1, blockAt(0, 100)), bb.block(0, blockAt(900_000, 100)))
    await turn()
    expect(runs).toEqual(['0:0'])
    asked[0]!.done()
    await first
    await turn()
    // CAR 0's lowest run, then CAR 1 (CAR 0's far block went to the back), then the rest of CAR 0
    expect(runs).toEqual(['0:0', '0:100,200,300'])
    asked[1]!.done()
    await turn()
    expect(runs).toEqual(['0:0', '0:100,200,300', '1:0'])
    asked[2]!.done()
    await turn()
    expect(runs).toEqual(['0:0', '0:100,200,300', '1:0', '0:900000'])
    asked[3]!.done()
    expect((await Promise.all(later)).length).toBe(5)
  })

  it('blocks are given one by one: a block given stays given, those not given get the error the fetch ends with', async () => {
    const { fetchRun, asked } = fake(true)
    const bb = new BlockBatcher(fetchRun, { requests: 4, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const run = [blockAt(0, 100), blockAt(100, 100), blockAt(200, 100)]
    const a = bb.blocks(0, run)
    await turn()
    asked[0]!.give(0, bytesOf(run[0]!))
    asked[0]!.give(1, new PackerError('CORRUPT', 'block at 100 is damaged'))
    asked[0]!.done(new PackerError('MISSING_CAR', 'no source left'))
    expect((await a).map(outcome)).toEqual(['ok', 'block at 100 is damaged', 'no source left'])

    // a fetch that throws: a PackerError as it is, anything else as a REMOTE PackerError with its message
    const b = bb.blocks(1, run)
    await turn()
    asked[1]!.give(0, bytesOf(run[0]!))
    asked[1]!.fail(new Error('the store failed'))
    const got = await b
    expect(got.map(outcome)).toEqual(['ok', 'the store failed', 'the store failed'])
    expect((got[1] as PackerError).code).toBe('REMOTE')
  })

  it('a block is fetched once while on its way, kept once read, and fetched again after it failed', async () => {
    const { fetchRun, runs, asked } = fake(true)
    const bb = new BlockBatcher(fetchRun, { requests: 4, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const good = blockAt(0, 100)
    const bad = blockAt(200_000, 100)
    const first = bb.blocks(0, [good, bad])
    await turn()
    const again = bb.blocks(0, [good, bad])
    await turn()
    expect(runs).toEqual(['0:0', '0:200000'])
    asked[0]!.done()
    asked[1]!.done(new PackerError('REMOTE', 'the store failed'))
    expect((await first).map(outcome)).toEqual(['ok', 'the store failed'])
    expect((await again).map(outcome)).toEqual(['ok', 'the store failed'])
    const third = bb.blocks(0, [good, bad])
    await turn()
    expect(runs).toEqual(['0:0', '0:200000', '0:200000'])
    asked[2]!.done()
    expect((await third).map(outcome)).toEqual(['ok', 'ok'])
  })
})

describe('BlockBatcher with leased blocks (memory the store reuses once a lease is freed)', () => {
  /** A FetchRun giving each block in leased memory, counting the frees of each block's lease. */
  function leasing (): { fetchRun: FetchRun, frees: Map<number, number>, memory: Map<number, Buffer> } {
    const frees = new Map<number, number>()
    const memory = new Map<number, Buffer>()
    const fetchRun: FetchRun = async (_c, run, give) => {
      for (const [i, b] of run.entries()) {
        const m = Buffer.from(new SharedArrayBuffer(b.length))
        bytesOf(b).copy(m)
        memory.set(b.offset, m)
        give(i, m, { pins: b.length, free: () => { frees.set(b.offset, (frees.get(b.offset) ?? 0) + 1) } })
      }
      return undefined
    }
    return { fetchRun, frees, memory }
  }

  it('a lent block\'s lease is freed once, when it is released and no longer among the recent blocks', async () => {
    const { fetchRun, frees } = leasing()
    const bb = new BlockBatcher(fetchRun, { requests: 4, requestBytes: 1 << 20, recentBytes: 300 })
    const a = blockAt(0, 100)
    const [x, y] = await Promise.all([bb.lend(0, a), bb.lend(0, a)])
    expect(x.bytes.equals(bytesOf(a))).toBe(true)
    expect(y.bytes).toBe(x.bytes)
    x.release()
    x.release() // a second release of the same loan does nothing
    expect(frees.get(0)).toBeUndefined()
    // pushed out of the recent blocks (300 bytes: three of them) while y still holds it: not freed
    for (const at of [1000, 2000, 3000]) (await bb.lend(0, blockAt(at, 100))).release()
    expect(frees.get(0)).toBeUndefined()
    y.release()
    expect(frees.get(0)).toBe(1)
    // asked for again: fetched again, in new memory
    const z = await bb.lend(0, a)
    expect(z.bytes.equals(bytesOf(a))).toBe(true)
    z.release()
    expect(frees.get(0)).toBe(1)
  })

  it('block() gives a leased block as a copy of its own, which stays right after the lease is freed', async () => {
    const { fetchRun, frees, memory } = leasing()
    const bb = new BlockBatcher(fetchRun, { requests: 4, requestBytes: 1 << 20, recentBytes: 100 })
    const a = blockAt(0, 100)
    const got = await bb.block(0, a)
    expect(got.equals(bytesOf(a))).toBe(true)
    expect(got.buffer).not.toBe(memory.get(0)!.buffer)
    await bb.block(0, blockAt(5000, 100)) // pushes it out of the recent blocks
    expect(frees.get(0)).toBe(1)
    memory.get(0)!.fill(0) // the store reuses the memory
    expect(got.equals(bytesOf(a))).toBe(true)
  })

  it('a lease given with a block already given is freed at once', async () => {
    const { fetchRun, asked } = fake(true)
    const bb = new BlockBatcher(fetchRun, { requests: 4, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const run = [blockAt(0, 100), blockAt(100, 100)]
    const p = bb.blocks(0, run)
    await turn()
    let freed = 0
    const lease = { pins: 100, free: () => { freed++ } }
    asked[0]!.give(0, bytesOf(run[0]!), lease)
    asked[0]!.give(0, bytesOf(run[0]!), lease) // again: freed at once
    expect(freed).toBe(1)
    asked[0]!.give(1, new PackerError('CORRUPT', 'damaged'))
    asked[0]!.done()
    expect((await p).map(outcome)).toEqual(['ok', 'damaged'])
  })
})
