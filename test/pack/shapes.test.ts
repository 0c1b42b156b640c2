import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { describeTree, packerOk, tmpDir } from '../helpers.js'

const env = (): NodeJS.ProcessEnv => ({ PACKER_STATE_DIR: tmpDir() })

describe('awkward tree shapes round-trip', () => {
  it('20 000 files in one directory (a sharded UnixFS directory), encrypted with hidden names and in clear', async () => {
    const src = tmpDir()
    fs.mkdirSync(path.join(src, 'flat'))
    for (let i = 0; i < 20_000; i++) fs.writeFileSync(path.join(src, 'flat', `entry-${i}`), `${i}\n`)
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'k.txt')])).stdout.trim()
    const want = describeTree(src) // the source does not change: described once, compared with both restores
    for (const args of [['--no-encrypt'], ['-r', recipient]]) {
      const out = tmpDir()
      await packerOk(['pack', src, '-o', out, ...args], { env: env() })
      const dest = tmpDir()
      await packerOk(['unpack', out, '-o', dest, ...(args[0] === '-r' ? ['-i', path.join(keys, 'k.txt')] : [])])
      expect(describeTree(dest)).toEqual(want)
    }
  })

  it('a tree 100 levels deep', async () => {
    const src = tmpDir()
    let dir = src
    for (let i = 0; i < 100; i++) { dir = path.join(dir, `level-${i}`); fs.mkdirSync(dir) }
    fs.writeFileSync(path.join(dir, 'bottom.txt'), 'the bottom\n')
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'], { env: env() })
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
    const ls = (await packerOk(['ls', out])).stdout.trim().split('\n')
    expect(ls).toHaveLength(101)
    expect(ls[100]).toMatch(/level-99\/bottom\.txt$/)
  })
})
