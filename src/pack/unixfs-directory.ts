import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { ExternalSorter, type SharedSortBudget } from '../spill/external-sort.js'
import { dagPbCid, encodeDirectoryNode, linkBytes } from './dag-pb-node.js'
import { HamtBuilder, hamtHash, shown, type HamtEntry } from './hamt.js'
import type { BlockSink } from './unixfs.js'

/**
 * ipfs-unixfs-importer's shard-split threshold (DEFAULT_SHARD_SPLIT_THRESHOLD_BYTES, which the unixfs-v1-2025
 * profile keeps, with strategy 'block-bytes'): a directory whose estimated node is larger becomes a HAMT.
 */
export const SHARD_SPLIT_THRESHOLD = 262_144

/** What a parent links to: the directory's root block and its size (the block plus the Tsizes of its links). */
export interface DirectoryNode { cid: CID, size: number }

const DIRECTORY_DATA = new UnixFS({ type: 'directory' }).marshal()
const EMPTY_DIRECTORY_BLOCK = encodeDirectoryNode(DIRECTORY_DATA, [])
/** The empty directory, the block the importer writes for a directory given without content. */
export const EMPTY_DIRECTORY: DirectoryNode = { cid: dagPbCid(EMPTY_DIRECTORY_BLOCK), size: EMPTY_DIRECTORY_BLOCK.length }

const FILE = 0
const SUBDIRECTORY = 1
const EMPTY_SUBDIRECTORY = 2

/**
 * An entry as the sorter holds it: the HAMT hash first (the sort key), then
 *   kind (1 byte), position (u32: a file's count of subdirectories listed before it, a subdirectory's ordinal),
 *   size (float64), CID length (1 byte), CID, name (UTF-8, to the end).
 */
const HASH_END = 8
const KIND_AT = 8
const POSITION_AT = 9
const SIZE_AT = 13
const CID_LENGTH_AT = 21
const CID_AT = 22

interface Entry extends HamtEntry { kind: number, position: number }

const utf8 = new TextEncoder()

function encodeEntry (nameBytes: Uint8Array, cid: CID, size: number, kind: number, position: number): Uint8Array {
  const cidBytes = cid.bytes
  if (cidBytes.length > 255) throw new Error(`UnixfsDirectory: a CID of ${cidBytes.length} bytes (${cid}) is longer than a directory entry holds (255)`)
  const r = new Uint8Array(CID_AT + cidBytes.length + nameBytes.length)
  r.set(hamtHash(nameBytes), 0)
  const view = new DataView(r.buffer)
  r[KIND_AT] = kind
  view.setUint32(POSITION_AT, position)
  view.setFloat64(SIZE_AT, size)
  r[CID_LENGTH_AT] = cidBytes.length
  r.set(cidBytes, CID_AT)
  r.set(nameBytes, CID_AT + cidBytes.length)
  return r
}

/** Decodes a record into an entry of its own (the record's buffer is reused by the sorter). */
function decodeEntry (r: Uint8Array): Entry {
  const view = new DataView(r.buffer, r.byteOffset, r.byteLength)
  const cidEnd = CID_AT + r[CID_LENGTH_AT]
  return {
    hash: r.slice(0, HASH_END),
    kind: r[KIND_AT],
    position: view.getUint32(POSITION_AT),
    size: view.getFloat64(SIZE_AT),
    cid: r.slice(CID_AT, cidEnd),
    name: r.slice(cidEnd),
  }
}

export interface UnixfsDirectoryOptions {
  /** A private directory for the entries that do not fit the budget. */
  tmpDir: string
  /** The memory the entries held may take, shared with other directories being built. */
  budget: SharedSortBudget
}

/**
 * One UnixFS directory, built as ipfs-unixfs-importer builds it with packer's options (IMPORT_OPTIONS in unixfs.ts,
 * fed as packer fed it: every file and directory, in walk order), from links added in any order, in bounded memory:
 * entries beyond the budget go to disk, sorted by their HAMT hash.
 *
 * Flat or HAMT: the importer keeps an estimate of the flat node's size, updated as entries come, and turns the
 * directory into a HAMT (for good) the first time it passes SHARD_SPLIT_THRESHOLD. The estimate is the exact encoded
 * size (4 bytes of Data, plus each link's bytes), but counts only the links whose CID the importer knows as it goes:
 * files and empty subdirectories; a subdirectory with content counts only at the moment it is listed, as an empty
 * directory, until its content starts (its final link is never counted: a directory of many non-empty subdirectories
 * stays flat whatever its size). So, besides the final estimate, the order of files and subdirectories in the listing
 * matters near the threshold: addFile() and listSubdirectory() calls give that order; addDirectory() gives the
 * subdirectories' links later, in the order they were listed.
 *
 * A flat node is built in memory (its block must be, whatever its size); a HAMT streams from the hash-sorted entries
 * (HamtBuilder). finish() puts the blocks: a HAMT's sub-shards first, in slot order, its root last, as the importer.
 */
export class UnixfsDirectory {
  readonly #entries: ExternalSorter
  readonly #budget: SharedSortBudget
  /** The importer's estimate of the flat node's size, with the links it counts. */
  #estimate = EMPTY_DIRECTORY_BLOCK.length
  /** The largest link a non-empty subdirectory counted for, as an empty one, when listed. */
  #largestListedLink = 0
  #listed = 0
  #added = 0
  #finished = false

  constructor (opts: UnixfsDirectoryOptions) {
    this.#entries = new ExternalSorter({ dir: opts.tmpDir, memoryLimit: Infinity, keyBytes: HASH_END })
    this.#budget = opts.budget
  }

  /** A file (or any link counted as it is added), at this point of the listing. */
  async addFile (name: string, cid: CID, size: number): Promise<void> {
    const nameBytes = utf8.encode(name)
    this.#estimate += linkBytes(nameBytes.length, cid.byteLength, size)
    await this.#add(encodeEntry(nameBytes, cid, size, FILE, this.#listed))
  }

  /** A subdirectory comes at this point of the listing; its link comes later with addDirectory(). */
  listSubdirectory (): void {
    this.#check()
    this.#listed++
  }

  /** The link of the next subdirectory listed (in listing order). */
  async addDirectory (name: string, cid: CID, size: number): Promise<void> {
    if (this.#added === this.#listed) throw new Error(`UnixfsDirectory: addDirectory(${JSON.stringify(name)}) for more subdirectories than listed (${this.#listed})`)
    const nameBytes = utf8.encode(name)
    const empty = cid.equals(EMPTY_DIRECTORY.cid)
    if (empty) this.#estimate += linkBytes(nameBytes.length, cid.byteLength, size)
    else this.#largestListedLink = Math.max(this.#largestListedLink, emptyLinkBytes(nameBytes.length))
    await this.#add(encodeEntry(nameBytes, cid, size, empty ? EMPTY_SUBDIRECTORY : SUBDIRECTORY, this.#added++))
  }

  /** Puts the directory's blocks to the sink; returns its root. Throws on a name given twice. */
  async finish (sink: BlockSink): Promise<DirectoryNode> {
    this.#check()
    this.#finished = true
    try {
      if (this.#added !== this.#listed) throw new Error(`UnixfsDirectory: ${this.#listed} subdirectories listed but ${this.#added} added`)
      if (this.#estimate > SHARD_SPLIT_THRESHOLD) return await this.#hamt(this.#decoded(), sink)
      const entries: Entry[] = []
      for await (const e of this.#decoded()) entries.push(e)
      // Whether a subdirectory, counted as empty when listed, took the estimate over: only possible this close.
      if (this.#estimate + this.#largestListedLink > SHARD_SPLIT_THRESHOLD && peakEstimate(entries) > SHARD_SPLIT_THRESHOLD) {
        return await this.#hamt(entries, sink)
      }
      return await flat(entries, sink)
    } finally {
      await this.dispose()
    }
  }

  /** Removes the directory's files (finish() does; call it when giving up before). */
  async dispose (): Promise<void> {
    this.#budget.leave(this.#entries)
    await this.#entries.dispose()
  }

  #check (): void {
    if (this.#finished) throw new Error('UnixfsDirectory: used after finish()')
  }

  async #add (record: Uint8Array): Promise<void> {
    this.#check()
    await this.#budget.add(this.#entries, record)
  }

  async * #decoded (): AsyncGenerator<Entry> {
    this.#budget.leave(this.#entries)
    for await (const r of this.#entries.sorted()) yield decodeEntry(r)
  }

  async #hamt (entries: AsyncIterable<Entry> | Iterable<Entry>, sink: BlockSink): Promise<DirectoryNode> {
    const builder = new HamtBuilder(sink)
    for await (const e of entries) await builder.add(e)
    return await builder.finish()
  }
}

/** The link of a subdirectory as the importer first counts it: an empty directory. */
function emptyLinkBytes (nameLength: number): number {
  return linkBytes(nameLength, EMPTY_DIRECTORY.cid.byteLength, EMPTY_DIRECTORY.size)
}

/**
 * The largest estimate the importer reached, replaying the listing: each file and empty subdirectory counts from its
 * place on; each other subdirectory counts at its place only, as an empty directory.
 */
function peakEstimate (entries: Entry[]): number {
  // Listing places: a file with p subdirectories before it at 2p - 1, subdirectory number q at 2q.
  const place = (e: Entry): number => e.kind === FILE ? 2 * e.position - 1 : 2 * e.position
  const listing = [...entries].sort((a, b) => place(a) - place(b))
  let estimate = EMPTY_DIRECTORY_BLOCK.length
  let peak = estimate
  for (const e of listing) {
    if (e.kind === SUBDIRECTORY) peak = Math.max(peak, estimate + emptyLinkBytes(e.name.length))
    else estimate += linkBytes(e.name.length, e.cid.length, e.size)
  }
  return Math.max(peak, estimate)
}

/** A flat directory node: its links sorted by name bytes, as dag-pb requires. */
async function flat (entries: Entry[], sink: BlockSink): Promise<DirectoryNode> {
  entries.sort((a, b) => Buffer.compare(a.name, b.name))
  for (let i = 1; i < entries.length; i++) {
    if (Buffer.compare(entries[i - 1].name, entries[i].name) === 0) throw new Error(`the name ${shown(entries[i].name)} is given twice in one directory`)
  }
  const block = encodeDirectoryNode(DIRECTORY_DATA, entries.map((e) => ({ name: e.name, cid: e.cid, tsize: e.size })))
  const cid = dagPbCid(block)
  await sink.put(cid, block)
  return { cid, size: entries.reduce((sum, e) => sum + e.size, block.length) }
}
