import fs from 'node:fs'
import path from 'node:path'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { CarSetWriter } from '../../src/car/car-set-writer.js'
import { dirCarSink } from '../../src/car/dir-sink.js'
import { createPieceHasher } from '../../src/car/piece-hasher.js'
import type { CarDraft, CarSink } from '../../src/car/set-output.js'
import { tmpDir } from '../helpers.js'

/** Deterministic pseudo-random bytes (xorshift32). */
function bytesOf (n: number, seed: number): Buffer {
  const out = Buffer.alloc(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** Raw blocks of 1–20 KiB (small sections the writer gathers) and a few of 300 KiB (written as they are). */
async function blocks (count: number): Promise<Array<{ cid: CID, bytes: Buffer }>> {
  const out = []
  for (let i = 0; i < count; i++) {
    const bytes = bytesOf(i % 97 === 0 ? 300 * 1024 : 1024 + (i * 7919) % (19 * 1024), i + 1)
    out.push({ cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes })
  }
  return out
}

/**
 * A sink that reads what it is given late (after a random delay, as a slow disk or network would), and keeps both
 * that and a copy taken when `write` was called: a buffer changed before its release shows as a difference.
 */
function lateReadingSink (opts: { release: boolean }): { sink: CarSink, late: Buffer[], early: Buffer[], gathered: { writes: number, buffers: Set<ArrayBufferLike> } } {
  const late: Buffer[] = []
  const early: Buffer[] = []
  // The writes of gathered sections (the writer's 1 MiB buffers), and the distinct buffers they came in.
  const gathered = { writes: 0, buffers: new Set<ArrayBufferLike>() }
  const sink: CarSink = {
    begin: async () => {
      const reads: Array<Promise<void>> = []
      const draft: CarDraft = {
        write: async (bytes, release) => {
          early.push(Buffer.from(bytes))
          if (bytes.buffer.byteLength === 1024 * 1024) {
            gathered.writes++
            gathered.buffers.add(bytes.buffer)
          }
          const slot = late.length
          late.push(Buffer.alloc(0))
          reads.push(new Promise((resolve) => setTimeout(() => {
            late[slot] = Buffer.from(bytes)
            if (opts.release) release?.()
            resolve()
          }, (slot * 13) % 5)))
          if (reads.length > 8) await reads.shift()
        },
        commit: async () => { await Promise.all(reads) },
        discard: async () => {},
      }
      return draft
    },
  }
  return { sink, late, early, gathered }
}

describe('the CAR writer reuses its write buffers only once the hasher and the sink let go of them', () => {
  it('a sink that reads late gets the bytes of the moment they were written, and the piece CID is theirs', async () => {
    const input = await blocks(4000)
    const { sink, late, early, gathered } = lateReadingSink({ release: true })
    const writer = new CarSetWriter({ sink, binSize: 1 << 30, onRecord: () => {} })
    for (const b of input) await writer.put(b.cid, b.bytes)
    const [car] = await writer.finish()
    expect(Buffer.concat(late).equals(Buffer.concat(early))).toBe(true)
    const bytes = Buffer.concat(early)
    expect(car!.size).toBe(bytes.length)
    // Every block's bytes are in the CAR, in order (the CAR's own layout is pinned by the format vectors).
    let at = 0
    for (const b of input) {
      at = bytes.indexOf(b.bytes, at)
      expect(at).toBeGreaterThan(0)
      at += b.bytes.length
    }
    const reference = createPieceHasher() // given the bytes at once: no buffer is reused
    await reference.update(bytes)
    expect(car!.pieceCid).toBe((await reference.digest()).pieceCid)
    // The test means something only if buffers were reused.
    expect(gathered.writes).toBeGreaterThan(10)
    expect(gathered.buffers.size).toBeLessThan(gathered.writes / 2)
  })

  it('a sink that never lets go gets a new buffer every time, the same bytes', async () => {
    const input = await blocks(400)
    const { sink, late, early, gathered } = lateReadingSink({ release: false })
    const writer = new CarSetWriter({ sink, binSize: 1 << 30, onRecord: () => {} })
    for (const b of input) await writer.put(b.cid, b.bytes)
    await writer.finish()
    expect(Buffer.concat(late).equals(Buffer.concat(early))).toBe(true)
    expect(gathered.buffers.size).toBe(gathered.writes)
  })

  it('CARs written to a directory are byte for byte those of a sink that copies at once', async () => {
    const input = await blocks(1200)
    const dir = tmpDir()
    const onDisk = new CarSetWriter({ sink: dirCarSink(dir), binSize: 4 * 1024 * 1024, onRecord: () => {} })
    for (const b of input) await onDisk.put(b.cid, b.bytes)
    const cars = await onDisk.finish()
    const { sink, early } = lateReadingSink({ release: false })
    const copied = new CarSetWriter({ sink, binSize: 4 * 1024 * 1024, onRecord: () => {} })
    for (const b of input) await copied.put(b.cid, b.bytes)
    expect((await copied.finish()).map((c) => c.pieceCid)).toEqual(cars.map((c) => c.pieceCid))
    expect(cars.length).toBeGreaterThan(2)
    expect(Buffer.concat(cars.map((c) => fs.readFileSync(path.join(dir, c.file)))).equals(Buffer.concat(early))).toBe(true)
  })
})
