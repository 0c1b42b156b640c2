import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { BlockIndex } from '../../src/car/block-index.js'
import { ROOT, describeTree, packerOk, tmpDir } from '../helpers.js'
// @ts-expect-error: a plain .mjs generator shared with people regenerating vectors by hand
import { makeVectorTree } from '../../testdata/vectors/make-tree.mjs'

const VECTORS = path.join(ROOT, 'testdata/vectors')
const V1 = path.join(VECTORS, 'v1')
const expected = JSON.parse(fs.readFileSync(path.join(V1, 'expected.json'), 'utf8'))
const isRoot = process.getuid?.() === 0

async function indexRecords (file: string): Promise<{ version: number, records: unknown[] }> {
  const index = await BlockIndex.read(file, 1)
  try {
    const records = []
    for await (const r of index.records()) records.push({ ...r, digest: r.digest.toString('hex') })
    return { version: index.version, records }
  } finally { await index.close() }
}

/** Any change to how packer lays out bytes must fail here: bump the format version and regenerate instead. */
describe('format version 1 test vectors', () => {
  it('the unencrypted vector tree packs to the pinned root, CAR bytes and piece CIDs', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree)
    const out = tmpDir()
    await packerOk(['pack', tree, '-o', out, '--no-encrypt', '--bin-size', String(expected.plain.binSize)])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(m.root).toBe(expected.plain.root)
    const got = m.cars.map((c: any) => ({
      file: c.file, size: c.size, root: c.root, pieceCid: c.pieceCid, pieceCidV2: c.pieceCidV2, pieceSize: c.pieceSize,
      sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(out, c.file))).digest('hex'),
    }))
    // The file table records owners; the pinned bytes were made as root (owner 0:0), as CI runs.
    if (!isRoot) return
    expect(m.table.cid).toBe(expected.plain.setId)
    expect(m.descriptor).toBe(expected.plain.descriptor)
    expect(got).toEqual(expected.plain.cars)
  })

  it('the committed unencrypted version-1 set (the small vector tree) restores byte for byte', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    const dest = tmpDir()
    await packerOk(['unpack', path.join(V1, 'plain'), '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(tree))
  })

  it('the committed encrypted set (X25519 + RSA certificate) restores the vector tree with either key', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    for (const id of expected.encrypted.identities) {
      const dest = tmpDir()
      await packerOk(['unpack', path.join(V1, 'encrypted'), '-o', dest, '-i', path.join(VECTORS, id), '--expect', expected.encrypted.setId])
      expect(describeTree(dest)).toEqual(describeTree(tree))
    }
  })

  it('the committed sets rebuild from their CARs alone to the same manifest, and an index of the same records', async () => {
    for (const [name, unlock] of [['plain', []], ['encrypted', ['-i', path.join(VECTORS, expected.encrypted.identities[0])]]] as const) {
      const dir = tmpDir()
      const set = path.join(V1, name)
      for (const n of fs.readdirSync(set).filter((f) => f.endsWith('.car'))) fs.copyFileSync(path.join(set, n), path.join(dir, n))
      await packerOk(['rebuild', dir])
      const want = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
      const got = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
      expect({ ...got, createdBy: '' }).toEqual({ ...want, createdBy: '' })
      // packer writes only version-2 indexes (FORMAT.md §8): the same records, with a fence.
      const rebuilt = await indexRecords(path.join(dir, 'blocks.idx'))
      expect(rebuilt.version).toBe(2)
      expect(rebuilt.records).toEqual((await indexRecords(path.join(set, 'blocks.idx'))).records)
      const tree = path.join(tmpDir(), 'tree')
      makeVectorTree(tree, { small: true })
      const dest = tmpDir()
      await packerOk(['unpack', dir, '-o', dest, ...unlock])
      expect(describeTree(dest)).toEqual(describeTree(tree))
    }
  })

  it('the committed passphrase set restores the vector tree', async () => {
    const tree = path.join(tmpDir(), 'tree')
    makeVectorTree(tree, { small: true })
    const dest = tmpDir()
    await packerOk(['unpack', path.join(V1, 'encrypted-passphrase'), '-o', dest, '--expect', expected.encryptedPassphrase.setId],
      { env: { PACKER_PASSPHRASE: expected.encryptedPassphrase.passphrase } })
    expect(describeTree(dest)).toEqual(describeTree(tree))
  })
})
