import { LRUCache } from 'lru-cache'
import type { TableEntry } from '../format/table-entry.js'
import type { SeekTable } from '../compress/zstd-seekable.js'
import { decompressedFrame, seekTableOf, streamEntry, type StreamReader } from '../restore/compressed.js'

/** Reads `len` bytes at `pos` of a file stored as it is into buf (the SetReader's own read): 0 at the end. */
export type StoredRead = (e: TableEntry, handle: number, buf: Buffer, len: number, pos: number) => number | Promise<number>

/** Most bytes asked of the stored read at a time (what a few of its slots hold). */
const STREAM_PIECE = 1 << 20
/** Seek tables kept: ~36 bytes per frame, so 36 MiB per TiB of files. */
const TABLE_CACHE_SIZE = 64 << 20

interface CompressedFile {
  /** The entry as its stored stream, read as a file stored as it is. */
  stream: TableEntry
  table: SeekTable
}

/**
 * Random reads of files stored compressed (FORMAT.md §6), for the SetReader: a read's plaintext range maps to the
 * seekable stream's frames through its seek table (read from the end of the stream once per file, then kept in an
 * LRU bounded by bytes); each frame is read as stored bytes through the SetReader (so its blocks are hash-checked
 * and its age chunks authenticated), checked against the table, decompressed, and kept in an LRU of decompressed
 * frames bounded by bytes. A frame wanted by several reads at once is read and decompressed once. A read whose
 * table and frames are all in memory is answered at once, without a promise. Nothing is ever buffered per file
 * beyond its seek table: a 4 KiB read costs one frame (1 MiB as packer writes them).
 */
export class CompressedFiles {
  readonly #readStored: StoredRead
  readonly #files = new LRUCache<string, CompressedFile>({ maxSize: TABLE_CACHE_SIZE, sizeCalculation: (f) => 64 + 36 * f.table.frames })
  readonly #filesLoading = new Map<string, Promise<CompressedFile>>()
  readonly #frames: LRUCache<string, Buffer>
  readonly #framesLoading = new Map<string, Promise<Buffer>>()

  /** `frameCacheSize`: bytes of decompressed frames kept. */
  constructor (readStored: StoredRead, frameCacheSize: number) {
    this.#readStored = readStored
    this.#frames = new LRUCache({ maxSize: frameCacheSize, sizeCalculation: (b) => Math.max(1, b.length) })
  }

  /**
   * Copies plaintext [pos, end) (0 ≤ pos < end ≤ e.size) of a compressed file into buf; gives the bytes copied: a
   * number at once when the seek table and the frames are in memory, else a promise. `handle` is the reader's handle
   * of the open file, whose stream reads it makes (so a sequential reader's stream is read ahead).
   */
  read (e: TableEntry, handle: number, buf: Buffer, pos: number, end: number): number | Promise<number> {
    const f = this.#files.get(fileKey(e))
    if (f !== undefined) {
      const [first, last] = f.table.framesFor(pos, end)
      const frames: Buffer[] = []
      for (let i = first; i <= last; i++) {
        const frame = this.#frames.get(`${e.cid!}:${i}`)
        if (frame === undefined) return this.#readLater(e, handle, buf, pos, end)
        frames.push(frame)
      }
      return copyOut(f.table, first, frames, buf, pos, end)
    }
    return this.#readLater(e, handle, buf, pos, end)
  }

  async #readLater (e: TableEntry, handle: number, buf: Buffer, pos: number, end: number): Promise<number> {
    const f = await this.#file(e, handle)
    const [first, last] = f.table.framesFor(pos, end)
    const wanted: number[] = []
    for (let i = first; i <= last; i++) wanted.push(i)
    const frames = await Promise.all(wanted.map(async (i) => await this.#frame(e, f, handle, i)))
    return copyOut(f.table, first, frames, buf, pos, end)
  }

  /** The file's stream entry and checked seek table: from the cache, else read once however many ask at once. */
  async #file (e: TableEntry, handle: number): Promise<CompressedFile> {
    const key = fileKey(e)
    return this.#files.get(key) ?? await loadOnce(this.#filesLoading, key, async () => {
      const stream = streamEntry(e)
      const f = { stream, table: await seekTableOf(e, this.#streamReader(stream, handle)) }
      this.#files.set(key, f)
      return f
    })
  }

  /** Frame i's plaintext, checked: from the cache, else read and decompressed once however many ask at once. */
  async #frame (e: TableEntry, f: CompressedFile, handle: number, i: number): Promise<Buffer> {
    const key = `${e.cid!}:${i}`
    return this.#frames.get(key) ?? await loadOnce(this.#framesLoading, key, async () => {
      const plain = await decompressedFrame(e, this.#streamReader(f.stream, handle), f.table, i)
      this.#frames.set(key, plain)
      return plain
    })
  }

  /** Byte ranges of a stored stream, read through the stored read with the open file's handle. */
  #streamReader (stream: TableEntry, handle: number): StreamReader {
    return async (offset, length) => {
      const bytes = Buffer.allocUnsafe(length)
      let got = 0
      while (got < length) {
        const n = await this.#readStored(stream, handle, bytes.subarray(got), Math.min(STREAM_PIECE, length - got), offset + got)
        if (n === 0) break
        got += n
      }
      return bytes.subarray(0, got)
    }
  }
}

/** `load()`, or the promise of it already under way for `key` in `loading` (removed from it once settled). */
async function loadOnce<T> (loading: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let p = loading.get(key)
  if (p === undefined) {
    p = load()
    loading.set(key, p)
    const done = (): void => { loading.delete(key) }
    p.then(done, done)
  }
  return await p
}

/**
 * A compressed file's key in the cache of seek tables: its CID and its size, which its table is checked against (two
 * entries of a forged table may share a stream and differ in size).
 */
function fileKey (e: TableEntry): string {
  return `${e.cid!}:${e.size!}`
}

/** Copies plaintext [pos, end) out of frames first, first + 1, … (their plaintexts, in order) into buf. */
function copyOut (table: SeekTable, first: number, frames: Buffer[], buf: Buffer, pos: number, end: number): number {
  for (const [k, plain] of frames.entries()) {
    const at = table.frame(first + k).decompressedOffset
    const from = Math.max(pos, at)
    const to = Math.min(end, at + plain.length)
    plain.copy(buf, from - pos, from - at, to - at)
  }
  return end - pos
}
