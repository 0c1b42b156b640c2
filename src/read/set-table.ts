import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { PackerError } from '../errors.js'
import { decryptStream, type Identity } from '../crypto/index.js'
import type { TableEntry } from '../format/table-entry.js'
import { displayPath } from '../format/stored-path.js'
import { parseTableV1 } from '../format/table-v1.js'
import { chunkFor, compareTableOrder, isEntryOf, isWithin, parseTableChunk, parseTableIndex, splitEntryPath, type ChunkRecord, type TableIndexHeader } from '../format/table.js'
import type { BlockSource } from './block-source.js'

/** An entry with its number in the table (entries counted from 0 in table order): what a mount gives as its inode. */
export type NumberedEntry = TableEntry & { number: number }

/**
 * A set's file table as readers use it, whatever its version: entries in table order, one directory's entries, one
 * path's entry. Version 2 reads only the chunks it needs (a few cached); version 1 had no other way than to hold the
 * whole table.
 */
export interface SetTable {
  readonly version: 1 | 2
  /** Passphrase sets: the identity of the set's own key (FORMAT.md §6). */
  readonly setIdentity?: string
  /** Entries and files in the table (known without reading it: the index's header, or the table held whole). */
  readonly entryCount: number
  readonly fileCount: number
  /**
   * Every entry, in table order (parents before children). These generators refuse (UNSAFE_PATH) a run of entries
   * whose directory is not a directory entry of the table: a path never leads through a stored symlink or file.
   */
  entries: () => AsyncGenerator<NumberedEntry>
  /** The entries below directory `dir` ('' for all), in table order; not `dir` itself. */
  below: (dir: Buffer) => AsyncGenerator<NumberedEntry>
  /** The entries of directory `dir` ('' for the root), by name. */
  list: (dir: Buffer) => AsyncGenerator<NumberedEntry>
  /** The entry at `path`, or undefined. */
  lookup: (path: Buffer) => Promise<NumberedEntry | undefined>
}

/** What a version-2 table reader has done (tests check that its memory stays bounded). */
export interface TableStats {
  /** Chunks read, decrypted and parsed. */
  chunkReads: number
  /** Most chunks held parsed at once. */
  maxCached: number
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/**
 * The bytes of a UnixFS file of the set (a table chunk or index), every block hash-checked. A missing or damaged CAR
 * is named as the reason the table cannot be read.
 */
export async function readStoredFile (blocks: BlockSource, cid: CID, what: string): Promise<Buffer> {
  try {
    const entry = await exporter(cid, blocks.blockstore as any)
    if (entry.type !== 'file' && entry.type !== 'raw') throw new PackerError('FORMAT', `the set's ${what} ${cid} is not a file`)
    return await collect(entry.content())
  } catch (err) {
    if (!(err instanceof PackerError) || (err.code !== 'MISSING_CAR' && err.code !== 'CORRUPT')) throw err
    throw new PackerError(err.code, `cannot read the set's ${what} ${cid}: ${err.message}`, { subject: err.subject, cause: err })
  }
}

/** Version 1: the whole table in memory (parsed from its text). */
export class TableV1 implements SetTable {
  readonly version = 1 as const
  readonly setIdentity?: string
  readonly entryCount: number
  readonly fileCount: number
  readonly #entries: NumberedEntry[]
  readonly #byPath = new Map<string, NumberedEntry>()
  /** Each directory's entries by name (latin1 of the directory's path → entries), made on the first list(). */
  #byDir: Map<string, NumberedEntry[]> | undefined

  constructor (text: string, where: string, carCount: number) {
    const { header, entries } = parseTableV1(text, where, carCount)
    this.setIdentity = header.setIdentity
    this.#entries = entries.map((e, number) => Object.assign(e, { number }))
    for (const e of this.#entries) this.#byPath.set(e.path.toString('latin1'), e)
    this.entryCount = this.#entries.length
    this.fileCount = this.#entries.filter((e) => e.type === 'file').length
  }

  async * entries (): AsyncGenerator<NumberedEntry> { yield * this.#entries }

  async * below (dir: Buffer): AsyncGenerator<NumberedEntry> {
    for (const e of this.#entries) if (!e.path.equals(dir) && isWithin(e.path, dir)) yield e
  }

  async * list (dir: Buffer): AsyncGenerator<NumberedEntry> {
    // Grouped once: a directory's entries are not one run in version 1's order, and a mount lists every directory.
    if (this.#byDir === undefined) {
      this.#byDir = new Map()
      for (const e of this.#entries) {
        const key = splitEntryPath(e.path).dir.toString('latin1')
        const group = this.#byDir.get(key)
        if (group === undefined) this.#byDir.set(key, [e])
        else group.push(e)
      }
      for (const group of this.#byDir.values()) group.sort((a, b) => Buffer.compare(a.path, b.path))
    }
    yield * this.#byDir.get(dir.toString('latin1')) ?? []
  }

  async lookup (path: Buffer): Promise<NumberedEntry | undefined> { return this.#byPath.get(path.toString('latin1')) }
}

/** Chunks kept parsed (each up to ~500 entries). */
export const CACHED_CHUNKS = 16
/** Chunks read ahead of a run of entries (a directory's listing, the whole table) that goes on. */
const READ_AHEAD = 4
/** Sorts before every name byte: (dir, MIN_NAME) is the first possible entry of dir. */
const MIN_NAME = Buffer.of(0)

/** Version 2: the table index in memory (a line per chunk), chunks read, decrypted and parsed on demand. */
export class TableV2 implements SetTable {
  readonly version = 2 as const
  readonly setIdentity?: string
  readonly header: TableIndexHeader
  readonly entryCount: number
  readonly fileCount: number
  readonly #chunks: ChunkRecord[]
  readonly #blocks: BlockSource
  readonly #carCount: number
  readonly #cache = new Map<number, Promise<NumberedEntry[]>>()
  readonly stats: TableStats = { chunkReads: 0, maxCached: 0 }

  private constructor (header: TableIndexHeader, chunks: ChunkRecord[], blocks: BlockSource, carCount: number) {
    this.header = header
    this.setIdentity = header.setIdentity
    this.entryCount = header.entries
    this.fileCount = header.files
    this.#chunks = chunks
    this.#blocks = blocks
    this.#carCount = carCount
  }

  /** Reads the table index (`stored`: its stored bytes; decrypted with `identities` when the set is encrypted). */
  static async open (stored: Buffer, o: { encrypted: boolean, identities: Identity[], blocks: BlockSource, carCount: number, where: string }): Promise<TableV2> {
    const text = o.encrypted ? await collect(decryptStream([stored], { identities: o.identities })) : stored
    const { header, chunks } = parseTableIndex(text.toString('utf8'), o.where)
    return new TableV2(header, chunks, o.blocks, o.carCount)
  }

  get chunkCount (): number { return this.#chunks.length }

  /** Chunk `i`'s entries, numbered; read once and cached. */
  async chunk (i: number): Promise<NumberedEntry[]> {
    let p = this.#cache.get(i)
    if (p !== undefined) {
      this.#cache.delete(i)
      this.#cache.set(i, p)
      return await p
    }
    this.stats.chunkReads++
    p = (async () => {
      const c = this.#chunks[i]!
      const where = `table chunk ${i + 1} (${c.cid})`
      const stored = await readStoredFile(this.#blocks, CID.parse(c.cid), `table chunk ${i + 1}`)
      if (stored.length !== c.size) throw new PackerError('CORRUPT', `${where} is ${stored.length} bytes, the table index says ${c.size}; the set is damaged`)
      const text = c.enc ? await collect(decryptStream([stored], { fileKey: c.enc.key })) : stored
      const entries = parseTableChunk(text.toString('utf8'), where, this.#carCount)
      const next = this.#chunks[i + 1]
      if (entries.length !== c.entries || entries.filter((e) => e.type === 'file').length !== c.files ||
          !entries[0]!.path.equals(c.first) || (next !== undefined && compareTableOrder(entries[entries.length - 1]!.path, next.first) >= 0)) {
        throw new PackerError('CORRUPT', `${where} does not match the table index; the set is damaged`)
      }
      return entries.map((e, k) => Object.assign(e, { number: c.firstEntry + k }))
    })()
    this.#cache.set(i, p)
    p.catch(() => this.#cache.delete(i))
    if (this.#cache.size > CACHED_CHUNKS) this.#cache.delete(this.#cache.keys().next().value!)
    this.stats.maxCached = Math.max(this.stats.maxCached, this.#cache.size)
    return await p
  }

  /**
   * Entries from the first one not before `key` (in table order), while `keep` holds. Each run of entries of one
   * directory is checked to belong to a directory entry of the table (found by a lookup: the chunks it needs are
   * usually cached, as the entries of a directory's parent come shortly before its own).
   */
  async * #from (key: Buffer, keep: (e: TableEntry) => boolean): AsyncGenerator<NumberedEntry> {
    let dir: Buffer | null = null
    let started = false
    for (let i = Math.max(0, chunkFor(this.#chunks, key)); i < this.#chunks.length; i++) {
      const entries = await this.chunk(i)
      if (keep(entries[entries.length - 1]!)) this.#readAhead(i)
      for (const e of entries) {
        if (!started) {
          if (compareTableOrder(e.path, key) < 0) continue
          started = true
        }
        if (!keep(e)) return
        const d = splitEntryPath(e.path).dir
        if (dir === null || !d.equals(dir)) {
          await this.#checkDirectory(d, i)
          dir = d
        }
        yield e
      }
    }
  }

  async #checkDirectory (dir: Buffer, chunk: number): Promise<void> {
    if (dir.length === 0) return
    const e = await this.lookup(dir)
    if (e?.type !== 'dir') {
      throw new PackerError('UNSAFE_PATH', `table chunk ${chunk + 1} (${this.#chunks[chunk]!.cid}): ${JSON.stringify(displayPath(dir))} holds entries but is ${e === undefined ? 'not in the table' : `a ${e.type}`}, not a directory; refusing this set`)
    }
  }

  entries (): AsyncGenerator<NumberedEntry> {
    return this.#from(MIN_NAME, () => true)
  }

  /** Starts reading the chunks after chunk `i` (a run goes on past it): their reads overlap the parsing of this one. */
  #readAhead (i: number): void {
    for (let k = i + 1; k <= i + READ_AHEAD && k < this.#chunks.length; k++) this.chunk(k).catch(() => {})
  }

  below (dir: Buffer): AsyncGenerator<NumberedEntry> {
    const first = dir.length === 0 ? MIN_NAME : Buffer.concat([dir, Buffer.from('/'), MIN_NAME])
    return this.#from(first, (e) => isWithin(splitEntryPath(e.path).dir, dir))
  }

  list (dir: Buffer): AsyncGenerator<NumberedEntry> {
    const first = dir.length === 0 ? MIN_NAME : Buffer.concat([dir, Buffer.from('/'), MIN_NAME])
    return this.#from(first, (e) => isEntryOf(e.path, dir))
  }

  async lookup (path: Buffer): Promise<NumberedEntry | undefined> {
    const i = chunkFor(this.#chunks, path)
    if (i < 0) return undefined
    const entries = await this.chunk(i)
    let lo = 0
    let hi = entries.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const c = compareTableOrder(entries[mid]!.path, path)
      if (c === 0) return entries[mid]
      if (c < 0) lo = mid + 1
      else hi = mid - 1
    }
    return undefined
  }
}

/** The entry at `p` and, for a directory, everything below it, in table order ('' : the whole table). */
export async function * subtree (table: SetTable, p: Buffer): AsyncGenerator<NumberedEntry> {
  if (p.length === 0) { yield * table.entries(); return }
  const e = await table.lookup(p)
  if (e === undefined) return
  yield e
  if (e.type === 'dir') yield * table.below(p)
}
