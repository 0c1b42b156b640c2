import { describe, expect, it } from 'vitest'
import type { TableEntry } from '../../src/format/table-entry.js'
import { buildTree, mtimeMs } from '../../src/mount/tree.js'

const entry = (p: string | Buffer, type: 'dir' | 'file' = 'file', mtimeNs = 1_700_000_000_123_456_789n): TableEntry =>
  ({ path: Buffer.isBuffer(p) ? p : Buffer.from(p), type, mode: 0o644, mtimeNs, uid: 0, gid: 0, ...(type === 'file' ? { size: 3 } : {}) })

describe('the mounted tree (no mount)', () => {
  it('maps table paths to FUSE paths, counts links, files and bytes, and gives mtimes in milliseconds', () => {
    const t = buildTree([entry('a', 'dir'), entry('a/b', 'dir'), entry('a/b/c.txt'), entry('a/é.txt'), entry('z.txt', 'file', 5_000_000_000n)])
    expect([...t.nodes.keys()]).toEqual(['/', '/a', '/a/b', '/a/b/c.txt', '/a/é.txt', '/z.txt'])
    expect(t.nodes.get('/')!.children).toEqual(['a', 'z.txt'])
    expect(t.nodes.get('/a')!.children).toEqual(['b', 'é.txt'])
    expect(t.nodes.get('/')!.nlink).toBe(3)
    expect(t.nodes.get('/a')!.nlink).toBe(3)
    expect([t.files, t.bytes, t.renamed]).toEqual([3, 9, []])
    expect(mtimeMs(t.nodes.get('/z.txt')!)).toBe(5000)
    expect(mtimeMs(t.nodes.get('/a/b/c.txt')!)).toBe(1_700_000_000_123)
    expect(mtimeMs(t.nodes.get('/')!)).toBe(1_700_000_000_123)
  })

  it('shows names that are not UTF-8 with U+FFFD, made unique with ~N, and keeps their contents under the new name', () => {
    const bad = Buffer.from([0x64, 0xff]) // "d\xff"
    const t = buildTree([
      entry('x', 'dir'),
      entry('x/ok'),
      entry(bad, 'dir'),
      entry(Buffer.concat([bad, Buffer.from('/in.txt')])),
      entry('d\uFFFD', 'dir'), // valid UTF-8 that looks like the renamed one
      entry('d\uFFFD/in2.txt'),
      entry('x/later'),
    ])
    expect([...t.nodes.keys()]).toEqual(['/', '/x', '/x/ok', '/d\uFFFD', '/d\uFFFD/in.txt', '/d\uFFFD~1', '/d\uFFFD~1/in2.txt', '/x/later'])
    expect(t.renamed.map((r) => r.to)).toEqual(['/d\uFFFD', '/d\uFFFD~1'])
    expect(t.nodes.get('/x')!.children).toEqual(['ok', 'later'])
    expect(t.nodes.get('/')!.children).toEqual(['x', 'd\uFFFD', 'd\uFFFD~1'])
  })
})
