import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { nativeAddon, type FileOpFailure } from '../../src/native-addon.js'
import { bytes, tmpDir } from '../helpers.js'

const forcedOff = process.env.PACKER_NO_NATIVE === '1'
const isRoot = process.getuid?.() === 0
const NUL = Buffer.of(0)
const names = (...paths: Array<string | Buffer>): Buffer => Buffer.concat(paths.flatMap((p) => [Buffer.from(p), NUL]))

async function writeFiles (files: Array<{ path: string | Buffer, data: Buffer, mode: number, uid?: number, gid?: number, sec: number, nsec: number }>): Promise<FileOpFailure[]> {
  const meta = new Float64Array(files.flatMap((f) => [f.mode, f.uid ?? -1, f.gid ?? -1, f.sec, f.nsec]))
  return await new Promise((resolve) => nativeAddon()!.writeFiles(names(...files.map((f) => f.path)), files.map((f) => f.data), meta, resolve))
}

async function renameFiles (pairs: Array<[string, string]>): Promise<FileOpFailure[]> {
  return await new Promise((resolve) => nativeAddon()!.renameFiles(names(...pairs.flat()), pairs.length, resolve))
}

describe.skipIf(forcedOff)('writeFiles and renameFiles: small files written whole on the thread pool', () => {
  it('writes every byte, mode (setuid included), nanosecond mtime and, as root, owner; renames', async () => {
    const dir = tmpDir()
    const odd = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0x2e, 0x74])])
    const files = [
      { path: path.join(dir, 't1'), data: bytes(100_000, 5), mode: 0o4755, uid: isRoot ? 1234 : -1, gid: isRoot ? 5678 : -1, sec: 1_700_000_000, nsec: 123_456_789 },
      { path: path.join(dir, 't2'), data: Buffer.alloc(0), mode: 0o600, sec: -2, nsec: 500_000_000 },
      { path: odd, data: Buffer.from('not UTF-8'), mode: 0o640, sec: 1, nsec: 0 },
    ]
    expect(await writeFiles(files)).toEqual([])
    for (const f of files) {
      const st = fs.statSync(f.path, { bigint: true })
      expect(fs.readFileSync(f.path).equals(f.data)).toBe(true)
      expect(Number(st.mode & 0o7777n)).toBe(f.mode)
      expect(st.mtimeNs).toBe(BigInt(f.sec) * 1_000_000_000n + BigInt(f.nsec))
      expect(st.atimeNs).toBe(st.mtimeNs)
      if (isRoot && f.uid !== undefined) expect([st.uid, st.gid]).toEqual([1234n, 5678n])
    }
    expect(await renameFiles([[path.join(dir, 't1'), path.join(dir, 'one')], [path.join(dir, 't2'), path.join(dir, 'two')]])).toEqual([])
    expect(fs.readdirSync(dir, { encoding: 'buffer' }).map((n) => n.toString('latin1')).sort()).toEqual(['f\xff.t', 'one', 'two'])
  })

  it('reports each file that fails with its errno name and system call, removes it, and writes the others', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'taken'), 'already here')
    fs.symlinkSync('/etc/passwd', path.join(dir, 'link'))
    const failures = await writeFiles([
      { path: path.join(dir, 'taken'), data: Buffer.from('x'), mode: 0o644, sec: 0, nsec: 0 },
      { path: path.join(dir, 'ok'), data: Buffer.from('fine'), mode: 0o644, sec: 0, nsec: 0 },
      { path: path.join(dir, 'no/such/dir'), data: Buffer.from('x'), mode: 0o644, sec: 0, nsec: 0 },
      { path: path.join(dir, 'link'), data: Buffer.from('x'), mode: 0o644, sec: 0, nsec: 0 },
    ])
    expect(failures).toEqual([[0, 'EEXIST', 'open'], [2, 'ENOENT', 'open'], [3, 'EEXIST', 'open']])
    expect(fs.readFileSync(path.join(dir, 'taken'), 'utf8')).toBe('already here')
    expect(fs.readFileSync(path.join(dir, 'ok'), 'utf8')).toBe('fine')
    expect(fs.readlinkSync(path.join(dir, 'link'))).toBe('/etc/passwd')
    expect(await renameFiles([[path.join(dir, 'gone'), path.join(dir, 'x')], [path.join(dir, 'ok'), path.join(dir, 'renamed')]])).toEqual([[0, 'ENOENT', 'rename']])
    expect(fs.readdirSync(dir).sort()).toEqual(['link', 'renamed', 'taken'])
  })

  it('refuses malformed arguments with a TypeError, before touching anything', () => {
    const addon = nativeAddon()!
    const done = (): void => { throw new Error('called back') }
    expect(() => addon.writeFiles(names('/tmp/x'), [Buffer.from('a')], new Float64Array(4), done)).toThrow(/5 numbers a file/)
    expect(() => addon.writeFiles(names('/tmp/x'), ['a' as any], new Float64Array(5), done)).toThrow(/Uint8Arrays/)
    expect(() => addon.writeFiles(names('/tmp/x'), [Buffer.from('a'), Buffer.from('b')], new Float64Array(10), done)).toThrow(/fewer names/)
    expect(() => addon.writeFiles(Buffer.from('/tmp/x'), [Buffer.from('a')], new Float64Array([0o644, -1, -1, 0, 0]), done)).toThrow(/fewer names/)
    expect(() => addon.writeFiles(names('/tmp/x'), [Buffer.from('a')], new Float64Array([0o10000, -1, -1, 0, 0]), done)).toThrow(/out of range/)
    expect(() => addon.renameFiles(names('/tmp/a', '/tmp/b', '/tmp/c'), 1, done)).toThrow(/more names/)
  })
})
