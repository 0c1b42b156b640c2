/**
 * Memory bounded by construction: a set of 20 000 entries packed with tiny table chunks (PACKER_TEST_TABLE_CHUNK_BYTES)
 * so that its table has over a thousand chunks, far more than a reader keeps. unpack, ls and verify stream it: the
 * table reader never holds more than its few chunks, and reads each chunk about once per pass.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CarSet } from '../../src/read/car-set.js'
import { restore } from '../../src/restore/restorer.js'
import { CACHED_CHUNKS, TableV2 } from '../../src/read/set-table.js'
import { verifySet } from '../../src/restore/verifier.js'
import { filesIn } from '../../src/read/availability.js'
import { describeTree, packerOk, tmpDir } from '../helpers.js'

let src: string
let set: string
const DEEP = 40

beforeAll(async () => {
  src = tmpDir()
  // 120 directories of 150 files, a chain of 40 nested directories of 40 files each, and 200 symlinks.
  for (let d = 0; d < 120; d++) {
    const dir = path.join(src, 'wide', `d${String(d).padStart(3, '0')}`)
    fs.mkdirSync(dir, { recursive: true })
    for (let f = 0; f < 150; f++) fs.writeFileSync(path.join(dir, `f${String(f).padStart(3, '0')}`), `${d}/${f} `.repeat(20))
  }
  let deep = path.join(src, 'deep')
  for (let l = 0; l < DEEP; l++) {
    deep = path.join(deep, `l${String(l).padStart(2, '0')}`)
    fs.mkdirSync(deep, { recursive: true })
    for (let f = 0; f < 40; f++) fs.writeFileSync(path.join(deep, `g${f}`), `${l}.${f}`)
  }
  fs.mkdirSync(path.join(src, 'links'))
  for (let i = 0; i < 200; i++) fs.symlinkSync(`../wide/d${String(i % 120).padStart(3, '0')}`, path.join(src, 'links', `s${i}`))
  set = tmpDir()
  await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '1200000'], { env: { PACKER_STATE_DIR: tmpDir(), PACKER_TEST_TABLE_CHUNK_BYTES: '2048' } })
}, 600_000)

/** A set opened in this process, its version-2 table's counters, and its directories (each a run of entries). */
async function open (): Promise<{ s: CarSet, table: TableV2 }> {
  const s = await CarSet.open(set)
  expect(s.files).toBeInstanceOf(TableV2)
  const table = s.files as TableV2
  expect(table.header.entries).toBe(1 + 120 + 18_000 + 1 + DEEP * 41 + 1 + 200)
  expect(table.chunkCount).toBeGreaterThan(1000)
  return { s, table }
}
const DIRECTORIES = 1 + 1 + 120 + 1 + DEEP + 1 // runs of entries: the root, wide, its 120, deep, its chain, links

describe('reading a set of 20 000 entries in 1000+ table chunks', () => {
  it('unpack: byte for byte, in two passes that read each chunk about once, holding at most the cached chunks', async () => {
    const { s, table } = await open()
    const dest = tmpDir()
    const r = await restore(s, { dest, paths: [], overwrite: false, sameOwner: false, warn: (m) => { throw new Error(m) } })
    expect(r).toMatchObject({ files: 18_000 + DEEP * 40, dirs: 120 + 1 + DEEP + 1 + 1, symlinks: 200, already: 0, failed: 0 })
    expect(describeTree(dest)).toEqual(describeTree(src))
    expect(table.stats.maxCached).toBeLessThanOrEqual(CACHED_CHUNKS)
    // Each pass reads every chunk once, and at most one more per directory checked (its parent's entries).
    expect(table.stats.chunkReads).toBeLessThanOrEqual(2 * (table.chunkCount + DIRECTORIES))
  })

  it('unpack PATH…: only the chunks of those subtrees and their parents', async () => {
    const { s, table } = await open()
    const dest = tmpDir()
    const chain = Array.from({ length: 11 }, (_, l) => `l${String(l).padStart(2, '0')}`).join('/')
    await restore(s, { dest, paths: [Buffer.from('wide/d007'), Buffer.from(`deep/${chain}`)], overwrite: false, sameOwner: false, warn: () => {} })
    const got = describeTree(dest)
    const want = new Map([...describeTree(src)].filter(([p]) => p.startsWith('wide/d007') || p.startsWith(`deep/${chain}`) ||
      ['wide', 'deep'].includes(p) || `deep/${chain}`.startsWith(p + '/')))
    expect(got.size).toBe(2 + 151 + 10 + (DEEP - 10) * 41) // wide, deep; d007 and its files; the parents; l10 down
    expect(got).toEqual(want)
    expect(table.stats.maxCached).toBeLessThanOrEqual(CACHED_CHUNKS)
    expect(table.stats.chunkReads).toBeLessThan(table.chunkCount / 4)
  })

  it('ls: every entry streamed once; a directory or a path read from its own chunks', async () => {
    const { s, table } = await open()
    try {
      let n = 0
      for await (const e of table.entries()) { n++; expect(e.number).toBe(n - 1) }
      expect(n).toBe(table.header.entries)
      expect(table.stats.chunkReads).toBeLessThanOrEqual(table.chunkCount + DIRECTORIES)
      expect(table.stats.maxCached).toBeLessThanOrEqual(CACHED_CHUNKS)
      const before = table.stats.chunkReads
      const names = []
      for await (const e of table.list(Buffer.from('wide/d119'))) names.push(e.path.toString())
      expect(names).toEqual(Array.from({ length: 150 }, (_, f) => `wide/d119/f${String(f).padStart(3, '0')}`))
      expect((await table.lookup(Buffer.from('wide/d060/f075')))?.size).toBe(fs.statSync(path.join(src, 'wide/d060/f075')).size)
      expect(table.stats.chunkReads - before).toBeLessThan(30)
    } finally { await s.close() }
  })

  it('verify: the files affected by a missing CAR in one streamed pass', async () => {
    const copy = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(copy, n))
    const m = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    expect(m.cars.length).toBeGreaterThanOrEqual(3)
    fs.rmSync(path.join(copy, m.cars[1].file))
    const s = await CarSet.open(copy)
    try {
      const table = s.files as TableV2
      const report = await verifySet(s)
      expect(report.cars.map((c) => c.status)).toEqual(m.cars.map((_: unknown, i: number) => i === 1 ? 'missing' : 'ok'))
      const affected = []
      for await (const f of filesIn(s, new Set([1]))) affected.push(f)
      const want = []
      for await (const e of table.entries()) if (e.cars?.includes(1)) want.push({ path: e.path.toString(), cars: [m.cars[1].file] })
      expect(affected.length).toBeGreaterThan(1000)
      expect(affected).toEqual(want)
      expect(table.stats.maxCached).toBeLessThanOrEqual(CACHED_CHUNKS)
    } finally { await s.close() }
  })
})
