import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'

import { loadNativeAddon, setFileTimesNs, splitNs } from '../../src/native-addon.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'
let dir: string

beforeAll(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'packer-times-')) })
afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }) })

const ATIME = 1_600_000_000_987_654_321n
const MTIME = 1_700_000_000_123_456_789n

describe('splitNs', () => {
  it('splits into floored seconds and 0…999999999 ns', () => {
    expect(splitNs(MTIME)).toEqual({ sec: 1_700_000_000n, nsec: 123_456_789 })
    expect(splitNs(0n)).toEqual({ sec: 0n, nsec: 0 })
    expect(splitNs(-1n)).toEqual({ sec: -1n, nsec: 999_999_999 })
    expect(splitNs(-1_500_000_000n)).toEqual({ sec: -2n, nsec: 500_000_000 })
  })
})

describe.skipIf(forcedOff)('setFileTimesNs with the addon', () => {
  it('is native here', () => {
    expect(loadNativeAddon().reason).toBeUndefined()
  })

  it('round-trips nanoseconds on a file', async () => {
    const f = path.join(dir, 'file')
    await fs.writeFile(f, 'x')
    await setFileTimesNs(f, ATIME, MTIME)
    const st = await fs.stat(f, { bigint: true })
    expect(st.atimeNs).toBe(ATIME)
    expect(st.mtimeNs).toBe(MTIME)
  })

  it('sets a symlink\'s own times, not its target\'s', async () => {
    const target = path.join(dir, 'target')
    const link = path.join(dir, 'link')
    await fs.writeFile(target, 'y')
    await setFileTimesNs(target, 1_000_000_000_000_000_001n, 1_000_000_000_000_000_002n)
    await fs.symlink('target', link)
    await setFileTimesNs(link, ATIME, MTIME)
    const l = await fs.lstat(link, { bigint: true })
    expect(l.atimeNs).toBe(ATIME)
    expect(l.mtimeNs).toBe(MTIME)
    const t = await fs.stat(target, { bigint: true })
    expect(t.mtimeNs).toBe(1_000_000_000_000_000_002n)
    // A dangling symlink is fine too: nothing is followed.
    const dangling = path.join(dir, 'dangling')
    await fs.symlink('does-not-exist', dangling)
    await setFileTimesNs(dangling, ATIME, MTIME)
    expect((await fs.lstat(dangling, { bigint: true })).mtimeNs).toBe(MTIME)
  })

  it('takes raw-byte paths (names that are not UTF-8) and times before 1970', async () => {
    const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e])])
    await fs.writeFile(name, 'z')
    await setFileTimesNs(name, -1_500_000_000n, MTIME)
    const st = await fs.stat(name, { bigint: true })
    expect(st.mtimeNs).toBe(MTIME)
    expect(st.atimeNs).toBe(-1_500_000_000n)
  })

  it('throws Node-style errors with the errno name as code', async () => {
    const missing = path.join(dir, 'missing', 'file')
    await expect(setFileTimesNs(missing, ATIME, MTIME)).rejects.toMatchObject({
      code: 'ENOENT', syscall: 'utimensat', path: missing,
    })
    await expect(setFileTimesNs(path.join(dir, 'bad\0name'), ATIME, MTIME)).rejects.toThrow(/NUL/)
  })
})

describe('setFileTimesNs without the addon', () => {
  it('falls back to lutimes with microsecond precision', async () => {
    vi.resetModules()
    const saved = process.env.PACKER_NO_NATIVE
    process.env.PACKER_NO_NATIVE = '1'
    try {
      const mod = await import('../../src/native-addon.js')
      expect(mod.loadNativeAddon()).toEqual({ addon: null, reason: 'disabled by PACKER_NO_NATIVE=1' })
      const f = path.join(dir, 'fallback')
      const link = path.join(dir, 'fallback-link')
      await fs.writeFile(f, 'w')
      await fs.symlink('fallback', link)
      await mod.setFileTimesNs(f, ATIME, MTIME)
      const st = await fs.stat(f, { bigint: true })
      expect(Number(st.mtimeNs - MTIME)).toBeLessThan(2000)
      expect(Number(MTIME - st.mtimeNs)).toBeLessThan(2000)
      expect(Number(st.atimeNs - ATIME)).toBeLessThan(2000)
      expect(Number(ATIME - st.atimeNs)).toBeLessThan(2000)
      await mod.setFileTimesNs(link, 1_000_000_000_000_000_000n, 1_000_000_000_000_000_000n)
      expect((await fs.lstat(link, { bigint: true })).mtimeNs).toBe(1_000_000_000_000_000_000n)
      expect((await fs.stat(f, { bigint: true })).mtimeNs).toBe(st.mtimeNs)
      await expect(mod.setFileTimesNs(path.join(dir, 'missing', 'x'), ATIME, MTIME)).rejects.toMatchObject({ code: 'ENOENT' })
    } finally {
      if (saved === undefined) delete process.env.PACKER_NO_NATIVE
      else process.env.PACKER_NO_NATIVE = saved
      vi.resetModules()
    }
  })
})
