/**
 * A CAR's file name is what deal tools and storage providers go by: verify reports a CAR under a name not its own
 * (MISNAMED, exit 1), readers still read by content but warn, and `verify --fix-names` renames without ever
 * overwriting or deleting a file.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, describeTree, packer, packerOk, sha256, tmpDir } from '../helpers.js'

let src: string
let pristine: string
let cars: any[]
/** sha256 of each CAR file of the pristine set, by name. */
let carHashes: Map<string, string>

beforeAll(async () => {
  src = tmpDir()
  for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), bytes(900_000 + i, 500 + i))
  pristine = tmpDir()
  await packerOk(['pack', src, '-o', pristine, '--no-encrypt', '--bin-size', '1300000'], { env: { PACKER_STATE_DIR: tmpDir() } })
  cars = JSON.parse(fs.readFileSync(path.join(pristine, 'manifest.json'), 'utf8')).cars
  expect(cars.length).toBeGreaterThanOrEqual(4)
  carHashes = new Map(cars.map((c) => [c.file, sha256(fs.readFileSync(path.join(pristine, c.file)))]))
})

function copySet (): string {
  const dir = tmpDir()
  for (const n of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, n), path.join(dir, n))
  return dir
}

/** Moves the contents of CAR files in a cycle: files[0]'s bytes go under files[1]'s name, …, the last's under files[0]'s. */
function rotate (dir: string, files: string[]): void {
  const p = (f: string): string => path.join(dir, f)
  fs.renameSync(p(files[files.length - 1]), p('parked'))
  for (let i = files.length - 1; i > 0; i--) fs.renameSync(p(files[i - 1]), p(files[i]))
  fs.renameSync(p('parked'), p(files[0]))
}

/** Every manifest CAR is under its own name with its pristine bytes, and no temporary is left. */
function expectNamesRight (dir: string): void {
  for (const c of cars) expect(sha256(fs.readFileSync(path.join(dir, c.file))), c.file).toBe(carHashes.get(c.file))
  expect(fs.readdirSync(dir).filter((n) => n.includes('packer-rename'))).toEqual([])
}

const misnamedLine = (holder: any, held: any): RegExp =>
  new RegExp(`^MISNAMED +${holder.file}: holds piece ${held.pieceCid}, not piece ${holder.pieceCid} as its name says; it should be named ${held.file}$`, 'm')

describe('two CARs swapped', () => {
  it('verify: MISNAMED naming both pieces, exit 1, and the fix to run; --json carries the status', async () => {
    const set = copySet()
    const [a, b] = cars
    rotate(set, [a.file, b.file])
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(misnamedLine(a, b))
    expect(v.stdout).toMatch(misnamedLine(b, a))
    for (const c of cars.slice(2)) expect(v.stdout).toMatch(new RegExp(`^OK +${c.file}: `, 'm'))
    expect(v.stderr).toBe(`packer: 2 of ${cars.length} CAR(s) under names not their own in ${set}: run 'packer verify --fix-names ${set}' (deal tools and storage providers take a CAR by its name)\n`)

    const j = await packer(['verify', set, '--json'])
    expect(j.code).toBe(1)
    const lines = j.stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.map((l) => [l.car, l.status, l.file])).toEqual(cars.map((c, i) =>
      i === 0 ? [a.file, 'misnamed', b.file] : i === 1 ? [b.file, 'misnamed', a.file] : [c.file, 'ok', c.file]))
  })

  it('unpack and ls warn once but read by content: the tree restores byte for byte', async () => {
    const set = copySet()
    rotate(set, [cars[0].file, cars[1].file])
    const warning = `packer: warning: 2 CAR(s) are not under their own names (${cars[0].file} is found as ${cars[1].file}, ${cars[1].file} is found as ${cars[0].file}); ` +
      `they are read by content, but deal tools and storage providers go by the name: run 'packer verify --fix-names ${set}'\n`
    const l = await packerOk(['ls', set])
    expect(l.stdout.trim().split('\n')).toEqual(['f0.bin', 'f1.bin', 'f2.bin', 'f3.bin', 'f4.bin'])
    expect(l.stderr).toBe(warning)
    const dest = tmpDir()
    const u = await packerOk(['unpack', set, '-o', dest, '-q'])
    expect(u.stderr).toBe(warning)
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('--fix-names renames both, verify then passes and unpack restores byte for byte', async () => {
    const set = copySet()
    rotate(set, [cars[0].file, cars[1].file])
    const f = await packer(['verify', set, '--fix-names'])
    expect(f.code, f.stderr).toBe(0)
    expect(f.stdout).toContain(`renamed ${cars[1].file} -> ${cars[0].file}\n`)
    expect(f.stdout).toContain(`renamed ${cars[0].file} -> ${cars[1].file}\n`)
    expect(f.stdout).toMatch(new RegExp(`^all ${cars.length} CAR\\(s\\) verified; 2 renamed to their own names in `, 'm'))
    expectNamesRight(set)
    const v = await packerOk(['verify', set])
    expect(v.stdout).not.toMatch(/MISNAMED/)
    const dest = tmpDir()
    const u = await packerOk(['unpack', set, '-o', dest])
    expect(u.stderr).toBe('')
    expect(describeTree(dest)).toEqual(describeTree(src))
  })
})

describe('other misplacements', () => {
  it('a cycle of three CARs: each named, --fix-names puts all three right', async () => {
    const set = copySet()
    const [a, b, c] = cars
    rotate(set, [a.file, b.file, c.file]) // a's bytes under b's name, b's under c's, c's under a's
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(misnamedLine(b, a))
    expect(v.stdout).toMatch(misnamedLine(c, b))
    expect(v.stdout).toMatch(misnamedLine(a, c))
    const f = await packerOk(['verify', set, '--fix-names', '--json'])
    const renames = f.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.renamed)
    expect(renames.sort((x, y) => x.to.localeCompare(y.to))).toEqual([
      { renamed: b.file, to: a.file }, { renamed: c.file, to: b.file }, { renamed: a.file, to: c.file },
    ].sort((x, y) => x.to.localeCompare(y.to)))
    expectNamesRight(set)
    await packerOk(['verify', set])
  })

  it('a CAR renamed, its own name absent: MISNAMED (exit 1) until --fix-names gives it back its name', async () => {
    const set = copySet()
    const car = cars[2]
    fs.renameSync(path.join(set, car.file), path.join(set, 'retrieved.car'))
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^MISNAMED +retrieved\\.car: holds piece ${car.pieceCid}; it should be named ${car.file}, which is missing$`, 'm'))
    expect(v.stderr).toMatch(/1 of \d+ CAR\(s\) under names not their own/)
    const f = await packerOk(['verify', set, '--fix-names'])
    expect(f.stdout).toContain(`renamed retrieved.car -> ${car.file}\n`)
    expectNamesRight(set)
    expect(fs.existsSync(path.join(set, 'retrieved.car'))).toBe(false)
    await packerOk(['verify', set])
  })

  it('an extra copy under another name beside the right one: a warning, exit 0; --fix-names leaves it', async () => {
    const set = copySet()
    const car = cars[1]
    fs.copyFileSync(path.join(set, car.file), path.join(set, `copy-of-${car.file}`))
    const warning = `packer: warning: copy-of-${car.file} is another copy of CAR ${car.file} (by its header; not read); deal tools need only ${car.file}\n`
    const v = await packerOk(['verify', set])
    expect(v.stdout).not.toMatch(/MISNAMED/)
    expect(v.stderr).toBe(warning)
    const f = await packerOk(['verify', set, '--fix-names'])
    expect(f.stdout).not.toMatch(/renamed/)
    expect(f.stderr).toBe(warning)
    expectNamesRight(set)
    expect(sha256(fs.readFileSync(path.join(set, `copy-of-${car.file}`)))).toBe(carHashes.get(car.file))
  })

  it('a CAR\'s name holding a copy of another CAR, its own piece nowhere: MISSING, saying what the name holds', async () => {
    const set = copySet()
    const [a, b] = cars
    fs.copyFileSync(path.join(set, b.file), path.join(set, a.file))
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^MISSING +${a.file}: not found in ${set}; the file of that name has the header of CAR ${b.file}$`, 'm'))
    expect(v.stdout).toMatch(new RegExp(`^AFFECTED  f0\\.bin: has blocks in ${a.file}$`, 'm'))
    expect(v.stdout).toMatch(new RegExp(`^OK +${b.file}: `, 'm'))
    const f = await packer(['verify', set, '--fix-names'])
    expect(f.stdout).not.toMatch(/renamed/)
    expect(sha256(fs.readFileSync(path.join(set, a.file)))).toBe(carHashes.get(b.file))
  })
})

describe('--fix-names never loses a file', () => {
  it('an unrelated file under a CAR\'s name stays; that CAR is not renamed; the rest are', async () => {
    const set = copySet()
    const [a, b, c, d] = cars
    fs.renameSync(path.join(set, a.file), path.join(set, 'moved.car'))
    fs.writeFileSync(path.join(set, a.file), 'not a CAR: notes someone kept here\n')
    rotate(set, [b.file, c.file])
    fs.renameSync(path.join(set, d.file), path.join(set, 'd-elsewhere.car'))
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^MISNAMED +moved\\.car: holds piece ${a.pieceCid}; it should be named ${a.file}; ${a.file} holds another file, which is not a CAR of this set$`, 'm'))
    const f = await packer(['verify', set, '--fix-names'])
    expect(f.code).toBe(1)
    expect(f.stdout).toContain(`not renamed moved.car -> ${a.file}: ${a.file} holds another file; move it away, then rerun\n`)
    expect(f.stdout).toContain(`renamed ${c.file} -> ${b.file}\n`)
    expect(f.stdout).toContain(`renamed ${b.file} -> ${c.file}\n`)
    expect(f.stdout).toContain(`renamed d-elsewhere.car -> ${d.file}\n`)
    expect(f.stderr).toBe(`packer: 1 of ${cars.length} CAR(s) under names not their own in ${set}: see the lines above\n`)
    expect(fs.readFileSync(path.join(set, a.file), 'utf8')).toBe('not a CAR: notes someone kept here\n')
    expect(sha256(fs.readFileSync(path.join(set, 'moved.car')))).toBe(carHashes.get(a.file))
    for (const x of [b, c, d]) expect(sha256(fs.readFileSync(path.join(set, x.file)))).toBe(carHashes.get(x.file))

    // Moved away, the notes file no longer blocks: a rerun finishes, and the notes are still there.
    fs.renameSync(path.join(set, a.file), path.join(set, 'notes.txt'))
    await packerOk(['verify', set, '--fix-names'])
    expectNamesRight(set)
    expect(fs.readFileSync(path.join(set, 'notes.txt'), 'utf8')).toBe('not a CAR: notes someone kept here\n')
  })

  it('a chain through a blocked name: nothing in it moves', async () => {
    const set = copySet()
    const [a, b] = cars
    // a's bytes under b's name, b's bytes elsewhere, and a's name held by an unrelated file.
    fs.renameSync(path.join(set, b.file), path.join(set, 'b-elsewhere.car'))
    fs.renameSync(path.join(set, a.file), path.join(set, b.file))
    fs.writeFileSync(path.join(set, a.file), 'unrelated\n')
    const f = await packer(['verify', set, '--fix-names'])
    expect(f.code).toBe(1)
    expect(f.stdout).toContain(`not renamed ${b.file} -> ${a.file}: ${a.file} holds another file; move it away, then rerun\n`)
    expect(f.stdout).toContain(`not renamed b-elsewhere.car -> ${b.file}: ${b.file} cannot be renamed first\n`)
    expect(f.stdout).not.toMatch(/^renamed/m)
    expect(fs.readFileSync(path.join(set, a.file), 'utf8')).toBe('unrelated\n')
    expect(sha256(fs.readFileSync(path.join(set, b.file)))).toBe(carHashes.get(a.file))
    expect(sha256(fs.readFileSync(path.join(set, 'b-elsewhere.car')))).toBe(carHashes.get(b.file))
  })
})
