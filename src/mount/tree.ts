import { isUtf8 } from 'node:buffer'
import { LRUCache } from 'lru-cache'
import type { NumberedEntry, SetTable } from '../read/set-table.js'

export const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
/** The size a directory shows (as most file systems do). */
const DIR_SIZE = 4096
const REPLACEMENT = '\uFFFD'
const EMPTY: Buffer = Buffer.alloc(0)
const SLASH = Buffer.from('/')

/** Paths whose entry and stat are kept, by default (the kernel keeps attributes an hour anyway). */
export const DEFAULT_NODE_CACHE = 1024
/** Entries of directory listings kept, by default, all listings together (~100 bytes each). */
export const DEFAULT_LISTING_CACHE = 131_072

/** getattr's answer, as fuse-native takes it (times in milliseconds). */
export interface Stat {
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  ino: number
  blksize: number
  blocks: number
  atime: number
  mtime: number
  ctime: number
}

export interface TreeOptions {
  /** Owner shown for everything. */
  uid: number
  gid: number
  /** The root directory's modification time (ms): the table has no entry for the root. */
  rootMtimeMs: number
  /** Paths whose entry and stat are kept (LRU). */
  nodeCache?: number
  /** Directory listings kept (LRU), bounded by their entries in all; a larger directory is listed each time. */
  listingCache?: number
  log: (line: string) => void
}

/** What the tree holds now, and the most it has held: for tests that check its memory is bounded. */
export interface TreeStats {
  nodes: number
  nodeLimit: number
  nodePeak: number
  listingEntries: number
  listingLimit: number
  listingPeak: number
  /** Directories listed from the table (cache misses). */
  listingsRead: number
}

/** A path's entry and stat: what open, read and readlink need. */
export interface Node { entry: NumberedEntry, stat: Stat }

/** Milliseconds (what fuse-native passes to the kernel) of a time in nanoseconds; 0 before the epoch. */
function msOf (ns: bigint): number {
  return ns <= 0n ? 0 : Number(ns / 1_000_000n)
}

function typeBits (e: NumberedEntry): number {
  return e.type === 'dir' ? S_IFDIR : e.type === 'symlink' ? S_IFLNK : S_IFREG
}

function sizeOf (e: NumberedEntry): number {
  return e.type === 'dir' ? DIR_SIZE : e.type === 'symlink' ? e.target!.length : e.size!
}

/**
 * Directories show one link: the count of their subdirectories is known only once listed, and a wrong count would
 * make GNU find skip subdirectories (its leaf optimisation); 1 turns that optimisation off, as on borg's and rclone's
 * mounts.
 */
function makeStat (mode: number, size: number, mtimeMs: number, ino: number, o: TreeOptions): Stat {
  return { mode, uid: o.uid, gid: o.gid, size, nlink: 1, ino, blksize: 65536, blocks: Math.ceil(size / 512), atime: mtimeMs, mtime: mtimeMs, ctime: mtimeMs }
}

/** An entry's inode number: its number in the table + 2 (the root is 1). */
export const inodeOf = (e: NumberedEntry): number => e.number + 2

function join (dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? name : Buffer.concat([dir, SLASH, name])
}

/** A FUSE path's parent path and last name ("/a/b" → "/a", "b"). */
function splitPath (p: string): { parent: string, name: string } {
  const slash = p.lastIndexOf('/')
  return { parent: slash === 0 ? '/' : p.slice(0, slash), name: p.slice(slash + 1) }
}

/**
 * One directory as the mount shows it: its entries' names in table order (by name bytes) with what getattr needs of
 * each, ~100 bytes an entry. A name that is not valid UTF-8 is shown with U+FFFD for its bad bytes; valid names are
 * always shown as they are, and a changed name that would equal another name gets ~1, ~2… (the first free, the
 * changed names taken in table order): the same listing always gives the same names.
 */
export class Listing {
  /** Inode numbers of the directory and of its parent (readdir's '.' and '..'). */
  ino = 1
  parentIno = 1
  readonly names: string[] = []
  readonly numbers: number[] = []
  /** Type and permission bits. */
  readonly modes: number[] = []
  readonly sizes: number[] = []
  readonly mtimes: number[] = []
  /** Shown name → the name's bytes, for names shown changed. */
  readonly renamed = new Map<string, Buffer>()
  readonly #index = new Map<string, number>()

  /** Reads a directory's entries (table order), `dir` being its table path. */
  static async read (entries: AsyncIterable<NumberedEntry>, dir: Buffer): Promise<Listing> {
    const l = new Listing()
    const skip = dir.length === 0 ? 0 : dir.length + 1
    const bad: Array<{ i: number, name: Buffer }> = []
    for await (const e of entries) {
      const name = e.path.subarray(skip)
      if (isUtf8(name)) l.names.push(name.toString('utf8'))
      else {
        bad.push({ i: l.names.length, name: Buffer.from(name) })
        l.names.push('')
      }
      l.numbers.push(e.number)
      l.modes.push(typeBits(e) | e.mode)
      l.sizes.push(sizeOf(e))
      l.mtimes.push(msOf(e.mtimeNs))
    }
    if (bad.length > 0) {
      const taken = new Set(l.names)
      for (const { i, name } of bad) {
        const base = name.toString('utf8')
        let shown = base
        for (let n = 1; taken.has(shown); n++) shown = `${base}~${n}`
        taken.add(shown)
        l.names[i] = shown
        l.renamed.set(shown, name)
      }
    }
    for (let i = 0; i < l.names.length; i++) l.#index.set(l.names[i], i)
    return l
  }

  get size (): number { return this.names.length }

  /** Index of a shown name, -1 when the directory has no such name. */
  indexOf (name: string): number { return this.#index.get(name) ?? -1 }

  stat (i: number, o: TreeOptions): Stat {
    return makeStat(this.modes[i], this.sizes[i], this.mtimes[i], this.numbers[i] + 2, o)
  }
}

/**
 * The mounted tree, looked up on demand in the set's file table: nothing is read at mount time, and what is kept
 * is bounded whatever the number of files: an LRU of paths (entry and stat) and an LRU of directory listings bounded
 * by their entries in all. A path is the table path decoded as UTF-8, except for names shown changed (not valid
 * UTF-8), which are found through their directory's listing.
 */
export class MountTree {
  readonly #table: SetTable
  readonly #opts: TreeOptions
  readonly #root: Stat
  readonly #nodes: LRUCache<string, Node>
  readonly #listings: LRUCache<string, Listing>
  /** Listings being read: concurrent readdirs of one directory share the reading. */
  readonly #reading = new Map<string, Promise<Listing | null | undefined>>()
  readonly #stats: TreeStats

  constructor (table: SetTable, opts: TreeOptions) {
    this.#table = table
    this.#opts = opts
    this.#root = makeStat(S_IFDIR | 0o755, DIR_SIZE, opts.rootMtimeMs, 1, opts)
    const nodeLimit = Math.max(1, opts.nodeCache ?? DEFAULT_NODE_CACHE)
    const listingLimit = Math.max(1, opts.listingCache ?? DEFAULT_LISTING_CACHE)
    this.#nodes = new LRUCache({ max: nodeLimit })
    this.#listings = new LRUCache({ maxSize: listingLimit, sizeCalculation: (l) => Math.max(1, l.size) })
    this.#stats = { nodes: 0, nodeLimit, nodePeak: 0, listingEntries: 0, listingLimit, listingPeak: 0, listingsRead: 0 }
  }

  get stats (): TreeStats {
    return { ...this.#stats, nodes: this.#nodes.size, listingEntries: this.#listings.calculatedSize }
  }

  /**
   * getattr: the stat of FUSE path `p` ("/" or "/a/b"), undefined when there is none. Answered at once (no promise)
   * when the path or its directory's listing is in memory.
   */
  stat (p: string): Stat | undefined | Promise<Stat | undefined> {
    if (p === '/') return this.#root
    const node = this.#nodes.get(p)
    if (node !== undefined) return node.stat
    const { parent, name } = splitPath(p)
    const l = this.#listings.get(parent)
    if (l !== undefined) {
      const i = l.indexOf(name)
      return i < 0 ? undefined : l.stat(i, this.#opts)
    }
    return this.node(p).then((n) => n?.stat)
  }

  /** The entry at `p` with its stat (for open, read, readlink); undefined when there is none, and for the root. */
  async node (p: string): Promise<Node | undefined> {
    const hit = this.#nodes.get(p)
    if (hit !== undefined) return hit
    if (p === '/') return undefined
    const entry = await this.#resolve(p)
    if (entry === undefined) return undefined
    const node: Node = { entry, stat: makeStat(typeBits(entry) | entry.mode, sizeOf(entry), msOf(entry.mtimeNs), inodeOf(entry), this.#opts) }
    this.#nodes.set(p, node)
    this.#stats.nodePeak = Math.max(this.#stats.nodePeak, this.#nodes.size)
    return node
  }

  /** readdir: the listing of directory `p`; null when `p` is not a directory, undefined when there is no `p`. */
  list (p: string): Listing | Promise<Listing | null | undefined> {
    const hit = this.#listings.get(p)
    if (hit !== undefined) return hit
    let pending = this.#reading.get(p)
    if (pending === undefined) {
      pending = this.#readListing(p)
      this.#reading.set(p, pending)
      const done = (): void => { this.#reading.delete(p) }
      pending.then(done, done)
    }
    return pending
  }

  async #readListing (p: string): Promise<Listing | null | undefined> {
    let dir: Buffer = EMPTY
    let ino = 1
    let parentIno = 1
    if (p !== '/') {
      const n = await this.node(p)
      if (n === undefined) return undefined
      if (n.entry.type !== 'dir') return null
      dir = n.entry.path
      ino = n.stat.ino
      const { parent } = splitPath(p)
      if (parent !== '/') parentIno = (await this.node(parent))?.stat.ino ?? 1
    }
    const l = await Listing.read(this.#table.list(dir), dir)
    l.ino = ino
    l.parentIno = parentIno
    this.#stats.listingsRead++
    this.#logRenamed(p, dir, l)
    this.#listings.set(p, l)
    this.#stats.listingPeak = Math.max(this.#stats.listingPeak, this.#listings.calculatedSize)
    return l
  }

  /**
   * The entry a FUSE path names. A path without U+FFFD is the table path itself (valid names are shown unchanged).
   * Otherwise the last name is first taken as it is (a valid name may hold U+FFFD), then looked for among its
   * directory's changed names.
   */
  async #resolve (p: string): Promise<NumberedEntry | undefined> {
    if (!p.includes(REPLACEMENT)) return await this.#table.lookup(Buffer.from(p.slice(1)))
    const { parent, name } = splitPath(p)
    let dir: Buffer = EMPTY
    if (parent !== '/') {
      const n = await this.node(parent)
      if (n === undefined || n.entry.type !== 'dir') return undefined
      dir = n.entry.path
    }
    const same = await this.#table.lookup(join(dir, Buffer.from(name)))
    if (same !== undefined) return same
    const l = await this.list(parent)
    const bytes = l?.renamed.get(name)
    return bytes === undefined ? undefined : await this.#table.lookup(join(dir, bytes))
  }

  /** A line for each of the first few names of a listing shown changed (`p`: its FUSE path, `dir`: its table path). */
  #logRenamed (p: string, dir: Buffer, l: Listing): void {
    const prefix = p === '/' ? '/' : p + '/'
    let n = 0
    for (const [shown, bytes] of l.renamed) {
      if (++n > 5) break
      this.#opts.log(`${JSON.stringify(join(dir, bytes).toString('latin1'))} is not valid UTF-8; it appears as ${prefix}${shown}`)
    }
    if (l.renamed.size > 5) this.#opts.log(`${l.renamed.size - 5} more names in ${p} appear changed (not valid UTF-8)`)
  }
}
