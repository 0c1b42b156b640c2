import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { packerOk, tmpDir } from '../helpers.js'
import { CarSet } from '../../src/read/car-set.js'
import { MountTree, type Stat } from '../../src/mount/tree.js'

/**
 * The mounted tree without FUSE: a real version-2 set, its table cut into chunks of one or two entries, looked up
 * through caches of two paths and three listing entries, so that every lookup and listing crosses chunks and the
 * caches evict all the time.
 */
const FFFD = '\uFFFD'
const bytes = (...parts: Array<string | number[]>): Buffer => Buffer.concat(parts.map((p) => typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))
let src: string
let set: CarSet
let tree: MountTree
const log: string[] = []

const at = (rel: Buffer): Buffer => Buffer.concat([Buffer.from(src + '/'), rel])
const ms = (rel: Buffer): number => Number(fs.lstatSync(at(rel), { bigint: true }).mtimeNs / 1_000_000n)

beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'x'))
  fs.writeFileSync(path.join(src, 'x/ok'), 'ok\n')
  fs.writeFileSync(path.join(src, 'x/later'), 'later\n')
  fs.chmodSync(path.join(src, 'x/later'), 0o600)
  // Valid names holding U+FFFD, and two names that differ only in bytes that are not UTF-8.
  fs.mkdirSync(path.join(src, `d${FFFD}`))
  fs.writeFileSync(path.join(src, `d${FFFD}/in2.txt`), 'in2\n')
  fs.writeFileSync(path.join(src, `d${FFFD}~1`), 'tilde\n')
  fs.writeFileSync(at(bytes('d', [0xfe])), 'fe\n')
  fs.mkdirSync(at(bytes('d', [0xff])))
  fs.writeFileSync(at(bytes('d', [0xff], '/in.txt')), 'in\n')
  fs.mkdirSync(at(bytes('d', [0xff], '/sub')))
  fs.writeFileSync(at(bytes('d', [0xff], '/sub/deeper.txt')), 'deeper file\n')
  fs.symlinkSync('x/ok', path.join(src, 'link'))
  const out = tmpDir()
  await packerOk(['pack', src, '-o', out, '--no-encrypt', '-q'], { env: { PACKER_TEST_TABLE_CHUNK_BYTES: '150', PACKER_STATE_DIR: tmpDir() } })
  set = await CarSet.open(out)
  tree = new MountTree(set.files, { uid: 7, gid: 8, rootMtimeMs: 1234, nodeCache: 2, listingCache: 3, log: (l) => log.push(l) })
})

afterAll(async () => { await set?.close() })

const stat = async (p: string): Promise<Stat | undefined> => await tree.stat(p)
const names = async (p: string): Promise<string[] | null | undefined> => {
  const l = await tree.list(p)
  return l === null || l === undefined ? l : l.names
}

describe('the mounted tree (no mount)', () => {
  it('reads a table cut into many chunks', async () => {
    expect(set.files.version).toBe(2)
    expect((set.files as any).chunkCount).toBeGreaterThan(8)
  })

  it('lists directories in table order; valid names as they are, the others with U+FFFD made unique with ~N', async () => {
    expect(await names('/')).toEqual([`d${FFFD}`, `d${FFFD}~1`, `d${FFFD}~2`, `d${FFFD}~3`, 'link', 'x'])
    expect(await names('/x')).toEqual(['later', 'ok'])
    expect(await names(`/d${FFFD}~3`)).toEqual(['in.txt', 'sub'])
    // Logged each time the root is read (it is larger than the cache); the mount's log drops repeated lines.
    expect([...new Set(log)]).toEqual([
      `"d\u00fe" is not valid UTF-8; it appears as /d${FFFD}~2`,
      `"d\u00ff" is not valid UTF-8; it appears as /d${FFFD}~3`,
    ])
    // The same names every time the directory is listed anew (the listing was evicted meanwhile).
    expect(await names('/')).toEqual([`d${FFFD}`, `d${FFFD}~1`, `d${FFFD}~2`, `d${FFFD}~3`, 'link', 'x'])
  })

  it('resolves paths through names shown changed, at any depth, without listing first', async () => {
    const fresh = new MountTree(set.files, { uid: 0, gid: 0, rootMtimeMs: 0, nodeCache: 1, listingCache: 1, log: () => {} })
    const n = await fresh.node(`/d${FFFD}~3/sub/deeper.txt`)
    expect(n!.entry.path).toEqual(bytes('d', [0xff], '/sub/deeper.txt'))
    expect((await fresh.node(`/d${FFFD}~2`))!.entry.path).toEqual(bytes('d', [0xfe]))
    expect((await fresh.node(`/d${FFFD}/in2.txt`))!.entry.path).toEqual(Buffer.from(`d${FFFD}/in2.txt`))
    expect((await fresh.node(`/d${FFFD}~1`))!.entry.path).toEqual(Buffer.from(`d${FFFD}~1`))
    expect(await fresh.node(`/d${FFFD}~4`)).toBeUndefined()
    expect(await fresh.node(`/d${FFFD}~3/nope${FFFD}`)).toBeUndefined()
  })

  it('stats: type and mode, size, mtime in ms, owner, one link, inode = entry number + 2', async () => {
    const deeper = bytes('d', [0xff], '/sub/deeper.txt')
    const e = (await set.files.lookup(deeper))!
    expect(await stat(`/d${FFFD}~3/sub/deeper.txt`)).toEqual({
      mode: 0o100644, uid: 7, gid: 8, size: 12, nlink: 1, ino: e.number + 2, blksize: 65536, blocks: 1, atime: ms(deeper), mtime: ms(deeper), ctime: ms(deeper),
    })
    const later = (await stat('/x/later'))!
    expect([later.mode, later.size, later.mtime]).toEqual([0o100600, 6, ms(Buffer.from('x/later'))])
    const dir = (await stat(`/d${FFFD}~3/sub`))!
    expect([dir.mode & 0o170000, dir.nlink, dir.size]).toEqual([0o040000, 1, 4096])
    const link = (await stat('/link'))!
    expect([link.mode & 0o170000, link.size]).toEqual([0o120000, 4])
    expect(await stat('/')).toMatchObject({ mode: 0o040755, ino: 1, nlink: 1, mtime: 1234 })
    // Every entry gets a different inode.
    const inodes = new Set<number>()
    for (const p of ['/x', '/x/ok', '/x/later', `/d${FFFD}`, `/d${FFFD}/in2.txt`, `/d${FFFD}~1`, `/d${FFFD}~2`, `/d${FFFD}~3`, `/d${FFFD}~3/in.txt`, `/d${FFFD}~3/sub`, `/d${FFFD}~3/sub/deeper.txt`, '/link']) inodes.add((await stat(p))!.ino)
    expect(inodes.size).toBe(12)
    expect(Math.min(...inodes)).toBe(2)
  })

  it('answers from a listing in memory without a promise, and knows what is not there', async () => {
    await tree.list('/x')
    const st = tree.stat('/x/ok')
    expect(st instanceof Promise).toBe(false)
    expect((st as Stat).size).toBe(3)
    expect(tree.stat('/x/nope')).toBeUndefined()
    expect(await stat('/nope')).toBeUndefined()
    expect(await stat('/x/ok/below-a-file')).toBeUndefined()
    expect(await tree.list('/x/ok')).toBeNull()
    expect(await tree.list('/nope')).toBeUndefined()
    expect((await tree.node('/link'))!.entry.target).toEqual(Buffer.from('x/ok'))
  })

  it('keeps no more than its bounds: two paths, three listing entries (a larger listing is not kept)', async () => {
    const before = tree.stats.listingsRead
    for (let i = 0; i < 3; i++) for (const p of ['/', '/x', `/d${FFFD}~3`, `/d${FFFD}~3/sub`]) await tree.list(p)
    const s = tree.stats
    expect(s.nodeLimit).toBe(2)
    expect(s.nodePeak).toBe(2)
    expect(s.nodes).toBeLessThanOrEqual(2)
    expect(s.listingLimit).toBe(3)
    expect(s.listingPeak).toBeLessThanOrEqual(3)
    expect(s.listingEntries).toBeLessThanOrEqual(3)
    // '/' (6 entries) is read each time; the others evict each other.
    expect(s.listingsRead - before).toBeGreaterThanOrEqual(6)
  })
})
