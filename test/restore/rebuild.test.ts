import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, describeTree, packer, packerOk, tmpDir } from '../helpers.js'
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

describe('rebuild: a lost manifest and index are remade from the CARs alone', () => {
  it('unencrypted, renamed CARs: same root, set ID, piece CIDs and index; the tree restores', async () => {
    const src = tree()
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    const original = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    const cars = onlyCars(set)
    const r = await packerOk(['rebuild', cars])
    expect(r.stdout).toMatch(new RegExp(`rebuilt .*: ${original.cars.length} CAR\\(s\\), root ${original.root}, set ID ${original.table.cid}`))
    const rebuilt = JSON.parse(fs.readFileSync(path.join(cars, 'manifest.json'), 'utf8'))
    const strip = (m: any): any => ({ ...m, createdBy: '', cars: m.cars.map((c: any) => ({ ...c, file: '' })) })
    expect(strip(rebuilt)).toEqual(strip(original))
    expect(fs.readFileSync(path.join(cars, 'blocks.idx')).equals(fs.readFileSync(path.join(set, 'blocks.idx')))).toBe(true)
    const dest = tmpDir()
    await packerOk(['unpack', cars, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
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
})
