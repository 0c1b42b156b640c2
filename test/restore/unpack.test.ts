/**
 * unpack's two ways of writing files (small files whole in native batches, the others streamed; every file streamed
 * without the addon) give the same tree, owners and setuid bits included; files stored compressed come back whole,
 * and damage to their streams is named, never restored as wrong bytes.
 */
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, describeTree, oneLine, packer, packerOk, packerWithPreload, tmpDir } from '../helpers.js'
import { MiB, makeRoundTripTree } from '../fixtures.js'
import { forgeSet, type ForgedLine } from '../forge-set.js'

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

describe('files stored compressed (zstd seekable streams)', () => {
  let tree: string
  let compressed: string
  let key: string

  beforeAll(async () => {
    tree = tmpDir()
    const numbers = Buffer.from(Array.from({ length: 700_000 }, (_, i) => `${i}\n`).join('')) // ~4.6 MiB: several frames
    fs.writeFileSync(path.join(tree, 'numbers.txt'), numbers)
    fs.writeFileSync(path.join(tree, 'small.txt'), numbers.subarray(0, 50_000))
    fs.writeFileSync(path.join(tree, 'medium.txt'), numbers.subarray(0, 900_000)) // one frame, decompressed on a worker
    fs.writeFileSync(path.join(tree, 'random.bin'), bytes(2 * MiB + 3, 61)) // stored as it is
    fs.writeFileSync(path.join(tree, 'empty'), '')
    key = path.join(tmpDir(), 'key.txt')
    const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
    compressed = tmpDir()
    await packerOk(['pack', tree, '-o', compressed, '-r', recipient, '--compress', 'zstd', '--bin-size', '2MiB'], { env: { PACKER_STATE_DIR: tmpDir() } })
  })

  it('unpack, verify --decrypt and openSet give back every byte; what is stored is smaller', async () => {
    const { openSet } = await import('../../src/index.js')
    const s = await openSet(compressed, { identities: [key] })
    try {
      const stored = new Map<string, number>()
      for await (const e of s.entries()) if (e.type === 'file') stored.set(e.path, e.size!)
      const numbers = fs.readFileSync(path.join(tree, 'numbers.txt'))
      expect(Buffer.from(await s.readFile('numbers.txt')).equals(numbers)).toBe(true)
      expect(Buffer.from(await s.read('numbers.txt', 1_500_000, 1_300_000)).equals(numbers.subarray(1_500_000, 2_800_000))).toBe(true)
      expect(Buffer.from(await s.read('small.txt', 49_990, 100)).equals(numbers.subarray(49_990, 50_000))).toBe(true)
    } finally { await s.close() }
    const carBytes = fs.readdirSync(compressed).filter((n) => n.endsWith('.car')).reduce((n, c) => n + fs.statSync(path.join(compressed, c)).size, 0)
    expect(carBytes).toBeLessThan(2.5 * MiB + 1.5 * MiB) // random.bin and what numbers.txt and small.txt shrink to
    const dest = tmpDir()
    await packerOk(['unpack', compressed, '-o', dest, '-i', key])
    expect(describeTree(dest)).toEqual(describeTree(tree))
    const v = await packerOk(['verify', compressed, '--decrypt', '-i', key, '--json'])
    const files = v.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((o) => o.file !== undefined && o.ok !== undefined)
    expect(files.map((f) => [f.file, f.ok])).toEqual(expect.arrayContaining([['numbers.txt', true], ['small.txt', true], ['medium.txt', true], ['random.bin', true], ['empty', true]]))
  })

  it('without a zstd (no addon, Node 20): each compressed file is named as not restored, the others are', async () => {
    const dest = tmpDir()
    const r = await packer(['unpack', compressed, '-o', dest, '-i', key], { env: { PACKER_NO_NATIVE: '1' } })
    if (Number(process.versions.node.split('.')[0]) >= 22) {
      expect(r.code).toBe(0) // node:zlib has zstd
      return
    }
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/warning: not restored: numbers\.txt is compressed with zstd, and this packer has no zstd: .*install Debian's libzstd-dev/)
    expect(fs.readdirSync(dest).sort()).toEqual(['empty', 'random.bin'])
  })

  it('a damaged or forged seek table is refused by name, never a wrong byte', async () => {
    const { compressSeekable, zstdCodec } = await import('../../src/compress/zstd-seekable.js')
    const plain = Buffer.from('abc'.repeat(400_000))
    const stream = Buffer.from(compressSeekable(zstdCodec()!, plain, 3))
    const checksumAt = stream.length - 9 - 4 // the last (second) frame's checksum in the table, before its footer
    const badChecksum = Buffer.from(stream)
    badChecksum.writeUInt32LE(badChecksum.readUInt32LE(checksumAt) ^ 1, checksumAt)
    const file = (name: string, data: Buffer, size = plain.length): ForgedLine => ({ name, type: 'file', data, size, storedSize: data.length, compression: 'zstd' })
    const set = tmpDir()
    await forgeSet(set, { chunks: [[{ dir: '' }, file('bad-checksum', badChecksum), file('good', stream), file('short-table', stream.subarray(0, stream.length - 3)), file('wrong-size', stream, plain.length + 1)]] })
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('not restored: bad-checksum: frame 1 of its zstd stream does not have the checksum its seek table gives; the set is damaged')
    expect(r.stderr).toContain('not restored: short-table: no zstd seek table at the end of its stored stream; the set is damaged or was not written by packer')
    expect(r.stderr).toContain(`not restored: wrong-size: its zstd frames hold ${plain.length} bytes, the file table says ${plain.length + 1}; the set is damaged`)
    expect(fs.readdirSync(dest)).toEqual(['good'])
    expect(fs.readFileSync(path.join(dest, 'good')).equals(plain)).toBe(true)
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

  it('a path that appears while unpack runs (another process writing into DEST) is named in one line', async () => {
    const dest = tmpDir()
    // Preloaded into the CLI: just before each symlink is made, a file takes its path, as a second unpack would.
    const racer = "import fsp from 'node:fs/promises'\nconst symlink = fsp.symlink\nfsp.symlink = async (target, p) => { await fsp.writeFile(p, 'not the link'); return await symlink(target, p) }\n"
    const r = await packerWithPreload(racer, ['unpack', set, '-o', dest])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(new RegExp(`^packer: ${dest}/(abs-link|link-to-exec) already exists \\(it appeared while unpack ran\\); remove it, restore elsewhere, or pass --overwrite$`))
  })
})
