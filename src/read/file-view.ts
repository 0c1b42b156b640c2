import { exporter, type UnixFSFile, type RawNode } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import type { TableEntry } from '../format/table-entry.js'
import { SeekableAgeReader, decryptStream } from '../crypto/index.js'
import { nativeOpenFile } from '../crypto/native-open.js'
import type { CarSet } from './car-set.js'
import { decompressWhole, decompressed, seekTableOf, streamEntry, type StreamReader } from './compressed.js'

/** Bytes asked of the exporter at a time: bounds memory (its content() reads ahead without backpressure). */
const WINDOW = 16 * 1024 * 1024

type StoredFile = UnixFSFile | RawNode

const RAW = 0x55

/**
 * Refuses a compressed file where only stored bytes as they are can be read (a DAG's layout, the exporter's bytes):
 * a compressed stream is never handed out as a file's bytes. Its readers ask for its stream's entry instead
 * (`streamEntry`), and decompress.
 */
function assertPlain (e: TableEntry): void {
  if (e.compression !== undefined) {
    throw new Error(`${displayPath(e.path)} is stored compressed (${e.compression}): read its stream's entry and decompress it`)
  }
}

/** One leaf of a stored file: a raw block holding stored bytes [start, start + length). */
export interface Leaf { cid: CID, start: number, length: number }

/** An internal node of the UnixFS DAG: its children's CIDs and the stored range each covers; children parsed lazily. */
interface LayoutNode { cids: CID[], starts: number[], sizes: number[], kids: Array<LayoutNode | 'leaf' | 'inline' | undefined> }

/** Index of the first child of `node` (placed at `base`) whose byte range ends after `start`: a binary search. */
function firstChildEndingAfter (node: LayoutNode, base: number, start: number): number {
  let lo = 0
  let hi = node.starts.length - 1
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (base + node.starts[mid] + node.sizes[mid] <= start) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Where a stored file's bytes are: which raw leaf blocks hold a stored byte range. Internal DAG nodes are read (and
 * hash-checked) on first use and kept, so a file's layout costs one block read per 1024 leaves, once.
 * A DAG with data inside dag-pb nodes (not packer's profile, which has raw leaves) has no such leaves: `leaves`
 * returns null and the file is read with FileView.read.
 */
export class StoredLayout {
  readonly size: number
  readonly #root: LayoutNode
  readonly #view: FileView

  constructor (view: FileView, root: LayoutNode, size: number) {
    this.#view = view
    this.#root = root
    this.size = size
  }

  /** The leaves overlapping stored bytes [start, end), in order; null when the DAG has no raw leaves there. */
  async leaves (start: number, end: number): Promise<Leaf[] | null> {
    const out: Leaf[] = []
    let direct = true
    if (start >= end) return out
    const walk = async (node: LayoutNode, base: number): Promise<void> => {
      const lo = firstChildEndingAfter(node, base, start)
      for (let i = lo; i < node.cids.length; i++) {
        const s = base + node.starts[i]
        if (s >= end) return
        if (node.sizes[i] === 0) continue
        let kid = node.kids[i]
        if (kid === undefined) kid = node.kids[i] = await this.#view.layoutNode(node.cids[i], node.sizes[i])
        if (kid === 'leaf') out.push({ cid: node.cids[i], start: s, length: node.sizes[i] })
        else if (kid === 'inline') direct = false
        else await walk(kid, s)
      }
    }
    await walk(this.#root, 0)
    return direct ? out : null
  }

  /**
   * The same as `leaves`, without waiting: undefined when a DAG node on the way has not been read yet (then call
   * `leaves`). For callers that answer from memory when they can (the mount's FUSE thread).
   */
  leavesNow (start: number, end: number): Leaf[] | null | undefined {
    const out: Leaf[] = []
    if (start >= end) return out
    const walk = (node: LayoutNode, base: number): boolean | undefined => {
      const lo = firstChildEndingAfter(node, base, start)
      let direct = true
      for (let i = lo; i < node.cids.length; i++) {
        const s = base + node.starts[i]
        if (s >= end) break
        if (node.sizes[i] === 0) continue
        const kid = node.kids[i]
        if (kid === undefined) return undefined
        if (kid === 'leaf') out.push({ cid: node.cids[i], start: s, length: node.sizes[i] })
        else if (kid === 'inline') direct = false
        else {
          const r = walk(kid, s)
          if (r === undefined) return undefined
          if (!r) direct = false
        }
      }
      return direct
    }
    const r = walk(this.#root, 0)
    return r === undefined ? undefined : r ? out : null
  }
}

/**
 * The one place that knows how a file is laid out in a set: plaintext range → age chunks → UnixFS leaves → CAR
 * offsets. unpack, the mount and random reads all go through it. Every block is hash-checked by the BlockSource and
 * every age chunk authenticated; a file whose stored size differs from the table's is refused.
 */
export class FileView {
  readonly #set: CarSet
  readonly #layouts = new LRUCache<string, Promise<StoredLayout>>({ max: 4096 })

  constructor (set: CarSet) { this.#set = set }

  /**
   * The layout of a file's stored bytes (the age file when encrypted), cached per CID. Its size is checked against
   * the table's `storedSize`.
   */
  async layout (e: TableEntry): Promise<StoredLayout> {
    assertPlain(e)
    let p = this.#layouts.get(e.cid!)
    if (p === undefined) {
      p = (async () => {
        const cid = CID.parse(e.cid!)
        const root = await this.layoutNode(cid, e.storedSize!)
        const node: LayoutNode = typeof root === 'string' ? { cids: [cid], starts: [0], sizes: [e.storedSize!], kids: [root] } : root
        const size = node.starts.length === 0 ? 0 : node.starts[node.starts.length - 1] + node.sizes[node.sizes.length - 1]
        if (size !== e.storedSize) {
          throw new PackerError('CORRUPT', `${displayPath(e.path)}: stored data is ${size} bytes, the file table says ${e.storedSize}; the set is damaged`, { subject: displayPath(e.path) })
        }
        return new StoredLayout(this, node, size)
      })()
      this.#layouts.set(e.cid!, p)
      p.catch(() => this.#layouts.delete(e.cid!))
    }
    return await p
  }

  /** @internal Parses one DAG node of a stored file (`size`: the bytes it covers, from its parent). */
  async layoutNode (cid: CID, size: number): Promise<LayoutNode | 'leaf' | 'inline'> {
    if (cid.code === RAW) return 'leaf'
    const entry = await exporter(cid, this.#set.blocks.blockstore as any)
    if (entry.type !== 'file') throw new PackerError('CORRUPT', `block ${cid} is not part of a UnixFS file; the set is damaged`, { subject: cid.toString() })
    const links = entry.node.Links
    const sizes = entry.unixfs.blockSizes.map(Number)
    const inline = entry.unixfs.data?.length ?? 0
    // Data inside a dag-pb node: not a raw leaf; such files are read through the exporter.
    if (links.length === 0 || inline > 0) return 'inline'
    if (sizes.length !== links.length) throw new PackerError('CORRUPT', `block ${cid}: ${links.length} links but ${sizes.length} block sizes; the set is damaged`, { subject: cid.toString() })
    const starts: number[] = []
    let at = inline
    for (const n of sizes) { starts.push(at); at += n }
    if (at !== size) throw new PackerError('CORRUPT', `block ${cid} covers ${at} bytes, its parent says ${size}; the set is damaged`, { subject: cid.toString() })
    return { cids: links.map((l) => l.Hash), starts, sizes, kids: new Array(links.length) }
  }

  async #stored (e: TableEntry): Promise<StoredFile> {
    assertPlain(e)
    const entry = await exporter(CID.parse(e.cid!), this.#set.blocks.blockstore as any)
    if (entry.type !== 'file' && entry.type !== 'raw') {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: ${e.cid} is not a file; the set is damaged`, { subject: displayPath(e.path) })
    }
    const size = entry.type === 'file' ? Number(entry.unixfs.fileSize()) : entry.node.length
    if (size !== e.storedSize) {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: stored data is ${size} bytes, the file table says ${e.storedSize}; the set is damaged`, { subject: displayPath(e.path) })
    }
    return entry
  }

  async * #storedRange (entry: StoredFile, start: number, end: number): AsyncGenerator<Uint8Array> {
    for (let at = start; at < end; at += WINDOW) {
      yield * entry.content({ offset: at, length: Math.min(WINDOW, end - at) })
    }
  }

  /**
   * The plaintexts of files stored as one raw block each (every file of up to 1 MiB, less its age overhead), their
   * blocks read together where they lie side by side (BlockSource.getMany), hash-checked and authenticated in this
   * thread: for small files, far cheaper than a round trip each to worker threads. Per file: its plaintext, the
   * PackerError (naming it) that keeps it from being read, or null when it is not stored as one raw block. Compressed
   * ones are decompressed by `whole` (the reader's worker threads; here by default).
   */
  async readSmall (entries: TableEntry[], whole: (e: TableEntry, stream: Buffer) => Promise<Buffer> = decompressWhole): Promise<Array<Buffer | PackerError | null>> {
    const cids = entries.map((e) => CID.parse(e.cid!))
    const raw = entries.flatMap((e, i) => cids[i]!.code === RAW ? [i] : [])
    const blocks = await this.#set.blocks.getMany(raw.map((i) => cids[i]!))
    const out: Array<Buffer | PackerError | null> = entries.map(() => null)
    for (const [k, i] of raw.entries()) {
      const e = entries[i]!
      const shown = displayPath(e.path)
      try {
        const stored = blocks[k]!
        if (stored instanceof PackerError) throw stored
        if (stored.length !== e.storedSize) throw new PackerError('CORRUPT', `stored data is ${stored.length} bytes, the file table says ${e.storedSize}; the set is damaged`)
        let plain = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength)
        if (e.enc) {
          // decryptStream only when the addon cannot open it: it opens what the addon lacks, or names the fault
          const opened = nativeOpenFile(e.enc.key, stored)
          if (opened !== null) plain = opened
          else {
            const parts: Uint8Array[] = []
            for await (const p of decryptStream([stored], { fileKey: e.enc.key })) parts.push(p)
            plain = Buffer.concat(parts)
          }
        }
        const size = streamEntry(e).size
        if (plain.length !== size) throw new PackerError('CORRUPT', `${plain.length} bytes, the file table says ${size}; the set is damaged`)
        out[i] = e.compression === undefined ? plain : await whole(e, plain)
      } catch (err) {
        if (!(err instanceof PackerError)) throw err
        // Errors of the decompression name the file already.
        out[i] = err.message.startsWith(`${shown}: `) ? err : new PackerError(err.code, `${shown}: ${err.message}`, { subject: err.subject ?? shown, cause: err })
      }
    }
    return out
  }

  /** The file's plaintext, streamed in order with bounded memory (a compressed file's frame by frame). */
  async * stream (e: TableEntry): AsyncGenerator<Uint8Array> {
    if (e.compression !== undefined) {
      const read = this.#streamReader(e)
      yield * decompressed(e, read, await seekTableOf(e, read))
      return
    }
    const entry = await this.#stored(e)
    const stored = this.#storedRange(entry, 0, e.storedSize!)
    if (e.enc) yield * decryptStream(stored, { fileKey: e.enc.key })
    else yield * stored
  }

  /** Plaintext bytes [start, end) of a file, reading only the blocks and age chunks that hold them. */
  async read (e: TableEntry, start: number, end: number): Promise<Buffer> {
    end = Math.min(end, e.size!)
    if (start >= end) return Buffer.alloc(0)
    if (e.compression !== undefined) {
      const read = this.#streamReader(e)
      const parts: Buffer[] = []
      for await (const p of decompressed(e, read, await seekTableOf(e, read), start, end)) parts.push(p)
      return Buffer.concat(parts, end - start)
    }
    const entry = await this.#stored(e)
    const readStored = async (offset: number, length: number): Promise<Buffer> => {
      const parts: Uint8Array[] = []
      for await (const p of this.#storedRange(entry, offset, offset + length)) parts.push(p)
      return Buffer.concat(parts)
    }
    if (!e.enc) return await readStored(start, end - start)
    const reader = new SeekableAgeReader({ readCiphertext: readStored, fileKey: e.enc.key, headerLength: e.enc.headerLength, plaintextSize: e.size! })
    return await reader.read(start, end)
  }

  /** Ranges of a compressed file's stored stream (the age plaintext), read as an uncompressed file's bytes are. */
  #streamReader (e: TableEntry): StreamReader {
    const stream = streamEntry(e)
    return async (offset, length) => await this.read(stream, offset, offset + length)
  }
}
