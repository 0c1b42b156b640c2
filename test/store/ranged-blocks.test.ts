/**
 * RangedBlocks: blocks asked for in one turn are read together where they lie side by side, each checked against its
 * hash; a damaged block fails alone, a failed read fails its run and is tried again when asked again.
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import type { BlockAt } from '../../src/store/car-store.js'
import { RangedBlocks } from '../../src/store/ranged-blocks.js'
import { bytes } from '../helpers.js'

const car = bytes(1 << 20, 4)

/** A block of `car` at [offset, offset + length), with the CID of its bytes (or of other bytes: a damaged block). */
async function blockAt (offset: number, length: number, damaged = false): Promise<BlockAt> {
  const digest = await sha256.digest(damaged ? Buffer.from('other bytes') : car.subarray(offset, offset + length))
  return { cid: CID.create(1, raw.code, digest), offset, length }
}

function reader (reads: Array<[number, number]>, failNext = { times: 0 }) {
  return {
    read: async (_car: number, from: number, to: number) => {
      reads.push([from, to])
      if (failNext.times-- > 0) throw new PackerError('REMOTE', 'the store failed')
      return Buffer.from(car.subarray(from, to))
    },
    damaged: (_car: number, b: BlockAt) => new PackerError('CORRUPT', `block at ${b.offset} is damaged`),
  }
}

describe('RangedBlocks', () => {
  it('reads side-by-side blocks in one request, far ones apart; a damaged block fails alone; each block is its own shared memory', async () => {
    const reads: Array<[number, number]> = []
    const rb = new RangedBlocks(reader(reads), { requests: 2, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const near = [await blockAt(100, 1000), await blockAt(1140, 2000), await blockAt(3180, 500, true)]
    const far = await blockAt(500_000, 4096)
    const got = await rb.blocks(0, [...near, far])
    expect(reads.sort((a, b) => a[0] - b[0])).toEqual([[100, 3680], [500_000, 504_096]])
    expect((got[0] as Buffer).equals(car.subarray(100, 1100))).toBe(true)
    expect((got[1] as Buffer).equals(car.subarray(1140, 3140))).toBe(true)
    expect((got[2] as PackerError).message).toBe('block at 3180 is damaged')
    expect((got[3] as Buffer).equals(car.subarray(500_000, 504_096))).toBe(true)
    expect((got[0] as Buffer).buffer).toBeInstanceOf(SharedArrayBuffer)
    // asked again: the good ones from memory, the damaged one read again
    await rb.blocks(0, near.slice(0, 2))
    expect(reads.length).toBe(2)
    await rb.block(0, near[2]!).catch(() => {})
    expect(reads.length).toBe(3)
  })

  it('a failed read fails every block of its run, and is tried again when they are asked for again', async () => {
    const reads: Array<[number, number]> = []
    const rb = new RangedBlocks(reader(reads, { times: 1 }), { requests: 1, requestBytes: 1 << 20, recentBytes: 1 << 20 })
    const run = [await blockAt(0, 100), await blockAt(100, 100)]
    expect((await rb.blocks(0, run)).map((r) => r instanceof PackerError ? r.message : 'ok')).toEqual(['the store failed', 'the store failed'])
    expect((await rb.blocks(0, run)).map((r) => r instanceof PackerError ? r.message : 'ok')).toEqual(['ok', 'ok'])
    expect(reads).toEqual([[0, 200], [0, 200]])
  })
})
