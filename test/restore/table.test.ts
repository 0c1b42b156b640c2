/**
 * Version-2 file tables that pack never writes (built by test/forge-set.ts): every reader refuses them with one line,
 * and unpack writes nothing.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CarSet } from '../../src/read/car-set.js'
import { restore } from '../../src/restore/restorer.js'
import type { NumberedEntry, SetTable } from '../../src/read/set-table.js'
import { describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { forgeSet, type ForgeOptions, type ForgedLine } from '../forge-set.js'

const file = (name: string, text = name): ForgedLine => ({ name, type: 'file', data: Buffer.from(text) })
const dir = (name: string): ForgedLine => ({ name, type: 'dir' })

/** A forged set; `ls` and `unpack` of it both fail with `message`, and unpack leaves DEST empty. */
async function refused (o: ForgeOptions, message: RegExp): Promise<void> {
  const set = tmpDir()
  await forgeSet(set, o)
  const ls = await packer(['ls', set])
  expect(ls.code).toBe(1)
  expect(oneLine(ls.stderr)).toMatch(message)
  const dest = tmpDir()
  const r = await packer(['unpack', set, '-o', dest])
  expect(r.code).toBe(1)
  expect(oneLine(r.stderr)).toMatch(message)
  expect(fs.readdirSync(dest)).toEqual([])
}

describe('a forged table that follows the format', () => {
  it('restores, in chunks of its own cutting; ls lists it in table order', async () => {
    const set = tmpDir()
    await forgeSet(set, {
      chunks: [
        [{ dir: '' }, file('a.txt', 'alpha'), dir('d'), dir('e')],
        [{ dir: '' }, { name: 'z', type: 'symlink', target: 'a.txt' }, { dir: 'd' }, file('x', 'ex')],
        [{ dir: 'e' }, dir('f'), { dir: 'e/f' }, file('g', 'gee')],
      ],
    })
    expect((await packerOk(['ls', set])).stdout).toBe('a.txt\nd/\ne/\nz\nd/x\ne/f/\ne/f/g\n')
    const dest = tmpDir()
    await packerOk(['unpack', set, '-o', dest])
    const tree = describeTree(dest, { mtimes: false })
    expect([...tree.keys()]).toEqual(['a.txt', 'd', 'd/x', 'e', 'e/f', 'e/f/g', 'z'])
    expect(fs.readFileSync(path.join(dest, 'e/f/g'), 'utf8')).toBe('gee')
    expect(fs.readlinkSync(path.join(dest, 'z'))).toBe('a.txt')
    expect(fs.statSync(path.join(dest, 'e/f')).mtimeMs).toBe(1_700_000_000_000)
  })
})

describe('a forged table is refused with one line, nothing written', () => {
  it('entries out of order in a chunk', async () => {
    await refused({ chunks: [[{ dir: '' }, file('b'), file('a')]] }, /table chunk 1 \(\S+\) line 3: "a" is out of order or repeated; the file table is damaged/)
  })

  it('a path repeated', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a'), file('a')]] }, /line 3: "a" is out of order or repeated/)
  })

  it('directory lines out of order', async () => {
    await refused({ chunks: [[{ dir: '' }, dir('a'), dir('b'), { dir: 'b' }, file('x'), { dir: 'a' }, file('y')]] }, /line 6: directories are out of order/)
  })

  it('a path repeated across two chunks', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a'), file('b')], [{ dir: '' }, file('b'), file('c')]] }, /table chunk 1 \(\S+\) does not match the table index; the set is damaged/)
  })

  it('a chunk whose entry count disagrees with the index', async () => {
    await refused({
      chunks: [[{ dir: '' }, file('a'), file('b')]],
      record: (r) => { r.entries = 3 },
      header: (h) => { h.entries = 3 },
    }, /table chunk 1 \(\S+\) does not match the table index; the set is damaged/)
  })

  it('a chunk whose first entry is not the one the index names', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a'), file('b')]], record: (r) => { r.first = { dir: '', name: 'b' } } }, /does not match the table index/)
  })

  it('an index whose header does not add up', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a')]], header: (h) => { h.files = 2 } }, /the chunks do not add up to the header's counts/)
  })

  it('an index of a table version this packer does not know', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a')]], header: (h) => { h.version = 3 } }, /table version 3 is not supported by this packer \(it reads version 2\); upgrade packer$/)
  })

  it('entries of a directory the table does not have', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a'), { dir: 'ghost' }, file('x')]] }, /"ghost" holds entries but is not in the table, not a directory; refusing this set/)
  })

  it('a name holding a slash', async () => {
    await refused({ chunks: [[{ dir: '' }, file('a/b')]] }, /line 2: an entry has no valid 'name' or 'nameB64'/)
  })

  it('a chunk that does not start with a directory line', async () => {
    await refused({ chunks: [[file('a')]] }, /line 1: an entry comes before any directory line/)
  })
})

describe('unpack PATH… of a forged table', () => {
  it('a path below a stored symlink is refused, nothing written', async () => {
    const set = tmpDir()
    const outside = tmpDir('packer-outside-')
    await forgeSet(set, { chunks: [[{ dir: '' }, { name: 'link', type: 'symlink', target: outside }, { dir: 'link' }, file('x')]] })
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest, 'link/x'])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/"link\/x" lies below "link", which is not a directory of the set; refusing this set/)
    expect(fs.readdirSync(dest)).toEqual([])
    expect(fs.readdirSync(outside)).toEqual([])
  })
})

describe('unpack itself writes only into directories it made', () => {
  it('even given a table that lets a run of entries follow a stored symlink', async () => {
    const set = tmpDir()
    const outside = tmpDir('packer-outside-')
    await forgeSet(set, { chunks: [[{ dir: '' }, file('a'), { name: 'link', type: 'symlink', target: outside }, file('z')]] })
    const s = await CarSet.open(set)
    // The entries a table without the readers' checks would give: link's "entries" after link.
    const real = s.files
    const x = { ...(await real.lookup(Buffer.from('a')))!, path: Buffer.from('link/x'), number: 3 }
    async function * unchecked (): AsyncGenerator<NumberedEntry> {
      for await (const e of real.entries()) yield e
      yield x
    }
    const table: SetTable = { version: 2, entries: unchecked, below: unchecked, list: unchecked, lookup: async (p) => await real.lookup(p) }
    Object.defineProperty(s, 'table', { value: table })
    const dest = tmpDir()
    await expect(restore(s, { dest, paths: [], overwrite: false, sameOwner: false, warn: () => {} }))
      .rejects.toThrow(/^the set has entries in "link", which is not a directory this unpack made; refusing this set$/)
    expect(fs.readdirSync(outside)).toEqual([])
    // Files restored before the refusal may be there (whole), nothing else: no link, no temporary.
    expect(fs.readdirSync(dest).filter((n) => n !== 'a' && n !== 'z')).toEqual([])
  })
})
