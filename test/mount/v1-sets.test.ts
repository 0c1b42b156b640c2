import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ROOT, tmpDir } from '../helpers.js'
import { sh, shOk, startMount } from './mount-helpers.js'
// @ts-expect-error: a plain .mjs generator shared with people regenerating vectors by hand
import { makeVectorTree } from '../../testdata/vectors/make-tree.mjs'

/** The committed version-1 sets (whole table in memory, read through the same tree) mount and read like the tree. */
const VECTORS = path.join(ROOT, 'testdata/vectors')
const V1 = path.join(VECTORS, 'v1')
const expected = JSON.parse(fs.readFileSync(path.join(V1, 'expected.json'), 'utf8'))
let tree: string

beforeAll(() => {
  tree = path.join(tmpDir(), 'tree')
  makeVectorTree(tree, { small: true })
})

const SETS: Array<{ name: string, args: string[], env?: NodeJS.ProcessEnv }> = [
  { name: 'plain', args: [] },
  { name: 'encrypted', args: ['-i', path.join(VECTORS, expected.encrypted.identities[0]), '--expect', expected.encrypted.setId] },
  { name: 'encrypted-passphrase', args: ['--passphrase', '--expect', expected.encryptedPassphrase.setId], env: { PACKER_PASSPHRASE: expected.encryptedPassphrase.passphrase } },
]

describe.each(SETS)('the committed version-1 set $name, mounted', ({ name, args, env }) => {
  it('matches the vector tree under diff -r and find -printf (modes, sizes, mtimes to the ms, targets)', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([path.join(V1, name), mnt, ...args], mnt, { env })
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
