import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, carFiles, describeTree, packerOk, tmpDir } from '../helpers.js'

/**
 * Memory bounded by construction: with PACKER_TEST_TINY_MEMORY=1 every bounded structure of a pack (a directory's
 * names while walking, the directory builders, the block-index sort) and of a rebuild goes to disk after a few entries,
 * as with millions of files. The set must not change: the same bytes, the same tree back.
 */
const TINY = { PACKER_TEST_TINY_MEMORY: '1' }
let src: string

beforeAll(() => {
  src = tmpDir()
  for (const d of ['wide', 'a/b/c', 'empty']) fs.mkdirSync(path.join(src, d), { recursive: true })
  for (let i = 0; i < 400; i++) fs.writeFileSync(path.join(src, 'wide', `n${(i * 7919) % 400}-${i}`), `entry ${i}\n`)
  for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(src, 'a/b/c', `f${i}`), bytes(1000 + i * 977, i))
  fs.writeFileSync(path.join(src, 'a/big.bin'), bytes(2_500_000, 9))
  fs.symlinkSync('wide', path.join(src, 'link'))
})

describe('packing with tiny in-memory limits (the on-disk paths)', () => {
  it('an unencrypted set is byte-identical to one packed with the normal limits, and rebuilds to the same manifest', async () => {
    const normal = tmpDir()
    const tiny = tmpDir()
    await packerOk(['pack', src, '-o', normal, '--no-encrypt', '-b', '2MiB'])
    await packerOk(['pack', src, '-o', tiny, '--no-encrypt', '-b', '2MiB'], { env: TINY })
    const names = carFiles(normal)
    expect(carFiles(tiny)).toEqual(names)
    for (const f of [...names, 'manifest.json', 'blocks.idx']) expect(fs.readFileSync(path.join(tiny, f)).equals(fs.readFileSync(path.join(normal, f))), f).toBe(true)
    const copy = tmpDir()
    for (const f of names) fs.copyFileSync(path.join(tiny, f), path.join(copy, f))
    await packerOk(['rebuild', copy], { env: TINY })
    const rebuilt = JSON.parse(fs.readFileSync(path.join(copy, 'manifest.json'), 'utf8'))
    expect({ ...rebuilt, createdBy: '' }).toEqual({ ...JSON.parse(fs.readFileSync(path.join(normal, 'manifest.json'), 'utf8')), createdBy: '' })
    expect(fs.readFileSync(path.join(copy, 'blocks.idx')).equals(fs.readFileSync(path.join(normal, 'blocks.idx')))).toBe(true)
  })

  it('an encrypted set with hidden names (one flat directory of every file) restores byte for byte', async () => {
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'k.txt')])).stdout.trim()
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '-r', recipient, '-b', '2MiB'], { env: TINY })
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest, '-i', path.join(keys, 'k.txt')], { env: TINY })
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
  })
})
