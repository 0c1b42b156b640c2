import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ROOT, tmpDir } from '../helpers.js'
import { sh, shOk, startMount } from './mount-helpers.js'
// @ts-expect-error: a plain .mjs generator shared with people regenerating vectors by hand
import { makeVectorTree } from '../../testdata/vectors/make-tree.mjs'

/**
 * The committed sets of both format versions mount and read like the vector tree (version 1: the whole table in
 * memory, version 2: its chunks on demand, both through the same tree).
 */
const VECTORS = path.join(ROOT, 'testdata/vectors')
let tree: string

beforeAll(() => {
  tree = path.join(tmpDir(), 'tree')
  makeVectorTree(tree, { small: true })
})

const SETS = [1, 2].flatMap((version) => {
  const dir = path.join(VECTORS, `v${version}`)
  const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8'))
  const sets: Array<{ name: string, dir: string, args: string[], env?: NodeJS.ProcessEnv }> = [
    { name: 'encrypted', dir, args: ['-i', path.join(VECTORS, expected.encrypted.identities[0]), '--expect', expected.encrypted.setId] },
    { name: 'encrypted-passphrase', dir, args: ['--passphrase', '--expect', expected.encryptedPassphrase.setId], env: { PACKER_PASSPHRASE: expected.encryptedPassphrase.passphrase } },
  ]
  // Version 2's clear set is pinned by its bytes, not committed.
  if (fs.existsSync(path.join(dir, 'plain'))) sets.push({ name: 'plain', dir, args: [] })
  return sets.map((s) => ({ ...s, version }))
})

describe.each(SETS)('the committed version-$version set $name, mounted', ({ name, dir, args, env }) => {
  it('matches the vector tree under diff -r and find -printf (modes, sizes, mtimes to the ms, targets)', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([path.join(dir, name), mnt, ...args], mnt, { env })
    try {
      expect(m.stdout()).toMatch(/: 4 files, 7 entries, /)
      const r = await sh(`diff -r --no-dereference ${tree} ${mnt}`)
      expect(r.stdout + r.stderr).toBe('')
      expect(r.code).toBe(0)
      const fmt = "find . -mindepth 1 -printf '%y %m %s %TY%Tm%Td%TH%TM%TS %l %p\\n' | sort"
      const [a, b] = await Promise.all([shOk(fmt, { cwd: tree }), shOk(fmt, { cwd: mnt })])
      // %TS prints seconds with nanoseconds: the mount has milliseconds (the vector's are .123456789 + i ns).
      const norm = (s: string): string[] => s.trim().split('\n').map((l) => {
        const [type, mode, size, time, ...rest] = l.split(' ')
        return [type, mode, type === 'd' ? 'D' : size, time.slice(0, time.indexOf('.') + 4), ...rest].join(' ')
      })
      expect(norm(b)).toEqual(norm(a))
      expect(norm(a)).toHaveLength(7)
    } finally { await m.cleanup() }
  })
})
