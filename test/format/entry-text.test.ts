import crypto from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { encodeBytes, entryJsonText, type Json, type TableEntry } from '../../src/format/table-entry.js'

/** How the table's entry line was made before entryJsonText: an object of its fields, then JSON.stringify. */
function reference (key: string, bytes: Buffer, e: TableEntry): string {
  const o: Json = {}
  encodeBytes(key, bytes, o)
  o.type = e.type
  o.mode = e.mode
  o.mtime = e.mtimeNs.toString()
  o.uid = e.uid
  o.gid = e.gid
  if (e.type === 'file') {
    o.size = e.size
    o.cid = e.cid
    if (e.storedSize !== e.size) o.storedSize = e.storedSize
    o.cars = e.cars
    if (e.storedName !== undefined) o.storedName = e.storedName
    if (e.enc) o.age = { key: e.enc.key.toString('base64'), headerLength: e.enc.headerLength }
    if (e.compression !== undefined) o.compression = e.compression
  } else if (e.type === 'symlink') {
    encodeBytes('target', e.target ?? Buffer.alloc(0), o)
  }
  return JSON.stringify(o)
}

const NAMES: Buffer[] = [
  Buffer.from('plain.txt'),
  Buffer.from('quote " backslash \\ slash / tab \t newline \n'),
  Buffer.from('control \u0001\u001f\u007f and unicode é 日本 😀 \u2028\u2029'),
  Buffer.from([0x66, 0x6f, 0xff, 0xfe, 0x80]), // not UTF-8: base64
  Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate: not UTF-8 either
  Buffer.from('<script>&amp;</script>'),
]

function entries (name: Buffer): TableEntry[] {
  const base = { path: Buffer.concat([Buffer.from('dir/'), name]), mode: 0o644, mtimeNs: 1_700_000_000_123_456_789n, uid: 1000, gid: 2 ** 32 - 1 }
  const key = crypto.randomBytes(16)
  return [
    { ...base, type: 'dir' },
    { ...base, type: 'dir', mtimeNs: -5n, mode: 0o7777 },
    { ...base, type: 'symlink', target: Buffer.from('../to "x"\n') },
    { ...base, type: 'symlink', target: Buffer.from([0x2e, 0xc3, 0x28]) },
    { ...base, type: 'file', size: 0, cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', storedSize: 0, cars: [0] },
    { ...base, type: 'file', size: 12345, cid: 'bafkreia', storedSize: 12345 + 200, cars: [3, 4, 17], enc: { key, headerLength: 200 }, compression: 'zstd' },
    { ...base, type: 'file', size: 2 ** 53 - 1, cid: 'bafy', storedSize: 2 ** 53 - 1, cars: [0], enc: { key, headerLength: 0 } },
    { ...base, type: 'file', size: 7, cid: 'bafy', storedSize: 9, cars: [1], storedName: 'abc123' },
    { ...base, type: 'file', size: 7, cid: 'bafy', cars: [1] }, // no storedSize
    { ...base, type: 'file', mtimeNs: 10n ** 24n, size: 1, cid: 'bafy', storedSize: 1, cars: [0, 1] },
  ]
}

describe('entryJsonText', () => {
  it('gives the bytes JSON.stringify of the entry as an object gives, for every kind of entry and name', () => {
    let n = 0
    for (const name of NAMES) {
      for (const e of entries(name)) {
        for (const key of ['name', 'path']) {
          const bytes = key === 'name' ? name : e.path
          expect(entryJsonText(key, bytes, e)).toBe(reference(key, bytes, e))
          n++
        }
      }
    }
    expect(n).toBe(NAMES.length * 10 * 2)
  })

  it('matches it on random names', () => {
    for (let i = 0; i < 2000; i++) {
      const name = crypto.randomBytes(1 + (i % 40))
      const e = entries(name)[i % 10]!
      expect(entryJsonText('name', name, e)).toBe(reference('name', name, e))
    }
  })
})
