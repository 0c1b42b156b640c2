import { describe, expect, it } from 'vitest'
import { ListingOrder, type ListedName } from '../../src/s3/listing-order.js'

/** A deterministic generator (so a failure reproduces). */
function rng (seed: number): () => number {
  let s = seed
  return () => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s / 0x7fffffff }
}

/** Random names of one directory: objects, and directories (some of the same names), from bytes around '/'. */
function randomDirectory (r: () => number): { objects: string[], dirs: string[] } {
  const alphabet = ['a', 'b', '-', '.', '0', '~']
  const name = (): string => Array.from({ length: 1 + Math.floor(r() * 3) }, () => alphabet[Math.floor(r() * alphabet.length)]).join('')
  const objects = new Set<string>()
  const dirs = new Set<string>()
  for (let i = 0; i < 40; i++) (r() < 0.6 ? objects : dirs).add(name())
  return { objects: [...objects], dirs: [...dirs] }
}

describe('ListingOrder: a listing with a delimiter, in key order, comes out in name order', () => {
  it.each(Array.from({ length: 200 }, (_, i) => i))('random directory %i', (seed) => {
    const r = rng(seed + 1)
    const { objects, dirs } = randomDirectory(r)
    // S3's order: whole keys by bytes, a directory `N` listed as `N/`
    const listing: ListedName[] = [
      ...objects.map((n) => ({ name: Buffer.from(n), dir: false })),
      ...dirs.map((n) => ({ name: Buffer.from(n), dir: true })),
    ].sort((a, b) => Buffer.compare(a.dir ? Buffer.from(`${a.name}/`) : a.name, b.dir ? Buffer.from(`${b.name}/`) : b.name))
    const dropped: string[] = []
    const hold = 1 + Math.floor(r() * 5)
    const order = new ListingOrder<ListedName>(hold, (x, why) => dropped.push(`${x.name.toString()} ${why}`))
    const out: ListedName[] = []
    const page = 1 + Math.floor(r() * 7)
    for (let i = 0; i < listing.length; i += page) {
      for (const x of listing.slice(i, i + page)) order.add(x)
      out.push(...order.take())
      for (let c = order.wanted(); c !== null; c = order.wanted()) {
        order.answer(c, dirs.includes(c.toString()) ? { name: Buffer.from(c), dir: true } : null)
        out.push(...order.take())
      }
    }
    out.push(...order.finish())
    // the file table's order: by name bytes; a name both an object and a directory is the directory
    const expected = [...new Set([...objects, ...dirs])].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    expect(out.map((x) => `${x.name.toString()}${x.dir ? '/' : ''}`)).toEqual(expected.map((n) => dirs.includes(n) ? `${n}/` : n))
    expect(dropped.sort()).toEqual(objects.filter((n) => dirs.includes(n)).map((n) => `${n} it is both an object and a prefix: a path cannot be both a file and a directory`).sort())
  })
})
