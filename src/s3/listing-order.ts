/**
 * A listing of one prefix with Delimiter '/' comes in key order: the UTF-8 bytes of whole keys, where a common prefix
 * (a subdirectory) `N/` sorts after `N.txt` and `N-1` (any byte below '/'). The file table wants one directory's
 * names in byte order (FORMAT.md §5), where `N` comes first. The two orders differ only there: a directory `N` must
 * move before the names that extend `N` with a byte below '/'. So a name can be handed on once no directory that
 * would go before it can still come: once the listing has passed `C/` for each such candidate `C` (the prefixes of
 * the name cut before a byte below '/', and the name itself for an object, which a directory of the same name would
 * displace) — or once the store was asked whether `C/` holds anything (one request, made only when many names wait
 * on the same candidate, as all of `frame.000001.png`, `frame.000002.png`… wait on `frame`).
 *
 * Pages are consumed as they come and memory stays bounded: at most `hold` names wait, plus a page.
 */

/** An object (`dir` false) or a common prefix of the listing, by its name in the directory. */
export interface ListedName { name: Buffer, dir: boolean }

const SLASH = 0x2f

/** Where an item sorts in the listing: its name, and '/' after a directory's. */
function listingKey (x: ListedName): Buffer {
  return x.dir ? Buffer.concat([x.name, Buffer.from('/')]) : x.name
}

export class ListingOrder<T extends ListedName> {
  /** Items not handed on yet, in name order. */
  #held: T[] = []
  /** The last key the listing gave. */
  #last: Buffer | null = null
  /** The last name handed on. */
  #given: Buffer | null = null
  /** Candidates the store was asked about (latin1 of the bytes): whether a directory of that name exists. */
  readonly #asked = new Map<string, boolean>()
  readonly #hold: number
  readonly #drop: (item: T, why: string) => void

  /**
   * `hold`: names held before asking the store. `drop` is told of an item left out (an object that is also a prefix;
   * something that appeared while the directory was listed, out of the order already given).
   */
  constructor (hold: number, drop: (item: T, why: string) => void) {
    this.#hold = hold
    this.#drop = drop
  }

  /** The next item of the listing, in its order. */
  add (x: T): void {
    const key = listingKey(x)
    if (this.#last !== null && Buffer.compare(key, this.#last) <= 0) {
      throw new Error(`the listing is not in key order (${key.toString()} after ${this.#last.toString()})`)
    }
    this.#last = key
    if (x.dir) {
      const asked = this.#asked.get(x.name.toString('latin1'))
      if (asked === true) return // found by asking, already held or handed on
      if (asked === false) { this.#drop(x, 'it appeared while its directory was listed'); return }
    }
    this.#insert(x)
  }

  /** Items that no later item can precede, in name order: hand them on. */
  take (): T[] {
    let n = 0
    while (n < this.#held.length && this.#open(this.#held[n]!) === null) n++
    const out = this.#held.splice(0, n)
    if (n > 0) this.#given = out[n - 1]!.name
    for (const c of this.#asked.keys()) if (this.#passed(Buffer.from(c, 'latin1'))) this.#asked.delete(c)
    return out
  }

  /** When enough items wait: the candidate to ask the store about (does `C/` hold any key?), else null. */
  wanted (): Buffer | null {
    const first = this.#held[0]
    return first !== undefined && this.#held.length >= this.#hold ? this.#open(first) : null
  }

  /** The store's answer for a candidate: `dir`, the directory item for it when `C/` holds keys, else null. */
  answer (candidate: Buffer, dir: T | null): void {
    this.#asked.set(candidate.toString('latin1'), dir !== null)
    if (dir !== null) this.#insert(dir)
  }

  /** The listing has ended: everything held, in name order. */
  finish (): T[] {
    return this.#held.splice(0)
  }

  /** Whether the listing has passed where `C/` would be. */
  #passed (c: Buffer): boolean {
    if (this.#last === null) return false
    const n = Math.min(this.#last.length, c.length)
    const cmp = Buffer.compare(this.#last.subarray(0, n), c.subarray(0, n))
    if (cmp !== 0) return cmp > 0
    // equal up to n: the last key is C/… or longer (passed or at it), or a prefix of C (not passed)
    return this.#last.length > c.length && this.#last[c.length]! >= SLASH
  }

  /** The first candidate that could still put a directory before `x`, or null when `x` can be handed on. */
  #open (x: T): Buffer | null {
    // Shorter candidates have later keys (C/ sorts after C + a byte below '/'): the first not yet asked decides.
    for (let i = 1; i <= x.name.length; i++) {
      if (i < x.name.length ? x.name[i]! >= SLASH : x.dir) continue
      const c = x.name.subarray(0, i)
      if (this.#asked.has(c.toString('latin1'))) continue
      return this.#passed(c) ? null : c
    }
    return null
  }

  #insert (x: T): void {
    if (this.#given !== null && Buffer.compare(x.name, this.#given) <= 0) {
      this.#drop(x, 'it appeared while its directory was listed')
      return
    }
    let lo = 0
    let hi = this.#held.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (Buffer.compare(this.#held[mid]!.name, x.name) < 0) lo = mid + 1
      else hi = mid
    }
    const same = this.#held[lo]
    if (same !== undefined && same.name.equals(x.name)) {
      // An object and a prefix of one name: the prefix (a directory, with everything under it) is kept.
      const [obj, dir] = same.dir ? [x, same] : [same, x]
      this.#drop(obj, 'it is both an object and a prefix: a path cannot be both a file and a directory')
      this.#held[lo] = dir
      return
    }
    this.#held.splice(lo, 0, x)
  }
}
