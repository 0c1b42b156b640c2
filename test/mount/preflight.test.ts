import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tmpDir } from '../helpers.js'
import { checkFuse } from '../../src/mount/preflight.js'

/** The machine checks, with the environment replaced (this machine has FUSE; CI too). */
describe('checkFuse', () => {
  const bin = tmpDir()
  fs.writeFileSync(path.join(bin, 'fusermount'), '#!/bin/sh\n', { mode: 0o755 })
  const ok = { devFuse: '/dev/fuse', fusermountDirs: [bin], loadFuse: () => 'fuse' }

  it('passes on a machine with FUSE', async () => {
    expect(await checkFuse(ok)).toBe('fuse')
  })

  it('names what is missing and the Debian package that brings it', async () => {
    await expect(checkFuse({ ...ok, devFuse: '/nonexistent/fuse' })).rejects.toThrow(/\/nonexistent\/fuse does not exist: FUSE is not available here.*modprobe fuse/)
    await expect(checkFuse({ ...ok, fusermountDirs: [tmpDir()] })).rejects.toThrow(/fusermount not found: install the Debian package 'fuse'/)
    const noLib = (): never => { throw new Error('libfuse.so.2: cannot open shared object file: No such file or directory') }
    await expect(checkFuse({ ...ok, loadFuse: noLib })).rejects.toThrow(/libfuse\.so\.2 not found: install the Debian package 'libfuse2'/)
  })
})
