import { LRUCache } from 'lru-cache'
import type { TableEntry } from '../format/table-entry.js'
import type { FrameLocation, SeekTable } from '../compress/zstd-seekable.js'
import { displayPath } from '../format/stored-path.js'
import { frameBytes, seekTableOf, streamEntry, type StreamReader } from './compressed.js'

/** Reads `len` bytes at `pos` of a file stored as it is into buf (the SetReader's own read): 0 at the end. */
export type StoredRead = (e: TableEntry, handle: number, buf: Buffer, len: number, pos: number) => number | Promise<number>

/**
 * Decompresses a checked frame (src/read/compressed.ts's FrameDecompressor) with a priority: `prio.urgent` for a
 * read someone waits on, else read-ahead; the decompressor sets `prio.promote` once the job is queued, which moves it
 * before the other read-ahead when a read comes to wait on it.
 */
export type PrioritizedDecompressor = (name: string, at: FrameLocation, frame: Uint8Array, prio: FramePriority) => Promise<Buffer>
export interface FramePriority { urgent: boolean, promote?: () => void }

/** Most bytes asked of the stored read at a time (what a few of its slots hold). */
const STREAM_PIECE = 1 << 20
/**
 * Seek tables kept: at most this many files (as the reader keeps file keys and layouts), and this many bytes of them.
 * A parsed table holds 20 bytes a frame (20 MiB for a 1 TiB file), and each kept file ~1.5 KiB besides (its table's
 * objects, ~0.9 KiB measured, and its table entry): counted at 36 bytes a file and 64 MiB in all, the tables of a
 * cold `diff -r` of /usr/share were 20 MB of the mount's live heap and grew it by twice that.
 */
const TABLE_CACHE_FILES = 4096
const TABLE_CACHE_SIZE = 32 << 20
const TABLE_FILE_BYTES = 1536
const TABLE_FRAME_BYTES = 20

/** Most frames decompressed ahead of one sequential reader; fewer when the frame cache is small (see constructor). */
const MAX_AHEAD_FRAMES = 8
/** A read within this many bytes of where the reader's last read ended continues a sequential read. */
const SEQUENTIAL_GAP = 1 << 20

/**
 * A reader (an open handle) of a compressed file: where its last read ended, the last frame it read, how many frames
 * it gets ahead (doubling with each new frame it reaches), the last frame asked for ahead of it.
 */
interface Reader { next: number, frame: number, window: number, aheadTo: number }

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
 * frames bounded by bytes. Decompression (and its XXH64 check) runs on the reader's worker threads, so a FUSE
 * handler never waits behind it. A frame wanted by several reads at once is read and decompressed once. A read whose
 * table and frames are all in memory is answered at once, without a promise. A sequential reader gets the next
 * frames read and decompressed ahead of it (a window doubling up to a quarter of the frame cache), so the worker
 * decompresses frame k + 1 while frame k is served. Nothing is ever buffered per file beyond its seek table: a 4 KiB
 * random read costs one frame (1 MiB as packer writes them) and starts no read-ahead.
 */
export class CompressedFiles {
  readonly #readStored: StoredRead
  readonly #files = new LRUCache<string, CompressedFile>({
    max: TABLE_CACHE_FILES,
    maxSize: TABLE_CACHE_SIZE,
    sizeCalculation: (f) => TABLE_FILE_BYTES + TABLE_FRAME_BYTES * f.table.frames,
  })
  readonly #filesLoading = new Map<string, Promise<CompressedFile>>()
  readonly #frames: LRUCache<string, Buffer>
  readonly #framesLoading = new Map<string, { plain: Promise<Buffer>, prio: FramePriority }>()
  readonly #decompress: PrioritizedDecompressor
  readonly #readers = new Map<number, Reader>()
  readonly #maxAhead: number
  /** Frames asked for ahead of sequential readers (before a read wanted them), and how many of those are ready. */
  framesAhead = 0
  framesAheadReady = 0
  /** Seek tables kept now. */
  get tablesKept (): number { return this.#files.size }

  /** `frameCacheSize`: bytes of decompressed frames kept. */
  constructor (readStored: StoredRead, frameCacheSize: number, decompress: PrioritizedDecompressor) {
    this.#readStored = readStored
    this.#decompress = decompress
    this.#frames = new LRUCache({ maxSize: frameCacheSize, sizeCalculation: (b) => Math.max(1, b.length) })
    // A reader's frames ahead take at most a quarter of the cache: several readers' windows fit without evicting
    // frames before they are read (unpack's 4 MiB frame cache: one frame ahead; the mount's default 16 MiB: four).
    this.#maxAhead = Math.max(1, Math.min(MAX_AHEAD_FRAMES, Math.floor(frameCacheSize / 4 / (1 << 20))))
  }

  /** The handle is closed: forget its reader. */
  release (handle: number): void {
    this.#readers.delete(handle)
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
      this.#readAhead(e, f, handle, pos, end, last)
      return copyOut(f.table, first, frames, buf, pos, end)
    }
    return this.#readLater(e, handle, buf, pos, end)
  }

  async #readLater (e: TableEntry, handle: number, buf: Buffer, pos: number, end: number): Promise<number> {
    const f = await this.#file(e, handle)
    const [first, last] = f.table.framesFor(pos, end)
    const wanted: number[] = []
    for (let i = first; i <= last; i++) wanted.push(i)
    const frames = wanted.map(async (i) => await this.#frame(e, f, handle, i, true))
    // Read-ahead starts once the wanted frames are asked for (so they go first), before they arrive.
    this.#readAhead(e, f, handle, pos, end, last)
    return copyOut(f.table, first, await Promise.all(frames), buf, pos, end)
  }

  /**
   * After a read of frames up to `last` by `handle`: when it continues the handle's last read, the frames after it
   * are read and decompressed ahead (not waited for; a frame that fails is left for the read that wants it, which
   * then gets the error).
   */
  #readAhead (e: TableEntry, f: CompressedFile, handle: number, pos: number, end: number, last: number): void {
    let r = this.#readers.get(handle)
    if (r === undefined) this.#readers.set(handle, r = { next: -1, frame: -1, window: 0, aheadTo: -1 })
    const sequential = pos === 0 || (r.next >= 0 && Math.abs(pos - r.next) <= SEQUENTIAL_GAP)
    r.next = end
    if (!sequential) { r.window = 0; r.frame = last; r.aheadTo = last; return }
    if (last !== r.frame || r.window === 0) r.window = Math.min(this.#maxAhead, Math.max(1, r.window * 2))
    r.frame = last
    const to = Math.min(f.table.frames - 1, last + r.window)
    for (let i = Math.max(last, r.aheadTo) + 1; i <= to; i++) {
      const key = `${e.cid!}:${i}`
      if (this.#frames.has(key) || this.#framesLoading.has(key)) continue
      this.framesAhead++
      this.#frame(e, f, handle, i, false).then(() => { this.framesAheadReady++ }, () => {})
    }
    r.aheadTo = Math.max(r.aheadTo, to)
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

  /**
   * Frame i's plaintext, checked: from the cache, else read and decompressed once however many ask at once (`urgent`
   * for a read that waits on it; one that comes to wait on a read-ahead frame promotes it).
   */
  async #frame (e: TableEntry, f: CompressedFile, handle: number, i: number, urgent: boolean): Promise<Buffer> {
    const key = `${e.cid!}:${i}`
    const hit = this.#frames.get(key)
    if (hit !== undefined) return hit
    const loading = this.#framesLoading.get(key)
    if (loading !== undefined) {
      if (urgent && !loading.prio.urgent) {
        loading.prio.urgent = true
        loading.prio.promote?.()
      }
      return await loading.plain
    }
    const prio: FramePriority = { urgent }
    const plain = (async () => {
      const bytes = await frameBytes(e, this.#streamReader(f.stream, handle), f.table, i)
      const p = await this.#decompress(displayPath(e.path), f.table.frame(i), bytes, prio)
      this.#frames.set(key, p)
      return p
    })()
    this.#framesLoading.set(key, { plain, prio })
    const done = (): void => { this.#framesLoading.delete(key) }
    plain.then(done, done)
    return await plain
  }

  /** Byte ranges of a stored stream, read through the stored read with the open file's handle. */
  #streamReader (stream: TableEntry, handle: number): StreamReader {
    return async (offset, length) => {
      // A buffer of its own: a frame's bytes move to a worker thread without a copy.
      const bytes = Buffer.allocUnsafeSlow(length)
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
