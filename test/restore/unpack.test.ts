/**
 * unpack's two ways of writing files (small files whole in native batches, the others streamed; every file streamed
 * without the addon) give the same tree, owners and setuid bits included; a file this packer cannot read is named.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { MiB, makeRoundTripTree } from '../fixtures.js'
import { forgeSet } from '../forge-set.js'

const isRoot = process.getuid?.() === 0
let src: string
let set: string

beforeAll(async () => {
  src = tmpDir()
  await makeRoundTripTree(src)
  for (const [name, size, mode] of [['setuid-small', 1000, 0o4755], ['setgid-large', 3 * MiB, 0o2750]] as const) {
    fs.writeFileSync(path.join(src, name), bytes(size, 60))
    if (isRoot) fs.chownSync(path.join(src, name), 1234, 5678)
    fs.chmodSync(path.join(src, name), mode)
  }
  set = tmpDir()
  await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: { PACKER_STATE_DIR: tmpDir() } })
})

describe('unpack writes every file the same way, with or without the native addon', () => {
  for (const [how, env] of [['native batches for small files', {}], ['without the addon', { PACKER_NO_NATIVE: '1' }]] as const) {
    it(`${how}: byte for byte, modes and mtimes${isRoot ? '; --same-owner keeps owners and setuid/setgid bits' : ''}`, async () => {
      const dest = tmpDir()
      await packerOk(['unpack', set, '-o', dest, ...(isRoot ? ['--same-owner'] : [])], { env })
      const got = describeTree(dest, { mtimes: env.PACKER_NO_NATIVE === undefined })
      expect(got).toEqual(describeTree(src, { mtimes: env.PACKER_NO_NATIVE === undefined }))
      expect(fs.readdirSync(dest).filter((n) => n.startsWith('.packer-tmp-'))).toEqual([])
      if (isRoot) {
        for (const name of ['setuid-small', 'setgid-large']) {
          const st = fs.statSync(path.join(dest, name))
          expect([st.uid, st.gid, st.mode & 0o7777], name).toEqual([1234, 5678, name === 'setuid-small' ? 0o4755 : 0o2750])
        }
      }
    })
  }
})

describe('a file this packer cannot read', () => {
  it('a file stored compressed: not restored, named, the others restored', async () => {
    const forged = tmpDir()
    await forgeSet(forged, { chunks: [[{ dir: '' }, { name: 'a', type: 'file', data: Buffer.from('alpha') }, { name: 'z', type: 'file', data: Buffer.from('zeta'), compression: 'zstd' }]] })
    const dest = tmpDir()
    const r = await packer(['unpack', forged, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('packer: warning: not restored: z is stored compressed (zstd), which this packer cannot read yet; upgrade packer\n')
    expect(r.stderr).toMatch(/1 file\(s\) could not be restored \(first: z is stored compressed/)
    expect(fs.readdirSync(dest)).toEqual(['a'])
  })
})

describe('the output of unpack', () => {
  it('into a DEST that exists and holds other files: they stay; the set is restored beside them', async () => {
    const dest = tmpDir()
    fs.writeFileSync(path.join(dest, 'mine.txt'), 'not from the set')
    await packerOk(['unpack', set, '-o', dest])
    expect(fs.readFileSync(path.join(dest, 'mine.txt'), 'utf8')).toBe('not from the set')
    fs.rmSync(path.join(dest, 'mine.txt'))
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('a file in the way is refused before anything is written, naming it', async () => {
    const dest = tmpDir()
    fs.mkdirSync(path.join(dest, 'deep'))
    fs.writeFileSync(path.join(dest, 'deep', 'a'), 'a file where the set has a directory')
    const r = await packer(['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toBe(`packer: ${path.join(dest, 'deep/a')} exists and is not a directory; remove it or restore elsewhere`)
    expect(fs.readdirSync(dest)).toEqual(['deep'])
  })
})
