import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, packerOk, sha256, tmpDir } from '../helpers.js'
import { sh, shOk, startMount, type RunningMount } from './mount-helpers.js'

/**
 * A mount that looks everything up on demand, through small caches: an encrypted version-2 set whose table is cut
 * into 1 KiB chunks (a few entries each), mounted with room for 64 paths and 1,000 listing entries, so that every
 * listing and lookup crosses chunks and both caches evict all the time. The tree: a directory of 20,000 files, a
 * chain of 100 directories, names with a newline, a tab and bytes that are not UTF-8, symlinks of every kind.
 * Compared with the source under diff -r, ls -lR and find -printf; then the mount reports what its caches held.
 */
const WIDE = 20_000
const DEPTH = 100
const NODE_CACHE = 64
const LISTING_CACHE = 1000
const FFFD = '\uFFFD'
let src: string
let key: string
let m: RunningMount
const deepDir = Array.from({ length: DEPTH }, (_, i) => `l${i}`).join('/')
const raw = (rel: string | Buffer): Buffer => Buffer.concat([Buffer.from(src + '/'), Buffer.from(rel)])
const badName = (stem: string, byte: number): Buffer => Buffer.concat([Buffer.from(stem), Buffer.of(byte)])

/** Mounts through the library with small caches; prints the tree's stats when told to stop (SIGTERM). */
const MOUNT = `
const [root, set, mnt, key, nodeCache, listingCache] = process.argv.slice(1)
const { mountSet } = await import(root + '/dist/mount/index.js')
const { readIdentityFile } = await import(root + '/dist/crypto/index.js')
const m = await mountSet({ carDir: set, mountpoint: mnt, identities: () => readIdentityFile(key), nodeCache: Number(nodeCache), listingCache: Number(listingCache), log: (l) => process.stderr.write(l + '\\n') })
process.on('SIGTERM', async () => {
  console.log('stats ' + JSON.stringify(m.tree.stats))
  await m.unmount()
  process.exit(0)
})
console.log('mounted set')
`

beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'wide'))
  for (let i = 0; i < WIDE; i++) {
    const f = path.join(src, 'wide', `f${String(i).padStart(5, '0')}`)
    fs.writeFileSync(f, `${i}\n`.repeat(i % 7))
    fs.chmodSync(f, [0o644, 0o600, 0o755][i % 3])
  }
  fs.mkdirSync(path.join(src, deepDir), { recursive: true })
  fs.writeFileSync(path.join(src, deepDir, 'leaf.txt'), 'at the bottom\n')
  fs.mkdirSync(path.join(src, 'names'))
  fs.writeFileSync(path.join(src, 'names', 'new\nline'), 'newline\n')
  fs.writeFileSync(path.join(src, 'names', 'tab\there'), 'tab\n')
  fs.writeFileSync(path.join(src, 'names', 'ok'), 'ok\n')
  fs.writeFileSync(raw(Buffer.concat([Buffer.from('names/'), badName('x', 0xfe)])), 'fe\n')
  fs.writeFileSync(raw(Buffer.concat([Buffer.from('names/'), badName('x', 0xff)])), 'ff\n')
  fs.mkdirSync(raw(Buffer.concat([Buffer.from('names/'), badName('bad', 0xff)])))
  fs.writeFileSync(raw(Buffer.concat([Buffer.from('names/'), badName('bad', 0xff), Buffer.from('/in.txt')])), 'inside\n')
  fs.mkdirSync(path.join(src, 'empty'))
  fs.symlinkSync('names/ok', path.join(src, 'rel-link'))
  fs.symlinkSync('/etc', path.join(src, 'abs-link'))
  fs.symlinkSync('nowhere', path.join(src, 'dangling'))
  fs.symlinkSync('l0', path.join(src, 'dir-link'))
  const work = tmpDir()
  key = path.join(work, 'key.txt')
  const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
  const set = path.join(work, 'set')
  await packerOk(['pack', src, '-o', set, '-r', recipient, '-q'], { env: { PACKER_TEST_TABLE_CHUNK_BYTES: '1024', PACKER_STATE_DIR: tmpDir() } })
  const mnt = tmpDir('packer-mnt-')
  m = await startMount([], mnt, { argv: ['--input-type=module', '-e', MOUNT, ROOT, set, mnt, key, String(NODE_CACHE), String(LISTING_CACHE)] })
}, 300_000)

afterAll(async () => { await m?.cleanup() })

const C = { env: { LC_ALL: 'C' } }

describe('a mount with a chunked table and small caches', () => {
  it('finds a path 100 directories down before anything was listed', async () => {
    expect(await shOk(`stat -c '%s %a' ${m.mnt}/${deepDir}/leaf.txt`)).toBe('14 644\n')
    expect(await shOk(`cat ${m.mnt}/${deepDir}/leaf.txt`)).toBe('at the bottom\n')
    expect(await shOk(`readlink ${m.mnt}/dir-link`)).toBe('l0\n')
  })

  it('matches the source under diff -r (names that are not UTF-8 shown with U+FFFD, ~1 for the second)', async () => {
    const r = await sh(`LC_ALL=C diff -r --no-dereference ${src} ${m.mnt}`)
    expect(r.code).toBe(1)
    // (run() decodes output as UTF-8: the source's raw names show with U+FFFD too.)
    expect(r.stdout.trim().split('\n').sort()).toEqual([
      `Only in ${m.mnt}/names: bad${FFFD}`,
      `Only in ${m.mnt}/names: x${FFFD}`,
      `Only in ${m.mnt}/names: x${FFFD}~1`,
      `Only in ${src}/names: bad${FFFD}`,
      `Only in ${src}/names: x${FFFD}`,
      `Only in ${src}/names: x${FFFD}`,
    ].sort())
    expect(r.stderr).toBe('')
    // The renamed ones hold the bytes of the names they stand for: x\xfe sorts first.
    const sum = async (p: string): Promise<string> => (await shOk(`sha256sum < '${p}'`)).split(' ')[0]
    expect(await sum(`${m.mnt}/names/x${FFFD}`)).toBe(sha256('fe\n'))
    expect(await sum(`${m.mnt}/names/x${FFFD}~1`)).toBe(sha256('ff\n'))
    expect(await sum(`${m.mnt}/names/bad${FFFD}/in.txt`)).toBe(sha256('inside\n'))
    expect(m.stderr()).toContain(`it appears as /names/x${FFFD}~1`)
  })

  it('lists like the source under ls -lR (modes, sizes, owners, targets, mtimes; directories one link)', async () => {
    const ls = (dirLinks: string): string => `ls -lRn --time-style=+%s . | grep -v '^total' | awk '{ $1 = $1; if ($1 ~ /^d/) { $5 = "D"; ${dirLinks} } print }'`
    const [a, b] = await Promise.all([shOk(ls('$2 = 1'), { cwd: src, ...C }), shOk(ls(''), { cwd: m.mnt, ...C })])
    const kept = (s: string): string[] => s.split('\n').filter((l) => !l.includes(FFFD))
    expect(kept(b)).toEqual(kept(a))
    expect(kept(a).length).toBeGreaterThan(WIDE + DEPTH)
  })

  it('stats like the source under find -printf (type, mode, size, mtime to the ms) and lists 20,000 entries', async () => {
    const fmt = "find . -mindepth 1 -printf '%y %m %s %T@ %p\\0'"
    const [a, b] = await Promise.all([shOk(fmt, { cwd: src }), shOk(fmt, { cwd: m.mnt })])
    const norm = (s: string): string[] => s.split('\0').filter(Boolean).map((l) => {
      const [type, mode, size, time, ...name] = l.split(' ')
      const [sec, frac = ''] = time.split('.')
      return [type, mode, type === 'd' ? 'D' : size, `${sec}.${frac.padEnd(3, '0').slice(0, 3)}`, ...name].join(' ')
    }).sort()
    const [na, nb] = [norm(a), norm(b)]
    expect(nb.filter((l) => !l.includes(FFFD))).toEqual(na.filter((l) => !l.includes(FFFD)))
    expect(nb.filter((l) => l.includes(FFFD)).length).toBe(4)
    expect(na.length).toBe(WIDE + DEPTH + 15)
    expect(await shOk(`ls -f ${m.mnt}/wide | wc -l`)).toBe(`${WIDE + 2}\n`)
    expect(await shOk(`cat ${m.mnt}/wide/f19999 | wc -l`)).toBe(`${19999 % 7}\n`)
  })

  it('held no more than its bounds meanwhile: 64 paths, 1,000 listing entries', async () => {
    m.proc.kill('SIGTERM')
    expect(await m.exited).toBe(0)
    const stats = JSON.parse(/^stats (.*)$/m.exec(m.stdout())![1])
    expect(stats).toMatchObject({ nodeLimit: NODE_CACHE, nodePeak: NODE_CACHE, listingLimit: LISTING_CACHE })
    expect(stats.nodes).toBeLessThanOrEqual(NODE_CACHE)
    expect(stats.listingPeak).toBeLessThanOrEqual(LISTING_CACHE)
    expect(stats.listingEntries).toBeLessThanOrEqual(LISTING_CACHE)
    // Every directory was listed at least once; the 20,000 entries were listed for each readdir, never kept.
    expect(stats.listingsRead).toBeGreaterThan(DEPTH + 5)
  })
})
