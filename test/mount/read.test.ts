import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, packerOk, run, sha256, tmpDir } from '../helpers.js'
import { MiB, makeRoundTripTree } from '../fixtures.js'
import { sh, shOk, startMount, type RunningMount } from './mount-helpers.js'

/**
 * Reading through a real mount, byte for byte against the source: the round-trip tree plus a 7 MiB file over 2 MiB
 * CARs, as a clear set and as an encrypted one with hidden names.
 */
let src: string
let key: string
const sets: Record<string, { dir: string, args: string[] }> = {}
const mounts: RunningMount[] = []
const BIG = 7 * MiB + 4321
const BAD_NAME = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]).toString('latin1')

/** A child process that preads the mounted file at many offsets and compares with the source. */
const RANDOM_READS = `
const fs = require('fs')
const [mnt, ref, count, ...fixed] = process.argv.slice(1)
const want = fs.readFileSync(ref)
let seed = 12345
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
;(async () => {
  const fh = await fs.promises.open(mnt, 'r')
  const reads = fixed.map((f) => f.split(':').map(Number))
  for (let i = 0; i < Number(count); i++) reads.push([rnd(want.length), 1 + rnd(i % 3 === 0 ? 3 * 1048576 : 70000)])
  let bad = 0
  for (const [off, len] of reads) {
    const buf = Buffer.alloc(len)
    const { bytesRead } = await fh.read(buf, 0, len, off)
    const exp = want.subarray(off, off + len)
    if (bytesRead !== exp.length || !buf.subarray(0, bytesRead).equals(exp)) { bad++; console.log('MISMATCH', off, len, bytesRead, exp.length) }
  }
  await fh.close()
  console.log('checked', reads.length, 'bad', bad)
})().catch((e) => { console.log('ERROR', e.message); process.exit(1) })
`

beforeAll(async () => {
  src = tmpDir()
  await makeRoundTripTree(src)
  fs.writeFileSync(path.join(src, 'big/seven.bin'), bytes(BIG, 9))
  const work = tmpDir()
  key = path.join(work, 'key.txt')
  const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
  sets.clear = { dir: path.join(work, 'clear'), args: [] }
  sets.encrypted = { dir: path.join(work, 'enc'), args: ['-i', key] }
  await Promise.all([
    packerOk(['pack', src, '-o', sets.clear.dir, '--no-encrypt', '-b', '2MiB', '-q']),
    packerOk(['pack', src, '-o', sets.encrypted.dir, '-r', recipient, '-b', '2MiB', '-q']),
  ])
})

afterAll(async () => {
  for (const m of mounts) await m.cleanup()
})

describe.each(['clear', 'encrypted'])('a mounted %s set', (kind) => {
  let m: RunningMount
  beforeAll(async () => {
    const mnt = tmpDir('packer-mnt-')
    m = await startMount([sets[kind].dir, mnt, ...sets[kind].args], mnt)
    mounts.push(m)
  })
  afterAll(async () => { await m.cleanup() })

  it('matches the source under diff -r (names that are not UTF-8 appear with U+FFFD)', async () => {
    const r = await sh(`diff -r --no-dereference ${JSON.stringify(src)} ${JSON.stringify(m.mnt)}`)
    // (run() decodes output as UTF-8, so the source's raw name shows with U+FFFD too.)
    expect(r.stdout.trim().split('\n').sort()).toEqual([`Only in ${m.mnt}: f\uFFFD\uFFFD.bin`, `Only in ${src}: f\uFFFD\uFFFD.bin`].sort())
    expect(m.stderr()).toContain('is not valid UTF-8')
    // The renamed file's bytes are the source's.
    const got = await shOk(`sha256sum < ${JSON.stringify(m.mnt + '/f\uFFFD\uFFFD.bin')}`)
    expect(got.split(' ')[0]).toBe(sha256(fs.readFileSync(Buffer.from(src + '/' + BAD_NAME, 'latin1'))))
  })

  it('gives the sha256 of every file', async () => {
    const list = "find . -type f ! -name 'f*.bin' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"
    const [a, b] = await Promise.all([shOk(list, { cwd: src }), shOk(list, { cwd: m.mnt })])
    expect(b.split('\n').length).toBeGreaterThan(10)
    expect(b).toBe(a)
  })

  it('lists like the source under ls -lR (modes, sizes, link counts, owners, targets, mtimes)', async () => {
    // Directories show one link on the mount (their subdirectories are not counted: see src/mount/tree.ts).
    const ls = (dirLinks: string): string => `ls -lRn --time-style=+%s . | grep -v '^total' | grep -v 'f.*\\.bin$' | awk '{ if ($1 ~ /^d/) { $5 = "D"; ${dirLinks} } print }'`
    const [a, b] = await Promise.all([shOk(ls('$2 = 1'), { cwd: src }), shOk(ls(''), { cwd: m.mnt })])
    expect(b).toBe(a)
  })

  it('stats modes and mtimes (to the millisecond: fuse-native passes no finer)', async () => {
    const fmt = "find . -mindepth 1 ! -name 'f*.bin' -printf '%y %m %T@ %s %p\\0'"
    const [a, b] = await Promise.all([shOk(fmt, { cwd: src }), shOk(fmt, { cwd: m.mnt })])
    const norm = (s: string): string[] => s.split('\0').filter(Boolean).map((l) => {
      const [type, mode, time, size, ...name] = l.split(' ')
      const [sec, frac] = time.split('.')
      return [type, mode, `${sec}.${frac.slice(0, 3)}`, type === 'd' ? 'D' : size, ...name].join(' ')
    }).sort()
    expect(norm(b)).toEqual(norm(a))
    expect(norm(a).length).toBeGreaterThan(20)
    const st = await shOk(`stat -c '%a %s %Y' ${JSON.stringify(m.mnt + '/big/spans-cars.bin')}`)
    expect(st.trim()).toBe(`640 ${5 * MiB + 12345} ${Math.floor(Number(fs.statSync(path.join(src, 'big/spans-cars.bin'), { bigint: true }).mtimeNs / 1_000_000_000n))}`)
  })

  it('serves an empty file, a symlink and the tail of a file over several CARs', async () => {
    expect(await shOk(`cat ${m.mnt}/empty.txt | wc -c`)).toBe('0\n')
    expect(await shOk(`readlink ${m.mnt}/link-to-exec`)).toBe('exec.sh\n')
    expect(await shOk(`readlink ${m.mnt}/abs-link`)).toBe('/etc\n')
    expect(await shOk(`cat ${m.mnt}/link-to-exec`)).toBe('#!/bin/sh\necho hi\n')
    const t1 = await shOk(`tail -c 100000 ${m.mnt}/big/seven.bin | sha256sum`)
    expect(t1.split(' ')[0]).toBe(sha256(bytes(BIG, 9).subarray(BIG - 100000)))
    const t = await shOk(`tail -c 4321 ${m.mnt}/big/seven.bin | sha256sum`)
    expect(t.split(' ')[0]).toBe(sha256(bytes(BIG, 9).subarray(BIG - 4321)))
  })

  it('reads with dd skip= at 64 KiB, 1 MiB and CAR edges and at random offsets', async () => {
    const data = bytes(BIG, 9)
    const offsets = [0, 1, 65535, 65536, 65537, 3 * 65536 - 7, MiB - 1, MiB, MiB + 1, 2 * MiB - 100, 2 * MiB, 4 * MiB - 1, 6 * MiB + 3, BIG - 1]
    for (const off of offsets) {
      const r = await shOk(`dd if=${m.mnt}/big/seven.bin bs=4096 iflag=skip_bytes,count_bytes skip=${off} count=200000 status=none | sha256sum`)
      expect(r.split(' ')[0], `offset ${off}`).toBe(sha256(data.subarray(off, off + 200000)))
    }
    // Every plaintext position near a 1 MiB or 64 KiB multiple, and 600 random ranges, from another process.
    const fixed: string[] = []
    for (let k = 1; k * 65536 < BIG; k++) fixed.push(`${k * 65536 - 3}:7`)
    for (let k = 1; k * MiB < BIG; k++) for (const d of [-300, -17, 0, 200]) fixed.push(`${k * MiB + d}:${70000 + k}`)
    const ref = path.join(src, 'big/seven.bin')
    const r = await run(process.execPath, ['-e', RANDOM_READS, `${m.mnt}/big/seven.bin`, ref, '600', ...fixed])
    expect(r.stdout).toMatch(/checked \d+ bad 0/)
  })

  it('serves concurrent readers', async () => {
    const want = sha256(bytes(BIG, 9))
    const r = await shOk(`for i in 1 2 3 4; do sha256sum ${m.mnt}/big/seven.bin & done; cat ${m.mnt}/big/spans-cars.bin > /dev/null & find ${m.mnt} -type f -print0 | xargs -0 -P 4 -n 3 sha256sum > /dev/null; wait`)
    const sums = r.trim().split('\n').map((l) => l.split(' ')[0])
    expect(sums).toEqual([want, want, want, want])
  })

  it('answers EROFS to every write', async () => {
    const tries = [
      `echo x > ${m.mnt}/new-file`,
      `echo x >> ${m.mnt}/one-byte`,
      `touch ${m.mnt}/one-byte`,
      `mkdir ${m.mnt}/new-dir`,
      `rm ${m.mnt}/one-byte`,
      `rmdir ${m.mnt}/empty-dir`,
      `mv ${m.mnt}/one-byte ${m.mnt}/renamed`,
      `chmod 600 ${m.mnt}/one-byte`,
      `truncate -s 0 ${m.mnt}/one-byte`,
      `ln -s x ${m.mnt}/new-link`,
      `ln ${m.mnt}/one-byte ${m.mnt}/hard`,
    ]
    for (const t of tries) {
      const r = await sh(t)
      expect(r.code, t).not.toBe(0)
      expect(r.stderr, t).toMatch(/Read-only file system/)
    }
    expect(await shOk(`cat ${m.mnt}/one-byte`)).toBe('x')
  })
})
