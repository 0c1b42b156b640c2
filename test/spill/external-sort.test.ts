import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { ExternalSorter } from '../../src/spill/external-sort.js'
import { run, tmpDir } from '../helpers.js'

/** Everything under dir, recursively (the sorter's runs live in a subdirectory of it). */
function filesUnder (dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile())
}

/** The records as hex strings (vitest compares strings far faster than Buffers). */
async function collect (it: AsyncIterable<Uint8Array>): Promise<string[]> {
  const out: string[] = []
  for await (const r of it) out.push(Buffer.from(r).toString('hex'))
  return out
}

const hex = (records: Buffer[]): string[] => records.map((r) => r.toString('hex'))

/** Deterministic records of random lengths (0 to max ≤ 126 bytes) and contents. */
function randomRecords (n: number, max: number, seed: string): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const h = Buffer.concat([crypto.createHash('sha512').update(`${seed}:${i}`).digest(), crypto.createHash('sha512').update(`${seed}:${i}:2`).digest()])
    return Buffer.from(h.subarray(2, 2 + h.readUInt16BE(0) % (max + 1)))
  })
}

/** A sorter in a new directory, given the records. */
async function filled (records: Uint8Array[], memoryLimit: number, keyBytes = Infinity): Promise<{ dir: string, sorter: ExternalSorter }> {
  const dir = tmpDir()
  const sorter = new ExternalSorter({ dir, memoryLimit, keyBytes })
  for (const r of records) await sorter.add(r)
  return { dir, sorter }
}

describe('ExternalSorter', () => {
  it('sorts random variable-length records as Array.sort does, through runs on disk merged in passes', async () => {
    const records = randomRecords(30_000, 120, 'a')
    // Records that extend others, empty ones, and ones sharing their first 6 bytes: ties on the first 4 bytes and
    // prefix order are exercised.
    for (let i = 0; i < 500; i++) records.push(Buffer.concat([records[i], Buffer.from([i & 3])]), Buffer.alloc(0), Buffer.concat([Buffer.from('AAAAAA'), records[i + 500]]))
    const { dir, sorter } = await filled(records, 16 * 1024)
    // Well over the merge fan-in (64): the merge passes ran.
    expect(sorter.runs).toBeGreaterThan(64)
    expect(filesUnder(dir).length).toBe(sorter.runs)
    const out = await collect(sorter.sorted())
    expect(out).toEqual(hex([...records].sort(Buffer.compare)))
    // The runs are removed as the merge ends.
    expect(filesUnder(dir)).toEqual([])
    await sorter.dispose()
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it("makes its directory when its first run spills (a pack's work directory has no sub-directories yet)", async () => {
    const records = randomRecords(3000, 60, 'c')
    const dir = path.join(tmpDir(), 'work', 'hidden')
    const sorter = new ExternalSorter({ dir, memoryLimit: 16 * 1024, keyBytes: Infinity })
    for (const r of records) await sorter.add(r)
    expect(sorter.runs).toBeGreaterThan(1)
    expect(await collect(sorter.sorted())).toEqual(hex([...records].sort(Buffer.compare)))
    await sorter.dispose()
  })

  it('sorts in memory alone when the records fit, writing nothing', async () => {
    const records = randomRecords(2000, 60, 'b')
    const { dir, sorter } = await filled(records, 64 * 1024 * 1024)
    expect(await collect(sorter.sorted())).toEqual(hex([...records].sort(Buffer.compare)))
    expect(sorter.runs).toBe(0)
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('is stable: records that compare equal come out in the order they were added, across runs', async () => {
    // Key: one byte (many equal keys); then the insertion number, which the order ignores.
    const records: Buffer[] = []
    for (let i = 0; i < 20_000; i++) {
      const r = Buffer.alloc(5)
      r[0] = crypto.createHash('md5').update(String(i)).digest()[0] % 7
      r.writeUInt32BE(i, 1)
      records.push(r)
    }
    const { dir, sorter } = await filled(records, 2048, 1)
    expect(sorter.runs).toBeGreaterThan(64)
    const out = await collect(sorter.sorted())
    const expected = [...records].sort((a, b) => a[0] - b[0] || a.readUInt32BE(1) - b.readUInt32BE(1))
    expect(out).toEqual(hex(expected))
    await sorter.dispose()
  })

  it('carries records larger than its read buffer, and copies what it is given (the caller may reuse its buffer)', async () => {
    const dir = tmpDir()
    const sizes = [0, 1, 127, 128, 16_383, 16_384, 131_071, 131_072, 131_083, 300_000, 1_000_000]
    const records = sizes.map((n, i) => Buffer.concat([Buffer.from([(i * 37) % 11]), crypto.randomBytes(n)]))
    const sorter = new ExternalSorter({ dir, memoryLimit: 200_000, keyBytes: Infinity })
    const reused = Buffer.alloc(1_000_001)
    for (const r of records) {
      r.copy(reused)
      await sorter.add(reused.subarray(0, r.length))
      reused.fill(0xee)
    }
    expect(sorter.runs).toBeGreaterThan(2)
    expect(await collect(sorter.sorted())).toEqual(hex([...records].sort(Buffer.compare)))
    await sorter.dispose()
  })

  it('yields nothing when empty; refuses add() after sorted() and a second sorted()', async () => {
    const dir = tmpDir()
    const sorter = new ExternalSorter({ dir, memoryLimit: 1024, keyBytes: Infinity })
    expect(await collect(sorter.sorted())).toEqual([])
    await expect(sorter.add(Buffer.from('x'))).rejects.toThrow('ExternalSorter: add() after sorted()')
    expect(() => sorter.sorted()).toThrow('ExternalSorter: sorted() called twice')
    await sorter.dispose()
  })

  it('dispose() removes its runs whether or not they were merged', async () => {
    const { dir, sorter } = await filled(randomRecords(3000, 40, 'c'), 1024)
    expect(sorter.runs).toBeGreaterThan(10)
    expect(filesUnder(dir).length).toBe(sorter.runs)
    await sorter.dispose()
    expect(fs.readdirSync(dir)).toEqual([])
    await sorter.dispose() // twice is harmless
  })

  it('sorts by the key bytes only: what follows the key keeps the insertion order', async () => {
    const records = randomRecords(5000, 20, 'k').map((r, i) => Buffer.concat([r.subarray(0, 6), Buffer.from(String(5000 - i))]))
    const { dir, sorter } = await filled(records, 4096, 6)
    expect(sorter.runs).toBeGreaterThan(10)
    const key = (r: Buffer): Buffer => r.subarray(0, Math.min(6, r.length))
    expect(await collect(sorter.sorted())).toEqual(hex(records.map((r, i) => ({ r, i })).sort((a, b) => Buffer.compare(key(a.r), key(b.r)) || a.i - b.i).map((x) => x.r)))
    await sorter.dispose()
  })

  it('leaves no files after dispose() when its consumer fails in the middle of the merge', async () => {
    const { dir, sorter } = await filled(randomRecords(20_000, 30, 'd'), 2048)
    expect(sorter.runs).toBeGreaterThan(64)
    let seen = 0
    await expect((async () => {
      for await (const _ of sorter.sorted()) if (++seen === 5000) throw new Error('consumer failed')
    })()).rejects.toThrow('consumer failed')
    await sorter.dispose()
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('fails on a damaged run (cut short) in the middle of the merge, and leaves no files after dispose()', async () => {
    const { dir, sorter } = await filled(randomRecords(3000, 30, 'e'), 8192)
    const runs = filesUnder(dir)
    // Fewer runs than the fan-in: no merge pass, the damage shows while records are being yielded.
    expect(runs.length).toBeGreaterThan(5)
    expect(runs.length).toBeLessThan(64)
    const victim = path.join(dir, runs[3])
    fs.truncateSync(victim, fs.statSync(victim).size - 1)
    let seen = 0
    await expect((async () => { for await (const _ of sorter.sorted()) seen++ })()).rejects.toThrow('ExternalSorter: a run file ends inside a record')
    expect(seen).toBeGreaterThan(0)
    await sorter.dispose()
    expect(fs.readdirSync(dir)).toEqual([])
  })

  it('says NO_SPACE, naming its directory, when its device is full (a 256 KiB tmpfs), and cleans up', async () => {
    const dir = tmpDir()
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir])
    expect(mounted.code, mounted.stderr).toBe(0)
    try {
      const sorter = new ExternalSorter({ dir, memoryLimit: 64 * 1024, keyBytes: Infinity })
      let err: unknown
      try {
        for (const r of randomRecords(20_000, 100, 'f')) await sorter.add(r)
      } catch (e) { err = e }
      expect(err).toBeInstanceOf(PackerError)
      expect((err as PackerError).code).toBe('NO_SPACE')
      expect((err as PackerError).message).toBe(`no space left on the device of ${dir} for temporary sort files; free space there or choose another temporary directory`)
      await sorter.dispose()
      expect(fs.readdirSync(dir)).toEqual([])
    } finally {
      await run('umount', [dir])
    }
  })
})
