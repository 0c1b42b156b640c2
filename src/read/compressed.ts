import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import type { TableEntry } from '../format/table-entry.js'
import { AGE_CHUNK_SIZE } from '../crypto/index.js'
import {
  SEEK_TABLE_FOOTER_SIZE, decompressFrame, parseSeekTable, requireZstdCodec, seekTableLength, type FrameLocation, type SeekTable,
} from '../compress/zstd-seekable.js'

/**
 * The bytes of a file stored compressed (FORMAT.md §6, `"compression": "zstd"`): what is stored (and encrypted) is a
 * zstd seekable stream of the file. Its seek table is read from the stream's end, then the frames a range of the file
 * needs, each checked against the table (content size, XXH64 checksum) before a byte is given out. Readers hand in
 * a function reading ranges of the stream (the age plaintext of the stored file).
 */

/** `length` bytes at `offset` of a file's stored stream. */
export type StreamReader = (offset: number, length: number) => Promise<Uint8Array>

/**
 * Checks and decompresses one frame (its stored bytes `frame`, at `at` in its seek table) of the file shown as `name`:
 * here ({@link decompressHere}), or on a reader's worker threads (src/read/reader.ts). Rejects with a CORRUPT or
 * FORMAT PackerError naming the file, never gives wrong bytes.
 */
export type FrameDecompressor = (name: string, at: FrameLocation, frame: Uint8Array) => Promise<Buffer>

/** Decompresses on this thread: for readers without worker threads (the library's openSet), and for small frames. */
export const decompressHere: FrameDecompressor = async (name, at, frame) => {
  const zstd = requireZstdCodec(`${name} is compressed with zstd`)
  return decompressFrame(zstd, at, frame, Buffer.allocUnsafe(at.decompressedSize), name) as Buffer
}

const AGE_TAG = 16
const AGE_NONCE = 16

/** The size of the stream stored for `e`: its stored size, less the age header, nonce and tags when encrypted. */
export function streamSizeOf (e: TableEntry): number {
  if (!e.enc) return e.storedSize!
  const sealed = e.storedSize! - e.enc.headerLength - AGE_NONCE
  return sealed - AGE_TAG * Math.max(1, Math.ceil(sealed / (AGE_CHUNK_SIZE + AGE_TAG)))
}

/**
 * The entry as its stored stream: what is given to readers of the age plaintext (which take a file's size for the
 * plaintext's) to read a compressed file's stream. The entry itself for a file stored as it is.
 */
export function streamEntry (e: TableEntry): TableEntry {
  return e.compression === undefined ? e : { ...e, size: streamSizeOf(e), compression: undefined }
}

async function readExactly (e: TableEntry, read: StreamReader, offset: number, length: number): Promise<Uint8Array> {
  const bytes = await read(offset, length)
  if (bytes.length !== length) {
    throw new PackerError('CORRUPT', `${displayPath(e.path)}: its stored stream ends before byte ${offset + length}; the set is damaged`, { subject: displayPath(e.path) })
  }
  return bytes
}

/** The checked seek table of a compressed file, read from the end of its stream. */
export async function seekTableOf (e: TableEntry, read: StreamReader): Promise<SeekTable> {
  const name = displayPath(e.path)
  const size = streamSizeOf(e)
  if (size < SEEK_TABLE_FOOTER_SIZE) {
    throw new PackerError('FORMAT', `${name}: its stored stream is ${size} bytes, too few for a zstd seekable stream; the set is damaged or was not written by packer`, { subject: name })
  }
  const footer = await readExactly(e, read, size - SEEK_TABLE_FOOTER_SIZE, SEEK_TABLE_FOOTER_SIZE)
  const length = seekTableLength(footer, size, name)
  return parseSeekTable(await readExactly(e, read, size - length, length), size, name, e.size)
}

/** The stored (compressed) bytes of frame `i` of the file's stream. */
export async function frameBytes (e: TableEntry, read: StreamReader, table: SeekTable, i: number): Promise<Uint8Array> {
  const at = table.frame(i)
  return await readExactly(e, read, at.compressedOffset, at.compressedSize)
}

/** Frame `i` of the file's stream, read, checked against the seek table and decompressed: its plaintext. */
export async function decompressedFrame (e: TableEntry, read: StreamReader, table: SeekTable, i: number, decompress = decompressHere): Promise<Buffer> {
  return await decompress(displayPath(e.path), table.frame(i), await frameBytes(e, read, table, i))
}

/** The file's bytes [start, end) (within its size), decompressed frame by frame, in order. */
export async function * decompressed (e: TableEntry, read: StreamReader, table: SeekTable, start = 0, end = e.size!, decompress = decompressHere): AsyncGenerator<Buffer> {
  if (start >= end) return
  const [first, last] = table.framesFor(start, end)
  for (let i = first; i <= last; i++) {
    const at = table.frame(i)
    const plain = await decompressedFrame(e, read, table, i, decompress)
    const from = Math.max(start - at.decompressedOffset, 0)
    const to = Math.min(end - at.decompressedOffset, at.decompressedSize)
    yield from === 0 && to === plain.length ? plain : plain.subarray(from, to)
  }
}

/**
 * A compressed file's whole content, from its stream held in memory (a small file): its frames decompressed all at
 * once (on as many worker threads as `decompress` has).
 */
export async function decompressWhole (e: TableEntry, stream: Uint8Array, decompress = decompressHere): Promise<Buffer> {
  const read: StreamReader = async (offset, length) => stream.subarray(offset, offset + length)
  const table = await seekTableOf(e, read)
  if (table.frames === 0) return Buffer.alloc(0)
  const parts = await Promise.all(Array.from({ length: table.frames }, async (_, i) => await decompressedFrame(e, read, table, i, decompress)))
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, e.size)
}
