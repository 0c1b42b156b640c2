import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, describeTree, packerOk, tmpDir } from '../helpers.js'
import { BlockIndex } from '../../src/car/block-index.js'
// @ts-expect-error: a plain .mjs generator shared with people regenerating vectors by hand
import { makeVectorTree } from '../../testdata/vectors/make-tree.mjs'

const VECTORS = path.join(ROOT, 'testdata/vectors')
const isRoot = process.getuid?.() === 0
const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')
const expectedOf = (version: string): any => JSON.parse(fs.readFileSync(path.join(VECTORS, version, 'expected.json'), 'utf8'))

async function records (file: string, cars: number): Promise<string[]> {
  const index = await BlockIndex.read(file, cars)
  const out: string[] = []
  try {
    for await (const r of index.records()) out.push(`${r.digest.toString('hex')} ${r.car} ${r.offset} ${r.length}`)
  } finally { await index.close() }
  return out
}

/** The committed encrypted sets of a version restore the small vector tree with every key, and rebuild from their CARs. */
function committedSets (version: string): void {
  const dir = path.join(VECTORS, version)
  const expected = expectedOf(version)

  it('the committed encrypted set (X25519 + RSA certificate) restores the vector tree with either key', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    for (const id of expected.encrypted.identities) {
      const dest = tmpDir()
      await packerOk(['unpack', path.join(dir, 'encrypted'), '-o', dest, '-i', path.join(VECTORS, id), '--expect', expected.encrypted.setId])
      expect(describeTree(dest)).toEqual(describeTree(tree))
    }
  })

  it('the committed encrypted set rebuilds from its CAR alone to the same manifest and index records', async () => {
    const copy = tmpDir()
    const set = path.join(dir, 'encrypted')
    for (const n of fs.readdirSync(set).filter((f) => f.endsWith('.car'))) fs.copyFileSync(path.join(set, n), path.join(copy, n))
    await packerOk(['rebuild', copy])
    const want = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
    const got = JSON.parse(fs.readFileSync(path.join(copy, 'manifest.json'), 'utf8'))
    expect({ ...got, createdBy: '' }).toEqual({ ...want, createdBy: '' })
    expect(await records(path.join(copy, 'blocks.idx'), want.cars.length)).toEqual(await records(path.join(set, 'blocks.idx'), want.cars.length))
  })

  it('the committed passphrase set restores the vector tree', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    const dest = tmpDir()
    await packerOk(['unpack', path.join(dir, 'encrypted-passphrase'), '-o', dest, '--expect', expected.encryptedPassphrase.setId],
      { env: { PACKER_PASSPHRASE: expected.encryptedPassphrase.passphrase } })
    expect(describeTree(dest)).toEqual(describeTree(tree))
  })
}

/** Any change to how packer lays out bytes must fail here: bump the format version and regenerate instead. */
describe('format version 2 test vectors', () => {
  const expected = expectedOf('v2')

  it('the unencrypted vector tree packs to the pinned root, table, index, CAR bytes and piece CIDs', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree)
    const out = tmpDir()
    await packerOk(['pack', tree, '-o', out, '--no-encrypt', '--bin-size', String(expected.plain.binSize)])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(m.version).toBe(2)
    expect(m.root).toBe(expected.plain.root)
    // The file table records owners; the pinned bytes were made as root (owner 0:0), as CI runs.
    if (!isRoot) return
    expect(m.table.cid).toBe(expected.plain.setId)
    expect(m.descriptor).toBe(expected.plain.descriptor)
    expect(m.index.blocks).toBe(expected.plain.blocks)
    expect(sha256(path.join(out, 'blocks.idx'))).toBe(expected.plain.index)
    expect(m.cars.map((c: any) => ({ ...c, sha256: sha256(path.join(out, c.file)) }))).toEqual(expected.plain.cars)
  })

  committedSets('v2')
})

/** Sets written by packer 0.1 (format version 1) stay readable: never written any more, always read. */
describe('format version 1 test vectors (read only)', () => {
  it('the committed unencrypted version-1 set (the small vector tree) restores byte for byte', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    const dest = tmpDir()
    await packerOk(['unpack', path.join(VECTORS, 'v1/plain'), '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(tree))
  })

  committedSets('v1')
})
