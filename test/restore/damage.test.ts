import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ROOT, bytes, describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'

const V1_PLAIN = path.join(ROOT, 'testdata/vectors/v1/plain')

/** A set of three files over several 2 MiB CARs; `big` spans CARs, `a` and `b` are small. */
let src: string
let pristine: string
let manifest: any

function copySet (): string {
  const dir = tmpDir()
  for (const n of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, n), path.join(dir, n))
  return dir
}


beforeAll(async () => {
  src = tmpDir()
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n')
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(5 * MiB, 21))
  fs.writeFileSync(path.join(src, 'z.txt'), 'zulu\n')
  pristine = tmpDir()
  await packerOk(['pack', src, '-o', pristine, '--no-encrypt', '--bin-size', '2MiB'])
  manifest = JSON.parse(fs.readFileSync(path.join(pristine, 'manifest.json'), 'utf8'))
})

/** The CAR holding some of big.bin's blocks but not the first or last CAR (from `ls --json`, which names them). */
async function middleCarOf (file: string): Promise<any> {
  const entries = (await packerOk(['ls', pristine, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l))
  const e = entries.find((t) => t.path === file)
  return manifest.cars[e.cars[1]]
}

describe('a missing CAR', () => {
  it('verify names it and the files it holds; exit 1', async () => {
    const set = copySet()
    const car = await middleCarOf('big.bin')
    fs.rmSync(path.join(set, car.file))
    const r = await packer(['verify', set])
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(`MISSING   ${car.file}`)
    expect(r.stdout).toContain(`AFFECTED  big.bin: has blocks in ${car.file}\n`)
    expect(r.stdout.match(/^AFFECTED/gm)).toHaveLength(1)
    expect(oneLine(r.stderr)).toMatch(/1 of \d+ CAR\(s\) missing or damaged/)
  })

  it('unpack restores every file it can, names the CAR, leaves nothing under the damaged name', async () => {
    const set = copySet()
    const car = await middleCarOf('big.bin')
    fs.rmSync(path.join(set, car.file))
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`CAR ${car.file}`)
    expect(r.stderr).toMatch(/is missing from .*; retrieve it and copy it there/)
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('alpha\n')
    expect(fs.readFileSync(path.join(dest, 'z.txt'), 'utf8')).toBe('zulu\n')
    expect(fs.readdirSync(dest).sort()).toEqual(['a.txt', 'z.txt'])
  })
})

describe('a partly retrieved set', () => {
  it('ls --missing names the files not fully available and the CARs each needs', async () => {
    const set = copySet()
    const car = await middleCarOf('big.bin')
    fs.rmSync(path.join(set, car.file))
    const r = await packer(['ls', set, '--missing'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`big.bin\tneeds ${car.file}\n`)
    expect(r.stderr).toBe('1 file(s) not fully available\n')
    const json = await packer(['ls', set, '--missing', '--json'])
    expect(JSON.parse(json.stdout)).toEqual({ path: 'big.bin', cars: [car.file] })
    expect((await packer(['ls', pristine, '--missing'])).stdout).toBe('')
  })

  it('--cars reads CARs kept apart from the manifest (where a retrieval put them)', async () => {
    const meta = tmpDir()
    const cars = tmpDir()
    for (const n of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, n), path.join(n.endsWith('.car') ? cars : meta, n))
    const dest = tmpDir()
    await packerOk(['unpack', meta, '--cars', cars, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
    await packerOk(['verify', meta, '--cars', cars])
  })
})

describe('a damaged CAR', () => {
  it('truncated: verify says TRUNCATED, unpack refuses the file', async () => {
    const set = copySet()
    const car = await middleCarOf('big.bin')
    const p = path.join(set, car.file)
    fs.truncateSync(p, Math.floor(car.size / 2))
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toContain(`TRUNCATED ${car.file}`)
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`CAR ${car.file} is (truncated|damaged)`))
    expect(fs.existsSync(path.join(dest, 'big.bin'))).toBe(false)
    expect(fs.readdirSync(dest).filter((n) => n.includes('packer-tmp'))).toEqual([])
  })

  it('one flipped byte: the block hash check catches it in verify and unpack', async () => {
    const set = copySet()
    const car = await middleCarOf('big.bin')
    const p = path.join(set, car.file)
    const buf = fs.readFileSync(p)
    buf[buf.length - 1000] ^= 0x01
    fs.writeFileSync(p, buf)
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`CORRUPT +${car.file}: block \\S+ does not match its hash`))
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/is damaged: block \S+ at byte \d+ does not match its hash; retrieve the CAR again/)
    expect(fs.existsSync(path.join(dest, 'big.bin'))).toBe(false)
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('alpha\n')
  })

  it('renamed CARs are still read by their content; verify says they are misnamed until --fix-names', async () => {
    const set = copySet()
    for (const [i, c] of manifest.cars.entries()) fs.renameSync(path.join(set, c.file), path.join(set, `renamed-${i}.car`))
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    for (const [i, c] of manifest.cars.entries()) {
      expect(v.stdout).toMatch(new RegExp(`^MISNAMED +renamed-${i}\\.car: holds piece ${c.pieceCid}; it should be named ${c.file}, which is missing$`, 'm'))
    }
    const dest = tmpDir()
    const u = await packerOk(['unpack', set, '-o', dest])
    expect(u.stderr).toMatch(new RegExp(`^packer: warning: ${manifest.cars.length} CAR\\(s\\) are not under their own names \\(${manifest.cars[0].file} is found as renamed-0\\.car`))
    expect(describeTree(dest)).toEqual(describeTree(src))
    await packerOk(['verify', set, '--fix-names'])
    expect(fs.readdirSync(set).filter((n) => n.endsWith('.car')).sort()).toEqual(manifest.cars.map((c: any) => c.file).sort())
    await packerOk(['verify', set])
  })
})

describe('a damaged manifest', () => {
  it('that is not JSON', async () => {
    const set = copySet()
    fs.writeFileSync(path.join(set, 'manifest.json'), '{"format": "packer-car-set", ')
    const r = await packer(['ls', set])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/manifest\.json: not valid JSON; the manifest is damaged/)
  })

  it('from an unknown format version', async () => {
    const set = copySet()
    fs.writeFileSync(path.join(set, 'manifest.json'), JSON.stringify({ ...manifest, version: 99 }))
    const r = await packer(['unpack', set, '-o', tmpDir()])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/manifest version 99 is not supported by this packer \(it reads versions 1 and 2\); upgrade packer/)
  })

  it('a directory that is not a set', async () => {
    const r = await packer(['ls', tmpDir()])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/manifest\.json not found: .* is not a packer set/)
  })

  it('a version-1 file table beside the manifest that was swapped for another is refused by its CID', async () => {
    const set = tmpDir()
    for (const n of fs.readdirSync(V1_PLAIN)) fs.copyFileSync(path.join(V1_PLAIN, n), path.join(set, n))
    const table = path.join(set, 'table.jsonl')
    fs.writeFileSync(table, fs.readFileSync(table, 'utf8').replace('"size":14', '"size":15'))
    const r = await packer(['ls', set])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toBe(`packer: ${table} does not match the set's table bafkreibfupmluhhuqpwlq6wceud3v5fnxk3qhyf3h67kndxjbo3hpfkeba; delete it to read the table from the CARs`)
    fs.rmSync(table)
    expect((await packerOk(['ls', set])).stdout).toContain('hello.txt\n')
  })

  it('a manifest whose set ID names another block of the set: not a table index', async () => {
    const set = copySet()
    fs.writeFileSync(path.join(set, 'manifest.json'), JSON.stringify({ ...manifest, table: { cid: manifest.cars[0].root } }))
    const r = await packer(['ls', set])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/^packer: table index of .* line 1: not valid JSON; the file table is damaged or not from packer$/)
  })
})
