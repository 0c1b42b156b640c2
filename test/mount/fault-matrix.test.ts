/**
 * The damage matrix through the mount: for a CAR of a set deleted, truncated, given a flipped byte, swapped with
 * another or duplicated, every file read through the mount is either exactly its bytes or an I/O error (never a
 * wrong byte, never a hang), files the damage does not touch read whole, and the log names the CAR. Swapped CARs
 * read whole (found by content) with a warning that they are not under their own names.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, packerOk, sha256, tmpDir } from '../helpers.js'
import { sh, startMount } from './mount-helpers.js'
import { CarSet } from '../../src/read/car-set.js'

let src: string
let pristine: string
let manifest: any
const table: Array<{ path: string, type: string, cars: number[] }> = []

beforeAll(async () => {
  src = tmpDir()
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(src, `small-${i}.bin`), bytes(400_000 + i, 300 + i))
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(3 * 1024 * 1024 + 9, 399))
  pristine = tmpDir()
  await packerOk(['pack', src, '-o', pristine, '--no-encrypt', '--bin-size', '1300000'], { env: { PACKER_STATE_DIR: tmpDir() } })
  manifest = JSON.parse(fs.readFileSync(path.join(pristine, 'manifest.json'), 'utf8'))
  const set = await CarSet.open(pristine)
  try {
    for await (const e of set.files.entries()) table.push({ path: e.path.toString(), type: e.type, cars: e.cars ?? [] })
  } finally { await set.close() }
})

const DAMAGE: Record<string, (dir: string, car: any) => void> = {
  delete: (dir, car) => fs.rmSync(path.join(dir, car.file)),
  truncate: (dir, car) => fs.truncateSync(path.join(dir, car.file), Math.floor(car.size * 0.6)),
  flip: (dir, car) => { const p = path.join(dir, car.file); const b = fs.readFileSync(p); b[b.length - 5000] ^= 0x10; fs.writeFileSync(p, b) },
  swap: (dir, car) => {
    const other = manifest.cars.find((c: any) => c.file !== car.file)
    const a = path.join(dir, car.file); const b = path.join(dir, other.file)
    fs.renameSync(a, a + '.x'); fs.renameSync(b, a); fs.renameSync(a + '.x', b)
  },
  duplicate: (dir, car) => fs.copyFileSync(path.join(dir, car.file), path.join(dir, `copy-${car.file}`)),
}

describe('mount over a damaged CAR', () => {
  for (const kind of Object.keys(DAMAGE)) {
    it(`${kind}: exact bytes or EIO for every file; untouched files whole; the CAR named in the log`, async () => {
      const carIndex = table.find((t) => t.path === 'big.bin').cars[1]
      const car = manifest.cars[carIndex]
      const set = tmpDir()
      for (const n of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, n), path.join(set, n))
      DAMAGE[kind](set, car)
      const mnt = tmpDir('packer-mnt-')
      const m = await startMount([set, mnt], mnt)
      try {
        const harmless = kind === 'swap' || kind === 'duplicate'
        for (const f of table.filter((t) => t.type === 'file')) {
          const r = await sh(`timeout 20 cat '${path.join(mnt, f.path)}' | sha256sum; exit \${PIPESTATUS[0]}`)
          const want = sha256(fs.readFileSync(path.join(src, f.path)))
          if (r.code === 0) expect(r.stdout.split(' ')[0], `${kind}: ${f.path}`).toBe(want)
          else expect(r.code, `${kind}: ${f.path} (124 = hang)`).toBe(1) // cat's status for a read error (EIO)
          if (harmless || !f.cars.includes(carIndex)) expect(r.code, `${kind}: ${f.path} should read whole`).toBe(0)
        }
        // A swap is read by content, with one warning naming the CARs; a copy beside the right file needs none.
        if (kind === 'swap') expect(m.stderr()).toMatch(new RegExp(`warning: 2 CAR\\(s\\) are not under their own names \\(.*${car.file} is found as `))
        if (kind === 'duplicate') expect(m.stderr()).not.toMatch(/not under their own names/)
        if (!harmless) {
          const bad = await sh(`cat '${path.join(mnt, 'big.bin')}' > /dev/null`)
          expect(bad.code).toBe(1)
          expect(bad.stderr).toMatch(/Input\/output error/)
          expect(m.stderr()).toContain(car.file)
        }
      } finally { await m.cleanup() }
    })
  }
})
