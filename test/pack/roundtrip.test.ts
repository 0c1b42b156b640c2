import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CarReader } from '@ipld/car'
import { carFiles, describeTree, packer, packerOk, tmpDir } from '../helpers.js'
import { MiB, makeRoundTripTree } from '../fixtures.js'

const memo = <T>(make: () => Promise<T>): () => Promise<T> => {
  let p: Promise<T> | undefined
  return async () => await (p ??= make())
}
/** One round-trip tree for the tests that only read it (none writes into it). */
const roundTripTree = memo(async () => {
  const src = tmpDir()
  await makeRoundTripTree(src)
  return src
})
/** Its set at --bin-size 2MiB: the first pack of that tree, checked by the first test, compared by the last. */
const packed2MiB = memo(async () => {
  const out = tmpDir()
  const run = await packerOk(['pack', await roundTripTree(), '-o', out, '--no-encrypt', '--bin-size', '2MiB'])
  return { out, run }
})

describe('pack --no-encrypt → unpack round trip', () => {
  it('restores every byte, mode, mtime (ns), symlink and awkward name', async () => {
    const src = await roundTripTree()
    const { out, run: p } = await packed2MiB()
    const dest = path.join(tmpDir(), 'restored')
    expect(p.stdout).toMatch(/^packed 13 files/m)
    expect(p.stdout).toMatch(/^root bafy/m)

    // A file larger than two bins spans at least three CARs, and no CAR exceeds the bin.
    const cars = carFiles(out)
    expect(cars.length).toBeGreaterThanOrEqual(5)
    for (const c of cars) expect(fs.statSync(path.join(out, c)).size).toBeLessThanOrEqual(2 * MiB)
    const ls = await packerOk(['ls', out, '--json'])
    const big = ls.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.path === 'big/spans-cars.bin')
    expect(big.cars.length).toBeGreaterThanOrEqual(3)

    // Every CAR but the last is filled to within one block (1 MiB + section overhead) of the bin size.
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    for (const c of manifest.cars.slice(0, -1)) expect(c.size).toBeGreaterThan(2 * MiB - MiB - 200)

    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('packs a single file: its CID is the root and it restores under its name', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'solo.bin'), Buffer.alloc(3 * MiB, 7))
    const out = tmpDir()
    await packerOk(['pack', path.join(dir, 'solo.bin'), '-o', out, '--no-encrypt'])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    // Buffer.equals, not toEqual: toEqual walks a 3 MiB Buffer element by element (~30 s of CPU) for the same answer.
    const restored = fs.readFileSync(path.join(dest, 'solo.bin'))
    expect(restored.length).toBe(3 * MiB)
    expect(restored.equals(Buffer.alloc(3 * MiB, 7)), 'solo.bin restored byte for byte').toBe(true)
  })

  it('packs an empty directory into a valid set', async () => {
    const src = tmpDir()
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    const dest = tmpDir()
    const r = await packerOk(['unpack', out, '-o', dest])
    expect(r.stdout).toMatch(/restored 0 files/)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('restores only the named paths, with their parent directories', async () => {
    const src = await roundTripTree()
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest, 'deep/a/b', 'one-byte'])
    const got = describeTree(dest)
    expect([...got.keys()].sort()).toEqual(['deep', 'deep/a', 'deep/a/b', 'deep/a/b/c', 'deep/a/b/c/leaf.txt', 'one-byte'])
    const full = describeTree(src)
    for (const [k, v] of got) expect(v).toEqual(full.get(k))
  })

  it('refuses to overwrite existing files unless --overwrite', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.txt'), 'new content')
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    const dest = tmpDir()
    fs.writeFileSync(path.join(dest, 'a.txt'), 'old content')
    const r = await packer(['unpack', out, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/a\.txt already exists; .*--overwrite/)
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('old content')
    await packerOk(['unpack', out, '-o', dest, '--overwrite'])
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('new content')
  })

  it('writes CARs every reader accepts, each with one root', async () => {
    const src = await roundTripTree()
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '3MiB'])
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    for (const c of manifest.cars) {
      const reader = await CarReader.fromBytes(fs.readFileSync(path.join(out, c.file)))
      const roots = await reader.getRoots()
      expect(roots.map(String)).toEqual([c.root])
      let n = 0
      for await (const _ of reader.blocks()) n++
      expect(n).toBe(c.blocks)
      expect(c.file).toBe(`${c.pieceCid}.car`)
    }
  })

  it('packs the same tree to the same bytes every time', async () => {
    // a: the tree's first pack (made by the first test, or here when run alone); b: another pack of it, later.
    const src = await roundTripTree()
    const { out: a } = await packed2MiB()
    const b = tmpDir()
    await packerOk(['pack', src, '-o', b, '--no-encrypt', '--bin-size', '2MiB'])
    expect(carFiles(a)).toEqual(carFiles(b))
    for (const c of carFiles(a)) expect(fs.readFileSync(path.join(a, c)).equals(fs.readFileSync(path.join(b, c)))).toBe(true)
  })
})

describe('many files', () => {
  it('round-trips 10 000 small files', async () => {
    const src = tmpDir()
    for (let d = 0; d < 10; d++) {
      fs.mkdirSync(path.join(src, `d${d}`))
      for (let f = 0; f < 1000; f++) fs.writeFileSync(path.join(src, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`)
    }
    const out = tmpDir()
    const p = await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    expect(p.stdout).toMatch(/^packed 10000 files/m)
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })
})
