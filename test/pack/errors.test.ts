import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { pack } from '../../src/pack/packer.js'
import { dirOutput } from '../../src/pack/dir-output.js'
import { localTree } from '../../src/source/local-tree.js'
import { PackerError } from '../../src/errors.js'
import { importFile } from '../../src/pack/unixfs.js'
import { ROOT, bytes, oneLine, packer, packerOk, run, tmpDir } from '../helpers.js'
import { forgeSet, type ForgedLine } from '../forge-set.js'


describe('pack refuses bad input with one clear line', () => {
  it('a missing SOURCE', async () => {
    const r = await packer(['pack', '/nonexistent/source', '-o', tmpDir(), '--no-encrypt'])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toBe('packer: source /nonexistent/source does not exist; give an existing directory or file')
  })

  it('no recipient and no --no-encrypt', async () => {
    const src = tmpDir()
    const out = path.join(tmpDir(), 'out')
    const r = await packer(['pack', src, '-o', out])
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/no recipient: give -R certificate\.pem, -r age1…, or --passphrase to encrypt, or --no-encrypt/)
    expect(fs.existsSync(out)).toBe(false)
  })

  it('an OUTDIR that already holds a set (made from other arguments)', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'f'), 'f')
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    const before = fs.readdirSync(out).sort()
    const r = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '30MiB'])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/already holds a packer set \(manifest\.json\); choose an empty directory/)
    expect(fs.readdirSync(out).sort()).toEqual(before)
  })

  it('a bin size too small, or not a size', async () => {
    const src = tmpDir()
    let r = await packer(['pack', src, '-o', tmpDir(), '--no-encrypt', '--bin-size', '100KiB'])
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/--bin-size 102400 is too small/)
    r = await packer(['pack', src, '-o', tmpDir(), '--no-encrypt', '--bin-size', 'lots'])
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/--bin-size: cannot read 'lots' as a size/)
  })

  it('skips a FIFO with a warning naming it (and does not hang on it)', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'ok.txt'), 'ok')
    expect((await run('mkfifo', [path.join(src, 'pipe')])).code).toBe(0)
    const out = tmpDir()
    const r = await packerOk(['pack', src, '-o', out, '--no-encrypt'])
    expect(r.stderr).toContain(`warning: skipping ${path.join(src, 'pipe')}: a FIFO cannot be stored`)
    expect((await packerOk(['ls', out])).stdout).toBe('ok.txt\n')
  })
})

describe('a source that changes under pack is never recorded with bytes it does not hold', () => {
  const setup = (): { src: string, out: string } => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.txt'), 'first file')
    fs.writeFileSync(path.join(src, 'b.txt'), 'second file')
    return { src, out: tmpDir() }
  }

  it('--on-change=fail: a file that grows after it was listed is an error naming it; no manifest written', async () => {
    const { src, out } = setup()
    const run = pack({ source: localTree(src), output: dirOutput(out), binSize: 4 << 20, encryption: null, onChange: 'fail', warn: () => {}, progress: (e) => { if (e.type === 'scan' && e.done) fs.appendFileSync(path.join(src, 'b.txt'), ' and more') } })
    await expect(run).rejects.toThrow(PackerError)
    await expect(run).rejects.toThrow(/b\.txt: changed while being packed \(size 11 became 20/)
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
  })

  it('--on-change=retry (the default): the file is read again and stored as it is now', async () => {
    const { src, out } = setup()
    const warnings: string[] = []
    const r = await pack({ source: localTree(src), output: dirOutput(out), binSize: 4 << 20, encryption: null, warn: (m) => warnings.push(m), progress: (e) => { if (e.type === 'scan' && e.done) fs.appendFileSync(path.join(src, 'b.txt'), ' and more') } })
    expect(r.files).toBe(2)
    expect(warnings.join('\n')).toMatch(/b\.txt changed while being packed; reading it again/)
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(fs.readFileSync(path.join(dest, 'b.txt'), 'utf8')).toBe('second file and more')
  })

  it('--on-change=skip: a changed file is left out with a warning, the rest is packed', async () => {
    const { src, out } = setup()
    const warnings: string[] = []
    const r = await pack({ source: localTree(src), output: dirOutput(out), binSize: 4 << 20, encryption: null, onChange: 'skip', warn: (m) => warnings.push(m), progress: (e) => { if (e.type === 'scan' && e.done) fs.appendFileSync(path.join(src, 'b.txt'), ' and more') } })
    expect(r.files).toBe(1)
    expect(r.skipped.map((s) => s.path)).toEqual(['b.txt'])
    expect(warnings.join('\n')).toMatch(/skipping .*b\.txt: changed while being packed/)
    expect((await packerOk(['ls', out])).stdout).toBe('a.txt\n')
  })

  it('a file that vanishes after it was listed', async () => {
    const { src, out } = setup()
    const run = pack({ source: localTree(src), output: dirOutput(out), binSize: 4 << 20, encryption: null, warn: () => {}, progress: (e) => { if (e.type === 'scan' && e.done) fs.rmSync(path.join(src, 'a.txt')) } })
    await expect(run).rejects.toThrow(/a\.txt: vanished while packing/)
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
  })
})

describe('unpack refuses a set whose paths could escape DEST, before writing anything', () => {
  // Forged tables (with their CIDs in the manifest, as an attacker who controls both could make them).
  const outside = (): string => tmpDir('packer-outside-')
  const v2: Array<[string, (out: string) => ForgedLine[], RegExp]> = [
    ['a name ..', () => [{ dir: '' }, { name: '..', type: 'file', data: Buffer.from('x') }], /path "\.\." could escape the destination; refusing this set/],
    ['a directory line ..', () => [{ dir: '' }, { name: 'a', type: 'dir' }, { dir: 'a/..' }, { name: 'x', type: 'file', data: Buffer.from('x') }], /path "a\/\.\." could escape the destination; refusing this set/],
    ['an absolute directory line', () => [{ dir: '' }, { name: 'a', type: 'file', data: Buffer.from('a') }, { dir: '/etc' }, { name: 'x', type: 'file', data: Buffer.from('x') }], /path "\/etc" is absolute; refusing this set/],
    ['through a stored symlink', (out) => [{ dir: '' }, { name: 'a.txt', type: 'file', data: Buffer.from('a') }, { name: 'link', type: 'symlink', target: out }, { dir: 'link' }, { name: 'x', type: 'file', data: Buffer.from('x') }], /"link" holds entries but is a symlink, not a directory; refusing this set/],
    ['through a stored file', () => [{ dir: '' }, { name: 'f', type: 'file', data: Buffer.from('f') }, { dir: 'f' }, { name: 'x', type: 'file', data: Buffer.from('x') }], /"f" holds entries but is a file, not a directory; refusing this set/],
  ]
  for (const [what, lines, message] of v2) {
    it(`a path ${what}`, async () => {
      const out = outside()
      const set = tmpDir()
      await forgeSet(set, { chunks: [lines(out)] })
      const dest = tmpDir()
      const r = await packer(['unpack', set, '-o', dest])
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toMatch(message)
      expect(fs.readdirSync(dest)).toEqual([])
      expect(fs.readdirSync(out)).toEqual([])
    })
  }

  // Version 1: the committed set, its table beside the manifest edited (and its CID with it).
  for (const [what, bad, message] of [['..', '../escape.txt', /could escape the destination; refusing this set/], ['absolute', '/etc/escape', /is absolute; refusing this set/],
    ['through a stored symlink', 'link/x', /the parent of "link\/x" is not a directory of the set; refusing this set/]] as const) {
    it(`version 1: a path ${what}`, async () => {
      const set = tmpDir()
      const v1 = path.join(ROOT, 'testdata/vectors/v1/plain')
      for (const n of fs.readdirSync(v1)) fs.copyFileSync(path.join(v1, n), path.join(set, n))
      const tablePath = path.join(set, 'table.jsonl')
      const forged = fs.readFileSync(tablePath, 'utf8').replace('"path":"hello.txt"', `"path":${JSON.stringify(bad)}`)
      fs.writeFileSync(tablePath, forged)
      const { cid } = await importFile([Buffer.from(forged)], { put: async () => {} })
      const m = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
      m.table.cid = cid.toString()
      fs.writeFileSync(path.join(set, 'manifest.json'), JSON.stringify(m))
      const dest = tmpDir()
      const r = await packer(['unpack', set, '-o', dest])
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toMatch(message)
      expect(fs.readdirSync(dest)).toEqual([])
    })
  }
})

const isRoot = process.getuid?.() === 0

describe.skipIf(!isRoot)('a full disk (a small tmpfs, as root)', () => {
  const withTmpfs = async (sizeKiB: number, fn: (dir: string) => Promise<void>): Promise<void> => {
    const dir = tmpDir('packer-tmpfs-')
    expect((await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', dir])).code).toBe(0)
    try { await fn(dir) } finally { await run('umount', ['-l', dir]) }
  }

  it('pack into a full OUTDIR: one line naming the directory, nothing that looks complete', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'big.bin'), bytes(6 << 20, 31))
    await withTmpfs(2048, async (out) => {
      const r = await packer(['pack', src, '-o', out, '--no-encrypt'])
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toMatch(new RegExp(`no space left on the device of ${out}.*free space and rerun`))
      expect(fs.readdirSync(out).filter((n) => n.endsWith('.car') || n === 'manifest.json')).toEqual([])
    })
  })

  it('unpack into a full DEST: one line naming it, no partial file under its name', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'big.bin'), bytes(6 << 20, 31))
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt'])
    await withTmpfs(2048, async (dest) => {
      const r = await packer(['unpack', set, '-o', dest])
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toMatch(new RegExp(`no space left in ${dest} while restoring big\\.bin \\(the files not yet restored need about 6\\.00 MiB\\); free space and rerun`))
      expect(fs.readdirSync(dest)).toEqual([])
    })
  })
})
