import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, packer, packerOk, sha256, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'
import { flipByte, isMounted, sh, shOk, startMount, waitFor } from './mount-helpers.js'
import { CarSet } from '../../src/read/car-set.js'
import { missingReport } from '../../src/read/availability.js'

/** Mount lifecycle and failures: signals, umount, missing and damaged CARs, bad input. */
let src: string
let set: string
let key: string
let otherKey: string
let manifest: any
const BIG = 6 * MiB + 777

beforeAll(async () => {
  src = tmpDir()
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(BIG, 21))
  fs.writeFileSync(path.join(src, 'small.txt'), 'small file\n')
  const work = tmpDir()
  key = path.join(work, 'key.txt')
  otherKey = path.join(work, 'other.txt')
  const recipient = (await packerOk(['keygen', '-o', key])).stdout.trim()
  await packerOk(['keygen', '-o', otherKey])
  set = path.join(work, 'set')
  await packerOk(['pack', src, '-o', set, '-r', recipient, '-b', '2MiB', '-q'])
  manifest = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
})

function copySet (): string {
  const dir = tmpDir()
  for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(dir, n))
  return dir
}

async function table (dir: string): Promise<CarSet> {
  const { readIdentityFile } = await import('../../src/crypto/index.js')
  return await CarSet.open(dir, { identities: await readIdentityFile(key) })
}

/** `packer ls --missing`'s report for a copy of the set. */
async function missing (dir: string): Promise<Array<{ path: string, cars: string[] }>> {
  const s = await table(dir)
  try {
    const out = []
    for await (const r of missingReport(s)) out.push(r)
    return out
  } finally { await s.close() }
}

describe('packer mount lifecycle', () => {
  it('unmounts cleanly on SIGTERM and SIGINT', async () => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const mnt = tmpDir('packer-mnt-')
      const m = await startMount([set, mnt, '-i', key], mnt)
      try {
        expect(m.stdout()).toMatch(/^mounted set \S+ at .*: 2 files, .*ready in/)
        expect(await isMounted(mnt)).toBe(true)
        m.proc.kill(sig)
        expect(await m.exited).toBe(0)
        expect(await isMounted(mnt)).toBe(false)
        expect(fs.readdirSync(mnt)).toEqual([])
      } finally { await m.cleanup() }
    }
  })

  it('is released by autoUnmount after SIGKILL', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([set, mnt, '-i', key], mnt)
    try {
      m.proc.kill('SIGKILL')
      await m.exited
      expect(await waitFor(async () => !(await isMounted(mnt)), 5000)).toBe(true)
    } finally { await m.cleanup() }
  })

  it('packer umount unmounts, and the mount process exits', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([set, mnt, '-i', key, '--uid', '1234', '--gid', '4321'], mnt)
    try {
      expect(await shOk(`stat -c '%u %g' ${mnt}/big.bin ${mnt}`)).toBe('1234 4321\n1234 4321\n')
      await packerOk(['umount', mnt])
      expect(await m.exited).toBe(0)
      expect(await isMounted(mnt)).toBe(false)
      const r = await packer(['umount', mnt])
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/is not a mount point/)
    } finally { await m.cleanup() }
  })
})

describe('a small cache', () => {
  it('serves concurrent readers correctly while evicting (buffers are reused by the workers)', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([set, mnt, '-i', key, '--cache-size', '4MiB', '--workers', '2'], mnt)
    try {
      const want = sha256(bytes(BIG, 21))
      const r = await shOk(`for i in 1 2 3 4 5 6; do dd if=${mnt}/big.bin bs=$((4096 * i + 1)) status=none | sha256sum & done; wait`)
      expect(r.trim().split('\n').map((l) => l.split(' ')[0])).toEqual(Array(6).fill(want))
    } finally { await m.cleanup() }
  })
})

describe('partly retrieved and damaged sets', () => {
  it('gives EIO at once for a missing CAR, names it in the log, and reads it once copied in', async () => {
    const dir = copySet()
    const stash = tmpDir()
    // The CAR holding the middle of big.bin.
    const car = manifest.cars[1].file
    fs.renameSync(path.join(dir, car), path.join(stash, car))
    expect(await missing(dir)).toEqual([{ path: 'big.bin', cars: [car] }])
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([dir, mnt, '-i', key], mnt)
    try {
      expect(m.stdout()).toContain('1 of')
      expect(await shOk(`ls ${mnt}`)).toBe('big.bin\nsmall.txt\n')
      expect(await shOk(`cat ${mnt}/small.txt`)).toBe('small file\n')
      const t0 = Date.now()
      const r = await sh(`cat ${mnt}/big.bin > /dev/null`)
      expect(Date.now() - t0).toBeLessThan(3000)
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/Input\/output error/)
      expect(await waitFor(async () => m.stderr().includes(car), 2000)).toBe(true)
      const lines = m.stderr().split('\n').filter((l) => l.includes(car))
      expect(lines.length).toBeLessThanOrEqual(2)
      expect(lines[0]).toMatch(/big\.bin/)
      // The first 900,000 bytes are in the first CAR (its 1 MiB leaf, less the age header and tags): readable.
      expect((await shOk(`head -c 900000 ${mnt}/big.bin | sha256sum`)).split(' ')[0]).toBe(sha256(bytes(BIG, 21).subarray(0, 900000)))
      // Copied in while mounted: readable without remounting (the CAR directory is looked at again within a second).
      fs.copyFileSync(path.join(stash, car), path.join(dir, car))
      await new Promise((resolve) => setTimeout(resolve, 1100))
      expect((await shOk(`sha256sum < ${mnt}/big.bin`)).split(' ')[0]).toBe(sha256(bytes(BIG, 21)))
      expect(await missing(dir)).toEqual([])
    } finally { await m.cleanup() }
  })

  it('never serves a damaged block: EIO and a log line naming the file and the CAR', async () => {
    const dir = copySet()
    const car = manifest.cars[1].file
    flipByte(path.join(dir, car), 1_000_000, 0x40)
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([dir, mnt, '-i', key], mnt)
    try {
      const r = await sh(`cat ${mnt}/big.bin > /dev/null`)
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/Input\/output error/)
      expect(await waitFor(async () => m.stderr().includes(car), 2000)).toBe(true)
      expect(m.stderr()).toMatch(new RegExp(`big\\.bin.*${car}.*does not match its hash`))
      expect(await shOk(`cat ${mnt}/small.txt`)).toBe('small file\n')
    } finally { await m.cleanup() }
  })
})

describe('a chunk across two leaves', () => {
  it('is never served when the later leaf is damaged where that chunk ends (its bytes there are not hashed by the earlier leaf)', async () => {
    const dir = copySet()
    // The age chunk that starts in big.bin's first leaf and ends in its second: flip a byte of the second leaf's head.
    const s = await table(dir)
    const { FileView } = await import('../../src/read/file-view.js')
    const e = (await s.files.lookup(Buffer.from('big.bin')))!
    const leaves = (await (await new FileView(s).layout(e)).leaves(0, 2 * MiB))!
    const chunk = Math.floor((leaves[0].length - e.enc!.headerLength - 16) / (65536 + 16)) // first chunk not inside leaf 0
    const loc = await s.blocks.locate(leaves[1].cid)
    const car = s.manifest.cars[loc.car].file
    await s.close()
    flipByte(path.join(dir, car), loc.offset + 5, 0x01)
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([dir, mnt, '-i', key], mnt)
    try {
      const want = bytes(BIG, 21)
      // The chunk before it lies wholly in the first leaf: served.
      const before = await shOk(`dd if=${mnt}/big.bin bs=65536 skip=${chunk - 1} count=1 iflag=direct status=none | sha256sum`)
      expect(before.split(' ')[0]).toBe(sha256(want.subarray((chunk - 1) * 65536, chunk * 65536)))
      const r = await sh(`dd if=${mnt}/big.bin of=/dev/null bs=65536 skip=${chunk} count=1 iflag=direct status=none`)
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/Input\/output error/)
      expect(await waitFor(async () => m.stderr().includes(car), 2000)).toBe(true)
      expect(m.stderr()).toMatch(new RegExp(`big\\.bin.*${car}.*does not match its hash`))
    } finally { await m.cleanup() }
  })
})

describe('bad input: one line, non-zero exit, nothing mounted', () => {
  const fails = async (args: string[], pattern: RegExp): Promise<void> => {
    const r = await packer(['mount', ...args])
    expect(r.code).not.toBe(0)
    const lines = r.stderr.trim().split('\n').filter((l) => !l.includes('warning:'))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(pattern)
  }

  it('refuses a missing, non-directory, non-empty or already mounted mount point', async () => {
    const base = tmpDir()
    await fails([set, path.join(base, 'nope'), '-i', key], /mount point .*nope does not exist; create it first/)
    fs.writeFileSync(path.join(base, 'file'), 'x')
    await fails([set, path.join(base, 'file'), '-i', key], /mount point .*file is not a directory/)
    await fails([set, base, '-i', key], /mount point .* is not empty/)
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([set, mnt, '-i', key], mnt)
    try {
      await fails([set, mnt, '-i', key], /is already a mount point; unmount it first/)
    } finally { await m.cleanup() }
  })

  it('refuses a wrong identity, no identity, and a directory that is not a CAR set', async () => {
    const mnt = tmpDir('packer-mnt-')
    await fails([set, mnt, '-i', otherKey], /wrong key/)
    await fails([set, mnt], /is encrypted: give the identity with -i/)
    await fails([tmpDir(), mnt], /is not a packer set/)
    await fails([set, mnt, '-i', key, '--expect', 'bafkreiaaaa'], /set ID mismatch/)
    await fails([set, mnt, '-i', key, '--cache-size', '1MiB'], /--cache-size: .* too small/)
    expect(await isMounted(mnt)).toBe(false)
  })

  it('mounts with the manifest apart from the CARs (--manifest)', async () => {
    const cars = tmpDir()
    const meta = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(n.endsWith('.car') ? cars : meta, n))
    const mnt = tmpDir('packer-mnt-')
    const m = await startMount([cars, mnt, '--manifest', meta, '-i', key], mnt)
    try {
      expect((await shOk(`sha256sum < ${mnt}/big.bin`)).split(' ')[0]).toBe(sha256(bytes(BIG, 21)))
    } finally { await m.cleanup() }
  })
})
