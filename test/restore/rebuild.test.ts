import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { varint } from 'multiformats'
import { bytes, describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { forgeSet } from '../forge-set.js'
import { MiB } from '../fixtures.js'

const env = (): NodeJS.ProcessEnv => ({ PACKER_STATE_DIR: tmpDir() })

function tree (): string {
  const src = tmpDir()
  fs.mkdirSync(path.join(src, 'docs'))
  fs.writeFileSync(path.join(src, 'docs/a.txt'), 'alpha\n')
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(5 * MiB + 1, 81))
  fs.symlinkSync('docs/a.txt', path.join(src, 'link'))
  return src
}

/** Keeps only the CARs, under other names (retrieved-<position in the set>.car): as a retrieval gives them back. */
function onlyCars (set: string): string {
  const dir = tmpDir()
  const m = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
  m.cars.forEach((c: any, i: number) => fs.copyFileSync(path.join(set, c.file), path.join(dir, `retrieved-${i}.car`)))
  return dir
}

/** The manifest and index rebuilt in `cars` are the pack's in `set` (CAR file names aside); the tree restores. */
async function expectRebuiltAs (cars: string, set: string, src: string): Promise<void> {
  const strip = (m: any): any => ({ ...m, createdBy: '', cars: m.cars.map((c: any) => ({ ...c, file: '' })) })
  const manifest = (dir: string): any => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
  expect(strip(manifest(cars))).toEqual(strip(manifest(set)))
  expect(fs.readFileSync(path.join(cars, 'blocks.idx')).equals(fs.readFileSync(path.join(set, 'blocks.idx')))).toBe(true)
  const dest = tmpDir()
  await packerOk(['unpack', cars, '-o', dest])
  expect(describeTree(dest)).toEqual(describeTree(src))
}

describe('rebuild: a lost manifest and index are remade from the CARs alone', () => {
  it('unencrypted, renamed CARs: same root, set ID, piece CIDs and index; the tree restores', async () => {
    const src = tree()
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const original = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    const cars = onlyCars(set)
    const r = await packerOk(['rebuild', cars])
    expect(r.stdout).toMatch(new RegExp(`rebuilt .*: ${original.cars.length} CAR\\(s\\), root ${original.root}, set ID ${original.table.cid}`))
    await expectRebuiltAs(cars, set, src)
  })

  it('encrypted: the recipients are read from the table header; the key restores the tree', async () => {
    const src = tree()
    const keys = tmpDir()
    await packerOk(['keygen', '--rsa', '-o', keys])
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '-R', path.join(keys, 'certificate.pem'), '--bin-size', '2MiB'], { env: env() })
    const original = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    const cars = onlyCars(set)
    await packerOk(['rebuild', cars])
    const rebuilt = JSON.parse(fs.readFileSync(path.join(cars, 'manifest.json'), 'utf8'))
    expect(rebuilt.encryption).toEqual(original.encryption)
    expect(rebuilt.table.cid).toBe(original.table.cid)
    const dest = tmpDir()
    await packerOk(['unpack', cars, '-o', dest, '-i', path.join(keys, 'private_key.pem'), '--expect', original.table.cid])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('refuses with one line when a CAR is missing, or when a manifest is there (without --force)', async () => {
    const src = tree()
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const cars = onlyCars(set)
    const n = fs.readdirSync(cars).length
    expect(n).toBeGreaterThanOrEqual(3)
    fs.rmSync(path.join(cars, 'retrieved-0.car'))
    const r = await packer(['rebuild', cars])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^packer: 1 of the set's \d+ CARs are not in .*; a manifest can only be rebuilt from all of them\n$/)
    fs.rmSync(path.join(cars, `retrieved-${n - 1}.car`)) // the last CAR holds the set descriptor
    const last = await packer(['rebuild', cars])
    expect(last.code).toBe(1)
    expect(last.stderr).toMatch(/^packer: no packer set descriptor in the CARs of .*: the last CAR of the set is missing/)
    const again = await packer(['rebuild', set])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/already has a manifest\.json; pass --force/)
    await packerOk(['rebuild', set, '--force'])
    await packerOk(['verify', set])
  })

  it('a duplicated CAR and CARs of another set beside them are left out, with a warning each', async () => {
    const src = tree()
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const another = tmpDir()
    fs.writeFileSync(path.join(another, 'big.bin'), bytes(3 * MiB, 82))
    fs.writeFileSync(path.join(another, 'small.txt'), 'another set\n')
    const other = tmpDir()
    await packerOk(['pack', another, '-o', other, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const original = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    const foreign = JSON.parse(fs.readFileSync(path.join(other, 'manifest.json'), 'utf8')).cars
    expect(foreign.length).toBeGreaterThanOrEqual(3)
    const cars = onlyCars(set)
    fs.copyFileSync(path.join(cars, 'retrieved-1.car'), path.join(cars, 'copy-1.car'))
    fs.copyFileSync(path.join(other, foreign[0].file), path.join(cars, 'stranger.car'))
    const r = await packerOk(['rebuild', cars])
    expect(r.stderr).toContain('warning: retrieved-1.car duplicates copy-1.car; ignored')
    expect(r.stderr).toContain(`warning: stranger.car is not a CAR of this set (set ID ${original.table.cid}); ignored`)
    await expectRebuiltAs(cars, set, src)

    // The other set's last CAR too: its descriptor is found, but only this set is complete.
    const last = foreign[foreign.length - 1]
    fs.copyFileSync(path.join(other, last.file), path.join(cars, 'stranger-last.car'))
    await packerOk(['rebuild', cars, '--force'])
    await expectRebuiltAs(cars, set, src)
    // Both sets whole in one directory: which one to rebuild is not for packer to guess.
    for (const c of foreign) fs.copyFileSync(path.join(other, c.file), path.join(cars, `other-${c.file}`))
    const both = await packer(['rebuild', cars, '--force'])
    expect(both.code).toBe(1)
    expect(oneLine(both.stderr)).toMatch(/holds the CARs of 2 sets \(set IDs .*\); put each set's CARs in a directory of their own and rebuild each$/)
  })

  it('a CAR cut short at a block boundary beside the whole one: refused, naming both', async () => {
    const src = tree()
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const cars = onlyCars(set)
    // The last CAR: many blocks (a CAR of this tree before it holds one 1 MiB block).
    const last = `retrieved-${fs.readdirSync(cars).length - 1}.car`
    const whole = fs.readFileSync(path.join(cars, last))
    const [headerLength, h] = varint.decode(whole)
    const [sectionLength, s] = varint.decode(whole, h + headerLength)
    fs.writeFileSync(path.join(cars, 'short.car'), whole.subarray(0, h + headerLength + s + sectionLength))
    const r = await packer(['rebuild', cars])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/^packer: retrieved-\d\.car \(\d+ bytes\) and short\.car \(\d+ bytes\) start with the same block but differ: one is damaged or not of this set; move the wrong one away/)
    expect(fs.existsSync(path.join(cars, 'manifest.json'))).toBe(false)
  })

  it('a set whose CARs are listed in CAR-list blocks (as sets of over 16 384 CARs are)', async () => {
    const set = tmpDir()
    const files = Array.from({ length: 6 }, (_, i) => ({ name: `f${i}`, type: 'file' as const, data: bytes(700_000, 90 + i) }))
    const forged = await forgeSet(set, { chunks: [[{ dir: '' }, ...files]], binSize: 1_200_000, carListSize: 2 })
    expect(forged.cars.length).toBeGreaterThanOrEqual(4)
    const cars = onlyCars(set)
    await packerOk(['rebuild', cars])
    const rebuilt = JSON.parse(fs.readFileSync(path.join(cars, 'manifest.json'), 'utf8'))
    expect(rebuilt.cars.map((c: any) => c.root)).toEqual(forged.cars.map((c) => c.root))
    expect({ ...rebuilt, createdBy: '', cars: [] }).toEqual({ ...forged, createdBy: '', cars: [] })
    const dest = tmpDir()
    await packerOk(['unpack', cars, '-o', dest])
    for (const f of files) expect(fs.readFileSync(path.join(dest, f.name)).equals(f.data)).toBe(true)
  })
})

