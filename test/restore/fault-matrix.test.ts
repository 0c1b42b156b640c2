/**
 * Every kind of damage to every CAR of a set: verify must report it, unpack must restore every file the damage does
 * not touch, and no file may ever appear in DEST with a wrong byte.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { parseTableIndex } from '../../src/format/table.js'
import { CarSet } from '../../src/read/car-set.js'
import { readStoredFile } from '../../src/read/set-table.js'
import { bytes, describeTree, oneLine, packer, packerOk, sha256, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'

let src: string
let pristine: string
let manifest: any
let table: any[]
let want: Map<string, any>
let tableCars: Set<number>

/** Deterministic "random" choices, so a failure reproduces. */
function rng (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32 }
}

beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'logs'))
  // Five CARs, one of each kind: big.bin's first and middle CARs, its last (with tiny.txt), one of whole logs, and
  // one of whole logs with the file table. (Each CAR is damaged five ways, each a verify and an unpack: a second
  // CAR of whole logs only would add ten launches that check what the first already does.)
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(src, 'logs', `day-${String(i).padStart(2, '0')}.log`), bytes(300_000 + i * 1000, 70 + i))
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(3 * MiB + 5, 90))
  fs.writeFileSync(path.join(src, 'tiny.txt'), 'tiny\n')
  pristine = tmpDir()
  const r = await packer(['pack', src, '-o', pristine, '--no-encrypt', '--bin-size', '1300000'], { env: { PACKER_STATE_DIR: tmpDir() } })
  expect(r.code).toBe(0)
  manifest = JSON.parse(fs.readFileSync(path.join(pristine, 'manifest.json'), 'utf8'))
  table = (await packerOk(['ls', pristine, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l))
  want = describeTree(src)
  expect(manifest.cars.length).toBeGreaterThanOrEqual(5)
  tableCars = await carsHoldingTheTable(pristine)
  expect(tableCars.size).toBeGreaterThan(0)
  expect(tableCars.size).toBeLessThan(manifest.cars.length)
})

/** The CARs holding a block of the file table (its index and chunks, each one raw block in this small set). */
async function carsHoldingTheTable (dir: string): Promise<Set<number>> {
  const set = await CarSet.open(dir, { skipTable: true })
  try {
    const index = CID.parse(set.manifest.table.cid)
    const { chunks } = parseTableIndex((await readStoredFile(set.blocks, index, 'table index')).toString(), 'index')
    const cids = [index, ...chunks.map((c) => CID.parse(c.cid))]
    expect(cids.every((c) => c.code === 0x55)).toBe(true)
    return new Set((await Promise.all(cids.map(async (c) => await set.blocks.carsOf(c)))).flat())
  } finally { await set.close() }
}

function copySet (): string {
  const dir = tmpDir()
  for (const n of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, n), path.join(dir, n))
  return dir
}

const DAMAGE = {
  delete: (set: string, car: any) => { fs.rmSync(path.join(set, car.file)) },
  truncate: (set: string, car: any, r: () => number) => { fs.truncateSync(path.join(set, car.file), Math.floor(r() * car.size)) },
  flip: (set: string, car: any, r: () => number) => {
    const p = path.join(set, car.file)
    const b = fs.readFileSync(p)
    const at = Math.floor(r() * b.length)
    b[at] ^= 1 << Math.floor(r() * 8)
    fs.writeFileSync(p, b)
  },
  swap: (set: string, car: any) => {
    const other = manifest.cars.find((c: any) => c.file !== car.file)
    const a = path.join(set, car.file)
    const b = path.join(set, other.file)
    fs.renameSync(a, a + '.x'); fs.renameSync(b, a); fs.renameSync(a + '.x', b)
  },
  duplicate: (set: string, car: any) => { fs.copyFileSync(path.join(set, car.file), path.join(set, `copy-of-${car.file}`)) },
} as const

describe('damage to each CAR', () => {
  for (const kind of Object.keys(DAMAGE) as Array<keyof typeof DAMAGE>) {
    it(`${kind}: verify reports it, unpack restores every untouched file and never a wrong byte`, async () => {
      for (const [i, car] of manifest.cars.entries()) {
        const r = rng(1000 * i + kind.length)
        const set = copySet()
        DAMAGE[kind](set, car, r)
        // Swapped or duplicated, every byte is still there: a swap is a naming fault (deal tools go by the name), a
        // copy beside the right file only a warning.
        const harmless = kind === 'swap' || kind === 'duplicate'

        const v = await packer(['verify', set])
        if (kind === 'duplicate') {
          expect(v.code, `${kind} CAR ${i}: ${v.stdout}`).toBe(0)
          expect(v.stderr).toContain(`copy-of-${car.file} is another copy of CAR ${car.file}`)
        } else if (kind === 'swap') {
          expect(v.code, `${kind} CAR ${i}`).toBe(1)
          const other = manifest.cars.find((c: any) => c.file !== car.file)
          expect(v.stdout).toMatch(new RegExp(`^MISNAMED +${car.file}: holds piece ${other.pieceCid}, not piece ${car.pieceCid}`, 'm'))
          expect(v.stdout).toMatch(new RegExp(`^MISNAMED +${other.file}: holds piece ${car.pieceCid}, not piece ${other.pieceCid}`, 'm'))
          expect(v.stderr).toMatch(/run 'packer verify --fix-names /)
        } else {
          expect(v.code, `${kind} CAR ${i}`).toBe(1)
          expect(v.stdout).toMatch(new RegExp(`^(MISSING|TRUNCATED|CORRUPT) +${car.file}`, 'm'))
          // Without its table the CARs are all checked still, and verify says why no file is named.
          if (kind === 'delete' && tableCars.has(i)) expect(v.stderr).toMatch(/warning: the file table cannot be read .*: (the|not every) file/)
        }

        const dest = tmpDir()
        const u = await packer(['unpack', set, '-o', dest])
        const got = describeTree(dest)
        if (u.code === 1 && /table (chunk|index)/.test(u.stderr)) {
          // The file table is in the CARs: damage to one holding it stops unpack before anything is written.
          expect(tableCars.has(i) && !harmless, `${kind} CAR ${i}: ${u.stderr}`).toBe(true)
          expect(oneLine(u.stderr)).toMatch(new RegExp(`CAR ${car.file}`))
          expect(got.size).toBe(0)
          continue
        }
        for (const [p, e] of got) {
          expect(p.includes('.packer-tmp-'), p).toBe(false)
          expect(e.sha256, `${kind} CAR ${i}: ${p} restored with wrong bytes`).toBe(want.get(p)?.sha256)
        }
        for (const f of table.filter((t) => t.type === 'file' && !t.cars.includes(i))) {
          expect(got.has(f.path), `${kind} CAR ${i}: untouched ${f.path} was not restored (${u.stderr})`).toBe(true)
        }
        const complete = [...want.keys()].every((p) => got.has(p))
        expect(u.code, `${kind} CAR ${i}: ${u.stderr}`).toBe(complete ? 0 : 1)
        if (!complete) expect(u.stderr).toMatch(/could not be restored/)
        if (harmless) expect(complete, `${kind} CAR ${i}: ${u.stderr}`).toBe(true)
        if (kind === 'swap') {
          expect(u.stderr).toMatch(/warning: 2 CAR\(s\) are not under their own names/)
          await packerOk(['verify', set, '--fix-names'])
          for (const c of manifest.cars) expect(sha256(fs.readFileSync(path.join(set, c.file))), c.file).toBe(sha256(fs.readFileSync(path.join(pristine, c.file))))
        }
      }
    })
  }
})

describe('what verify says is what is wrong', () => {
  it('a flipped header byte names the CAR as damaged, not lost', async () => {
    const set = copySet()
    const car = manifest.cars[1]
    const p = path.join(set, car.file)
    const b = fs.readFileSync(p)
    b[20] ^= 0xff
    fs.writeFileSync(p, b)
    const v = await packer(['verify', set])
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^CORRUPT +${car.file}: its header is damaged`, 'm'))
    expect(sha256(fs.readFileSync(path.join(pristine, car.file)))).not.toBe(sha256(b))
  })
})
