import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytes, carFiles, describeTree, packer, packerOk, run, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'

let src: string
/** The uninterrupted --no-encrypt result, to compare resumed runs with. */
let reference: string

function state (): NodeJS.ProcessEnv { return { PACKER_STATE_DIR: tmpDir('packer-state-') } }

function sameSet (a: string, b: string): void {
  expect(carFiles(b)).toEqual(carFiles(a))
  for (const c of carFiles(a)) expect(fs.readFileSync(path.join(b, c)).equals(fs.readFileSync(path.join(a, c))), c).toBe(true)
  for (const f of ['manifest.json', 'blocks.idx']) expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f))), f).toBe(true)
}

beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'sub'))
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, 'sub', `small-${i}.txt`), `small file ${i}\n`.repeat(i + 1))
  fs.writeFileSync(path.join(src, 'a-big.bin'), bytes(7 * MiB + 3, 61))
  fs.writeFileSync(path.join(src, 'z-big.bin'), bytes(3 * MiB, 62))
  reference = tmpDir()
  await packerOk(['pack', src, '-o', reference, '--no-encrypt', '--bin-size', '2MiB'], { env: state() })
  expect(carFiles(reference).length).toBeGreaterThanOrEqual(5)
})

describe('pack killed with SIGKILL and run again continues to the same set', () => {
  for (const [where, fault] of [
    ['in the middle of the first CAR', 'block:1'],
    ['after the first CAR was renamed, before the journal recorded it', 'car-done:1'],
    ['after a CAR was renamed, before the journal recorded it', 'car-done:2'],
    ['between CARs (journal written)', 'car-journaled:3'],
    ['while writing the manifest', 'manifest'],
  ] as const) {
    it(`--no-encrypt, killed ${where}: byte-identical to an uninterrupted run`, async () => {
      const out = tmpDir()
      const env = state()
      const killed = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: fault } })
      expect(killed.code).toBe(null) // died by signal
      expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
      const resumed = await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
      if (fault !== 'block:1' && fault !== 'car-done:1') expect(resumed.stdout).toMatch(/resumed: \d+ CAR\(s\) and \d+ files were already complete and kept/)
      sameSet(reference, out)
      expect(fs.readdirSync(out).filter((n) => n.startsWith('.'))).toEqual([])
      // The journal (names, keys) is gone; only the record of what made this set remains.
      expect(fs.readdirSync(env.PACKER_STATE_DIR!).map((n) => path.extname(n))).toEqual(['.done'])
    })
  }

  it('encrypted, killed between CARs: the finished set restores every file', async () => {
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'k.txt')])).stdout.trim()
    const out = tmpDir()
    const env = state()
    const killed = await packer(['pack', src, '-o', out, '-r', recipient, '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'car-journaled:3' } })
    expect(killed.code).toBe(null)
    // Nothing secret in OUTDIR while interrupted: the journal lives elsewhere.
    for (const n of fs.readdirSync(out)) expect(fs.readFileSync(path.join(out, n)).includes(Buffer.from('small-1'))).toBe(false)
    await packerOk(['pack', src, '-o', out, '-r', recipient, '--bin-size', '2MiB'], { env })
    await packerOk(['verify', out])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest, '-i', path.join(keys, 'k.txt')])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('a resumed run repacks a file that changed since the crash', async () => {
    const mine = tmpDir()
    fs.cpSync(src, mine, { recursive: true })
    const out = tmpDir()
    const env = state()
    expect((await packer(['pack', mine, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'car-journaled:4' } })).code).toBe(null)
    fs.writeFileSync(path.join(mine, 'a-big.bin'), bytes(7 * MiB + 3, 99)) // same size, new bytes and mtime
    await packerOk(['pack', mine, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(mine))
  })

  it('a rerun after success does nothing and says so', async () => {
    const out = tmpDir()
    const env = state()
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    const before = fs.readdirSync(out).map((n) => [n, fs.statSync(path.join(out, n)).mtimeMs])
    const again = await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    expect(again.stdout).toMatch(/^nothing to do: .* already holds the set these arguments make/)
    expect(fs.readdirSync(out).map((n) => [n, fs.statSync(path.join(out, n)).mtimeMs])).toEqual(before)
  })

  it('an interrupted pack whose OUTDIR was emptied does not block a new pack there', async () => {
    const out = tmpDir()
    const env = state()
    expect((await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'car-journaled:2' } })).code).toBe(null)
    fs.rmSync(out, { recursive: true })
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '3MiB'], { env })
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('a rerun with other arguments over an interrupted pack is refused', async () => {
    const out = tmpDir()
    const env = state()
    expect((await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'car-journaled:2' } })).code).toBe(null)
    const r = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '3MiB'], { env })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/holds an interrupted pack made with other arguments/)
  })
})

describe('one pack per OUTDIR at a time', () => {
  it('a second pack into a locked OUTDIR refuses, naming the other process', async () => {
    const out = tmpDir()
    const other = spawn('sleep', ['30'])
    try {
      fs.writeFileSync(path.join(out, '.packer.lock'), `${other.pid} ${(await import('node:os')).hostname()}\n`)
      const r = await packer(['pack', src, '-o', out, '--no-encrypt'], { env: state() })
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(new RegExp(`another packer \\(pid ${other.pid} on .*\\) is writing ${out}`))
      expect(carFiles(out)).toEqual([])
    } finally {
      other.kill()
    }
  })

  it('two packs started together: exactly one succeeds, the set is intact', async () => {
    const out = tmpDir()
    const env = state()
    const [a, b] = await Promise.all([0, 1].map(() => packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })))
    const codes = [a.code, b.code].sort()
    // Either the second found the lock, or it started after the first finished and found nothing to do.
    if (codes[1] === 1) expect([a, b].find((r) => r.code === 1)!.stderr).toMatch(/another packer .* is writing/)
    else expect([a, b].map((r) => r.stdout).join('')).toMatch(/nothing to do/)
    sameSet(reference, out)
  })

  it('a lock left by a killed pack is taken over', async () => {
    const out = tmpDir()
    const env = state()
    expect((await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'block:20' } })).code).toBe(null)
    expect(fs.existsSync(path.join(out, '.packer.lock'))).toBe(true)
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    sameSet(reference, out)
  })
})

describe('unpack into the same DEST continues', () => {
  it('files already restored are skipped (not an overwrite); missing ones are restored', async () => {
    const dest = tmpDir()
    await packerOk(['unpack', reference, '-o', dest])
    fs.rmSync(path.join(dest, 'z-big.bin'))
    fs.rmSync(path.join(dest, 'sub/small-3.txt'))
    const r = await packerOk(['unpack', reference, '-o', dest])
    expect(r.stdout).toMatch(/restored 2 files .*; 20 were already restored and were skipped/)
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('an unpack killed midway leaves no file looking complete, and a rerun finishes it', async () => {
    const dest = tmpDir()
    // Killed after the 5th file's bytes are written, before it is renamed into place.
    expect((await packer(['unpack', reference, '-o', dest], { env: { PACKER_FAULT: 'restore-write:5' } })).code).toBe(null)
    expect(fs.readdirSync(path.join(dest, 'sub')).some((n) => n.startsWith('.packer-tmp-'))).toBe(true)
    // Whatever is there under a final name is complete and right.
    const want = describeTree(src)
    for (const [p, e] of describeTree(dest)) if (e.type === 'file' && !p.includes('.packer-tmp-')) expect(e.sha256, p).toBe(want.get(p)!.sha256)
    await packerOk(['unpack', reference, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })
})

const isRoot = process.getuid?.() === 0
describe.skipIf(!isRoot)('a full disk, then space freed (tmpfs, as root)', () => {
  it('unpack fails with one line, and the rerun after freeing space completes the tree, keeping what was restored', async () => {
    const dest = tmpDir('packer-tmpfs-')
    expect((await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dest])).code).toBe(0)
    try {
      const r = await packer(['unpack', reference, '-o', dest])
      expect(r.code).toBe(1)
      expect(r.stderr.trim()).toMatch(/^packer: no space left in .* \(the files not yet restored need about [\d.]+ MiB\); free space and rerun/)
      const kept = [...describeTree(dest).entries()].filter(([, e]) => e.type === 'file')
      expect(kept.length).toBeGreaterThan(0)
      const want = describeTree(src)
      for (const [p, e] of kept) expect(e.sha256, p).toBe(want.get(p)!.sha256) // what is there is complete and right
      expect((await run('mount', ['-o', 'remount,size=40m', dest])).code).toBe(0)
      const again = await packerOk(['unpack', reference, '-o', dest])
      expect(again.stdout).toMatch(/; \d+ were already restored and were skipped/)
      expect(describeTree(dest)).toEqual(want)
    } finally {
      await run('umount', ['-l', dest])
    }
  })

  it('pack fails with one line, and the rerun after freeing space completes the set', async () => {
    const out = tmpDir('packer-tmpfs-')
    expect((await run('mount', ['-t', 'tmpfs', '-o', 'size=5m', 'tmpfs', out])).code).toBe(0)
    try {
      const env = state()
      const r = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
      expect(r.code).toBe(1)
      expect(r.stderr.trim()).toMatch(/^packer: no space left on the device of .*; free space and rerun/)
      expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
      expect((await run('mount', ['-o', 'remount,size=40m', out])).code).toBe(0)
      const again = await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
      expect(again.stdout).toMatch(/resumed: [1-9]\d* CAR\(s\)/)
      sameSet(reference, out)
    } finally {
      await run('umount', ['-l', out])
    }
  })
})
