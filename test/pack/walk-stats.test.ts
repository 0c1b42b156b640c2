import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { nativeAddon } from '../../src/native-addon.js'
import { walkSource, type SourceEntry } from '../../src/source/walk.js'
import { tmpDir } from '../helpers.js'

/** Every entry a walk of `root` gives, and its warnings. */
async function walked (root: string): Promise<{ entries: SourceEntry[], warnings: string[] }> {
  const warnings: string[] = []
  const w = await walkSource(root, { warn: (m) => warnings.push(m), tmpDir: tmpDir() })
  const entries: SourceEntry[] = []
  for await (const run of w.runs) entries.push(...run.entries)
  return { entries, warnings }
}

describe("the walk's lstat of a directory's entries, a batch at a time", () => {
  it("gives node's own lstat and readlink of every entry: files, directories, symlinks, odd names and times", async () => {
    if (process.env.PACKER_NO_NATIVE !== '1') expect(nativeAddon()).not.toBeNull() // the batched native path is the one tested
    const root = tmpDir()
    const names: string[] = []
    for (let i = 0; i < 300; i++) { // more than a run (256) and many lstat groups
      const name = `f${String(i).padStart(3, '0')}`
      fs.writeFileSync(path.join(root, name), 'x'.repeat(i))
      names.push(name)
    }
    fs.mkdirSync(path.join(root, 'empty'))
    fs.mkdirSync(path.join(root, 'sub/deeper'), { recursive: true })
    fs.writeFileSync(path.join(root, 'sub/deeper/leaf'), 'leaf')
    fs.symlinkSync('f001', path.join(root, 'link-relative'))
    fs.symlinkSync('/nowhere/at/all', path.join(root, 'link-dangling'))
    fs.symlinkSync('t'.repeat(1000), path.join(root, 'link-long')) // longer than the first readlink buffer
    const odd = Buffer.concat([Buffer.from(path.join(root, 'odd-')), Buffer.from([0xff, 0xfe, 0x0a])])
    fs.writeFileSync(odd, 'not UTF-8, a newline in it')
    fs.utimesSync(path.join(root, 'f002'), -86400.5, -86400.5) // before 1970
    fs.utimesSync(path.join(root, 'f003'), 1e10, 1e10) // year 2286: past int64 nanoseconds, done by fs.promises
    execFileSync('mkfifo', [path.join(root, 'a-fifo')])

    const { entries, warnings } = await walked(root)
    expect(warnings).toEqual([`skipping ${path.join(root, 'a-fifo')}: a FIFO cannot be stored`])
    const rootBytes = Buffer.from(root + '/')
    expect(entries.map((e) => e.abs.subarray(rootBytes.length).toString('latin1')).sort()).toEqual([
      ...names, 'empty', 'link-dangling', 'link-long', 'link-relative', odd.subarray(rootBytes.length).toString('latin1'), 'sub', 'sub/deeper', 'sub/deeper/leaf',
    ].sort())
    for (const e of entries) {
      const st = fs.lstatSync(e.abs, { bigint: true })
      expect({ ...e.stat }).toEqual({ dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, mode: st.mode, uid: st.uid, gid: st.gid })
      expect(e.type).toBe(st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'symlink')
      expect(e.path.equals(e.abs.subarray(rootBytes.length))).toBe(true)
      if (e.type === 'symlink') expect(e.target!.equals(fs.readlinkSync(e.abs, { encoding: 'buffer' }))).toBe(true)
      else expect(e.target).toBeUndefined()
    }
    const f003 = entries.find((e) => e.path.toString() === 'f003')!
    expect(f003.stat.mtimeNs).toBe(10_000_000_000n * 1_000_000_000n)
    expect(entries.find((e) => e.path.toString() === 'link-long')!.target!.length).toBe(1000)
  })
})
