import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { nativeAddon } from '../../src/native-addon.js'
import { nativeWholeFileReader, readWholeFileSync, type SourceIdentity } from '../../src/source/file-reader.js'
import { tmpDir } from '../helpers.js'

const identity = (file: string): SourceIdentity => {
  const st = fs.lstatSync(file, { bigint: true })
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs }
}

describe("a leaf job's read of a whole small file, natively and through node:fs", () => {
  const native = nativeWholeFileReader(fs)
  it('the addon is there to be tested', () => {
    if (process.env.PACKER_NO_NATIVE !== '1') expect(native).not.toBeNull()
  })

  it.skipIf(native === null)('gives the same bytes, into the scratch buffer when it fits, and the same problems', () => {
    const dir = tmpDir()
    const at = (n: string): string => path.join(dir, n)
    const bytesOf = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff))
    const cases: Array<{ name: string, expect: SourceIdentity, path: Buffer }> = []
    for (const size of [0, 1, 4096, 70_000]) {
      fs.writeFileSync(at(`f${size}`), bytesOf(size))
      cases.push({ name: `f${size}`, expect: identity(at(`f${size}`)), path: Buffer.from(at(`f${size}`)) })
    }
    // Changed after the walk saw it: its mtime, its size, replaced by another file, by a symlink, removed.
    fs.writeFileSync(at('touched'), 'abc')
    cases.push({ name: 'touched', expect: identity(at('touched')), path: Buffer.from(at('touched')) })
    fs.utimesSync(at('touched'), 1_000_000, 1_000_000)
    fs.writeFileSync(at('grown'), 'abc')
    const grown = identity(at('grown'))
    fs.appendFileSync(at('grown'), 'def')
    fs.utimesSync(at('grown'), Number(grown.mtimeNs / 1_000_000n) / 1000, Number(grown.mtimeNs / 1_000_000n) / 1000)
    cases.push({ name: 'grown', expect: grown, path: Buffer.from(at('grown')) })
    fs.writeFileSync(at('replaced'), 'abc')
    const replaced = identity(at('replaced'))
    fs.writeFileSync(at('other'), 'xyz') // while the first still holds its inode
    fs.renameSync(at('other'), at('replaced'))
    cases.push({ name: 'replaced', expect: replaced, path: Buffer.from(at('replaced')) })
    fs.writeFileSync(at('linked'), 'abc')
    const linked = identity(at('linked'))
    fs.rmSync(at('linked'))
    fs.symlinkSync('f1', at('linked'))
    cases.push({ name: 'linked', expect: linked, path: Buffer.from(at('linked')) })
    cases.push({ name: 'removed', expect: linked, path: Buffer.from(at('removed')) })
    fs.mkdirSync(at('a-dir'))
    cases.push({ name: 'a-dir', expect: identity(at('a-dir')), path: Buffer.from(at('a-dir')) })

    const outcomes = (read: typeof native): unknown[] => cases.map((c) => {
      const scratch = new Uint8Array(8192).fill(7)
      const r = read!(c.path, c.expect, scratch)
      if (!('bytes' in r)) return { name: c.name, ...r }
      return { name: c.name, bytes: Buffer.from(r.bytes).toString('hex'), inScratch: r.bytes.buffer === scratch.buffer }
    })
    // The addon itself reads the unchanged files (and only those): node:fs reads the others again.
    const addon = nativeAddon()!
    expect(cases.map((c) => addon.readFileInto(c.path, c.expect.dev, c.expect.ino, c.expect.size, c.expect.mtimeNs, new Uint8Array(Number(c.expect.size)))))
      .toEqual([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    const viaNode = outcomes((file, expect, into) => readWholeFileSync(fs, file, expect, into))
    expect(outcomes(native)).toEqual(viaNode)
    expect(viaNode).toEqual([
      ...[0, 1, 4096, 70_000].map((n) => ({ name: `f${n}`, bytes: bytesOf(n).toString('hex'), inScratch: n <= 8192 })),
      { name: 'touched', problem: { kind: 'changed', what: 'modified before reading' } },
      { name: 'grown', problem: { kind: 'changed', what: 'size 3 became 6 before reading' } },
      { name: 'replaced', problem: { kind: 'changed', what: 'replaced before reading' } },
      { name: 'linked', problem: { kind: 'changed', what: 'it became a symlink' } },
      { name: 'removed', problem: { kind: 'vanished' } },
      { name: 'a-dir', problem: { kind: 'read', at: 0, code: 'EISDIR' } },
    ])
  })
})
