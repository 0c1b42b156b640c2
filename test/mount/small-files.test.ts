import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, packerOk, tmpDir } from '../helpers.js'
import { flipByte, sh, shOk, startMount, waitFor } from './mount-helpers.js'
import { CarSet } from '../../src/read/car-set.js'
import { CID } from 'multiformats/cid'

/**
 * A tree of small files through the mount, as `diff -r` reads it (lookup, open, one read, release per file): each
 * small file's only block is opened in one native call, so this checks that path byte for byte, the attributes the
 * kernel is given, and that a damaged small file is EIO while its neighbours read.
 */
const SIZES = [0, 1, 100, 4095, 4096, 12_000, 65_535, 65_536, 65_537, 200_000]
let src: string
let set: string
let key: string

beforeAll(async () => {
  src = tmpDir()
  for (let d = 0; d < 3; d++) {
    fs.mkdirSync(path.join(src, `d${d}`))
    for (const [i, n] of SIZES.entries()) fs.writeFileSync(path.join(src, `d${d}`, `f${i}.bin`), bytes(n, 100 * d + i))
    fs.symlinkSync(`f1.bin`, path.join(src, `d${d}`, 'link'))
  }
  fs.chmodSync(path.join(src, 'd1/f2.bin'), 0o600)
  fs.utimesSync(path.join(src, 'd2/f3.bin'), 1_600_000_000, 1_600_000_000.25)
  const work = tmpDir()
  key = path.join(work, 'key.txt')
  const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
  set = path.join(work, 'set')
  await packerOk(['pack', src, '-o', set, '-r', recipient, '-q'])
})

/** Size, mode, type and modification time (ms) of every entry, sorted by path: what ls -l and diff see. */
const attrs = async (dir: string): Promise<string> => await shOk(`cd '${dir}' && find . -mindepth 1 -printf '%p %s %m %y %TY-%Tm-%Td %TT\\n' | sed -E 's/([0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3})[0-9]*/\\1/' | sort`)

describe('small files through the mount', () => {
  it('diff -r finds no difference; sizes, modes, types and times are the source\'s', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([set, mnt, '-i', key], mnt)
    try {
      const r = await sh(`diff -r --no-dereference '${src}' '${mnt}'`)
      expect(r.stdout + r.stderr).toBe('')
      expect(r.code).toBe(0)
      expect(await attrs(mnt)).toBe(await attrs(src))
    } finally { await m.cleanup() }
  })

  it('a damaged small file gives EIO and a log line naming it and its CAR; the others read', async () => {
    const dir = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(dir, n))
    const { readIdentityFile } = await import('../../src/crypto/index.js')
    const s = await CarSet.open(dir, { identities: await readIdentityFile(key) })
    const e = (await s.files.lookup(Buffer.from('d1/f5.bin')))!
    const loc = await s.blocks.locate(CID.parse(e.cid!))
    const car = s.manifest.cars[loc.car].file
    await s.close()
    flipByte(path.join(dir, car), loc.offset + Math.floor(loc.length / 2), 0x10)
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([dir, mnt, '-i', key], mnt)
    try {
      const r = await sh(`cat '${mnt}/d1/f5.bin' > /dev/null`)
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/Input\/output error/)
      expect(await waitFor(async () => m.stderr().includes(car), 2000)).toBe(true)
      expect(m.stderr()).toMatch(new RegExp(`d1/f5\\.bin.*${car}.*does not match its hash`))
      const rest = await sh(`diff -r --no-dereference -x f5.bin '${src}' '${mnt}'`)
      expect(rest.stdout + rest.stderr).toBe('')
    } finally { await m.cleanup() }
  })
})
