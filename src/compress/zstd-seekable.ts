/**
 * zstd seekable streams (facebook/zstd contrib/seekable_format, version 0.1), the stored form of a file with
 * `"compression": "zstd"` (docs/FORMAT.md §5, §6): independent zstd frames, each with its content size and XXH64
 * checksum, then a skippable frame holding the seek table. Plain `zstd -d` decodes the stream (it skips the table), so
 * a compressed file is recovered with `age -d FILE | zstd -d`.
 *
 * Writing: {@link compressFrame} makes one frame from up to {@link FRAME_SIZE} bytes (frames are independent, so any
 * thread may make any frame), {@link SeekTableWriter} collects what the table keeps of each frame, in order, and
 * makes the table; the stream's size is known exactly once the last frame is made. {@link worthCompressing} is
 * `--compress auto`'s rule. Reading: {@link seekTableLength} (from the stream's last 9 bytes) says how many last bytes
 * hold the table, {@link parseSeekTable} checks it and maps plaintext offsets to frames, {@link decompressFrame}
 * checks and decompresses one frame.
 *
 * zstd itself comes from packer's native addon (libzstd), else from node:zlib (Node ≥ 22.15), else is missing
 * ({@link zstdCodec}). The sizes and levels below were chosen by measurement: bench/zstd-frames.mjs.
 */
import zlib from 'node:zlib'
import { PackerError } from '../errors.js'
import { BUILD_COMMAND, loadNativeAddon } from '../native-addon.js'

/**
 * Plaintext bytes per frame (the last frame of a file may be shorter). Measured (bench/zstd-frames.mjs, level 3):
 * 1 MiB frames store files ≥ 1 MiB 2.5 % larger than one frame per file, 256 KiB 7 %, 64 KiB 13 %; decompressing a
 * 1 MiB frame, what a 4 KiB random read costs, takes ~1.2 ms of one core, about what reading the 1 MiB leaf holding
 * it already costs, and the first frame is also auto's 1 MiB sample.
 */
export const FRAME_SIZE = 1 << 20
/** The largest frame a reader accepts (it decompresses a frame into one buffer): 16 frames of packer's size. */
export const MAX_FRAME_SIZE = 16 << 20
/** `--compress zstd` without a level: zstd's own default; 4–9 % smaller than level 1 for ~1.5 times the CPU. */
export const DEFAULT_LEVEL = 3
/**
 * `--compress auto`'s level, and its sample's (the same, so a sampled frame is the file's first frame). Measured
 * (bench/auto-level.mjs) on /usr/share/{doc,vim,perl}, 7,430 files, 162 MiB: the files' streams are 1.024 times
 * per-file `zstd -3` at level 1 and 1.005 times at level 3, for ~1.5 times the CPU of compression (a level-1 sample
 * then level 3 costs more: small files compressed twice), 2–4 % of pack's CPU there; a 1 MiB sample of random data
 * costs 0.52 instead of 0.39 ms. Storage is paid for as long as a deal runs, so level 3.
 */
export const AUTO_LEVEL = 3
/**
 * `--compress auto` compresses a file when its first SAMPLE_SIZE bytes shrink by at least MIN_SAVING (rclone's
 * rule). Measured: it stores mixed data within 0.3 % of compressing everything, and costs ~0.6 ms per incompressible
 * file of 1 MiB or more, ~10 µs per small one.
 */
export const SAMPLE_SIZE = FRAME_SIZE
export const MIN_SAVING = 0.1
/** Levels `--compress zstd:LEVEL` takes (zstd's own range without --ultra). */
export const MIN_LEVEL = 1
export const MAX_LEVEL = 19

const ZSTD_MAGIC = 0xfd2fb528
const SKIPPABLE_MAGIC = 0x184d2a5e
const SEEKABLE_MAGIC = 0x8f92eab1
const SKIPPABLE_HEADER = 8
const FOOTER = 9
const ENTRY = 12 // compressed u32, decompressed u32, checksum u32
const CHECKSUM_FLAG = 0x80
const RESERVED_BITS = 0x7c
/** The seekable format's own limit on the number of frames. */
const MAX_FRAMES = 0x8000000

/** zstd compression and decompression of single frames, from whichever implementation this process has. */
export interface ZstdCodec {
  /** Where it comes from and its zstd version, e.g. "native addon, zstd 1.5.4". */
  readonly name: string
  /**
   * Compresses `src` as one frame with its content size and checksum into `dst` (at least compressBound(src.length)
   * bytes); returns the frame's length.
   */
  compressFrame (src: Uint8Array, level: number, dst: Uint8Array): number
  /** Decompresses one frame whose content size is dst.length into `dst`, checking its checksum. */
  decompressFrame (src: Uint8Array, dst: Uint8Array): number
}

interface ZlibWithZstd {
  zstdCompressSync (src: Uint8Array, opts: { params: Record<number, number>, chunkSize: number }): Buffer
  zstdDecompressSync (src: Uint8Array, opts: { maxOutputLength: number, chunkSize: number }): Buffer
}

let codecs: ZstdCodec[] | undefined
let missing = ''

/** Every zstd this process has, the preferred first: the native addon's, node:zlib's. */
export function zstdCodecs (): ZstdCodec[] {
  if (codecs !== undefined) return codecs
  const { addon, reason } = loadNativeAddon()
  const z = zlib as unknown as Partial<ZlibWithZstd>
  codecs = []
  if (addon !== null) {
    codecs.push({
      name: `native addon, zstd ${addon.zstdVersion()}`,
      compressFrame: (src, level, dst) => addon.zstdCompressFrame(src, level, dst),
      decompressFrame: (src, dst) => addon.zstdDecompressFrame(src, dst),
    })
  }
  if (typeof z.zstdCompressSync === 'function' && typeof z.zstdDecompressSync === 'function') codecs.push(zlibCodec(z as ZlibWithZstd))
  if (codecs.length === 0) {
    missing = `packer's native addon is not available (${reason ?? 'unknown reason'}) and Node ${process.versions.node} has no zstd in node:zlib (Node 22.15 and later have)`
  }
  return codecs
}

/** This process's zstd: the native addon's, else node:zlib's, else null (see {@link zstdMissingReason}). */
export function zstdCodec (): ZstdCodec | null {
  return zstdCodecs()[0] ?? null
}

/**
 * node:zlib's zstd: a context and a result buffer per call, so slower than the addon (bench/zstd-frames.mjs). Output
 * in one chunk a little larger than the result (zlib's default, 16 KiB chunks joined at the end, made decompression
 * 1.8 times slower here).
 */
function zlibCodec (z: ZlibWithZstd): ZstdCodec {
  const c = zlib.constants as unknown as Record<string, number>
  return {
    name: `node:zlib, zstd ${process.versions.zstd ?? '?'}`,
    compressFrame (src, level, dst) {
      if (dst.length < compressBound(src.length)) throw new RangeError('compressFrame: dst is smaller than compressBound(src.length)')
      const frame = z.zstdCompressSync(src, {
        params: { [c.ZSTD_c_compressionLevel]: level, [c.ZSTD_c_checksumFlag]: 1, [c.ZSTD_c_contentSizeFlag]: 1 },
        chunkSize: compressBound(src.length) + 4096,
      })
      dst.set(frame)
      return frame.length
    },
    decompressFrame (src, dst) {
      const bytes = z.zstdDecompressSync(src, { maxOutputLength: Math.max(dst.length, 1), chunkSize: dst.length + 4096 })
      if (bytes.length !== dst.length) throw new Error(`the frame holds ${bytes.length} bytes, not ${dst.length}`)
      dst.set(bytes)
      return bytes.length
    },
  }
}

/** Why {@link zstdCodec} is null: one sentence. */
export function zstdMissingReason (): string {
  return zstdCodec() === null ? missing : ''
}

/**
 * This process's zstd, or a FORMAT PackerError saying that `what` (e.g. "data/x.csv is compressed with zstd") needs
 * it and how to get it.
 */
export function requireZstdCodec (what: string): ZstdCodec {
  const c = zstdCodec()
  if (c === null) {
    throw new PackerError('FORMAT', `${what}, and this packer has no zstd: ${missing}; install Debian's libzstd-dev and rebuild the addon (${BUILD_COMMAND}), or use Node 22.15 or later`)
  }
  return c
}

/** ZSTD_COMPRESSBOUND: the most bytes a frame of `n` bytes can take. */
export function compressBound (n: number): number {
  const small = 128 << 10
  return n + Math.floor(n / 256) + (n < small ? (small - n) >> 11 : 0)
}

// ------------------------------------------------------------------------------------------------ writing

/** What the seek table keeps of a frame. */
export interface FrameEntry {
  compressedSize: number
  decompressedSize: number
  /** Low 32 bits of the XXH64 of the frame's plaintext: the frame's own checksum, its last 4 bytes. */
  checksum: number
}

/**
 * Compresses `bytes` (1 to {@link MAX_FRAME_SIZE} bytes; packer gives {@link FRAME_SIZE}, less for a file's last
 * frame) as one frame into `dst` (at least compressBound(bytes.length) bytes). Returns the frame, a view of `dst`.
 */
export function compressFrame (zstd: ZstdCodec, bytes: Uint8Array, level: number, dst: Uint8Array): Uint8Array {
  if (bytes.length === 0 || bytes.length > MAX_FRAME_SIZE) throw new RangeError(`a frame holds 1 to ${MAX_FRAME_SIZE} bytes, not ${bytes.length}`)
  return dst.subarray(0, zstd.compressFrame(bytes, level, dst))
}

/** The seek table's entry for `frame`, made by {@link compressFrame} from `decompressedSize` bytes. */
export function frameEntry (frame: Uint8Array, decompressedSize: number): FrameEntry {
  return { compressedSize: frame.length, decompressedSize, checksum: readU32(frame, frame.length - 4) }
}

/** The size of the seek table frame of a stream of `frames` frames. */
export function seekTableSize (frames: number): number {
  return SKIPPABLE_HEADER + frames * ENTRY + FOOTER
}

/**
 * Collects the entries of a stream's frames, in order, and makes its seek table. Holds 12 bytes per frame (12 MiB
 * per TiB of file at packer's frame size), the table itself.
 */
export class SeekTableWriter {
  #entries = new Uint8Array(ENTRY * 16)
  #frames = 0
  #compressedSize = 0
  #decompressedSize = 0

  add (e: FrameEntry): void {
    if (this.#frames === MAX_FRAMES) throw new RangeError(`a seekable stream holds at most ${MAX_FRAMES} frames`)
    if ((this.#frames + 1) * ENTRY > this.#entries.length) {
      const grown = new Uint8Array(this.#entries.length * 2)
      grown.set(this.#entries)
      this.#entries = grown
    }
    const at = this.#frames * ENTRY
    writeU32(this.#entries, at, e.compressedSize)
    writeU32(this.#entries, at + 4, e.decompressedSize)
    writeU32(this.#entries, at + 8, e.checksum)
    this.#frames++
    this.#compressedSize += e.compressedSize
    this.#decompressedSize += e.decompressedSize
  }

  get frames (): number { return this.#frames }
  /** The file's size: plaintext bytes in the frames so far. */
  get decompressedSize (): number { return this.#decompressedSize }
  /** The whole stream's size, frames so far and seek table. */
  get streamSize (): number { return this.#compressedSize + seekTableSize(this.#frames) }

  /** The seek table frame: the stream's last bytes. */
  finish (): Uint8Array {
    const table = new Uint8Array(seekTableSize(this.#frames))
    writeU32(table, 0, SKIPPABLE_MAGIC)
    writeU32(table, 4, table.length - SKIPPABLE_HEADER)
    table.set(this.#entries.subarray(0, this.#frames * ENTRY), SKIPPABLE_HEADER)
    const footer = table.length - FOOTER
    writeU32(table, footer, this.#frames)
    table[footer + 4] = CHECKSUM_FLAG
    writeU32(table, footer + 5, SEEKABLE_MAGIC)
    return table
  }
}

/** The whole seekable stream of `bytes` held in memory (a small file, a test), in frames of `frameSize`. */
export function compressSeekable (zstd: ZstdCodec, bytes: Uint8Array, level: number, frameSize = FRAME_SIZE): Uint8Array {
  const dst = new Uint8Array(compressBound(Math.min(frameSize, bytes.length)))
  const table = new SeekTableWriter()
  const frames: Uint8Array[] = []
  for (let at = 0; at < bytes.length; at += frameSize) {
    const plain = bytes.subarray(at, at + frameSize)
    const frame = compressFrame(zstd, plain, level, dst).slice()
    frames.push(frame)
    table.add(frameEntry(frame, plain.length))
  }
  frames.push(table.finish())
  return Buffer.concat(frames)
}

/**
 * `--compress auto`'s rule (rclone's: a file is compressed when its first MiB shrinks by at least 10 %). Compresses
 * `sample`, the file's first {@link SAMPLE_SIZE} bytes or the whole file when smaller, at {@link AUTO_LEVEL} into
 * `dst` (compressBound(sample.length) bytes) and returns that frame, which is the file's first frame, when it and
 * the seek table it needs are at most 90 % of the sample; else null (the file is stored as it is).
 */
export function worthCompressing (zstd: ZstdCodec, sample: Uint8Array, dst: Uint8Array): Uint8Array | null {
  const plain = sample.subarray(0, SAMPLE_SIZE)
  if (plain.length === 0) return null
  const frame = compressFrame(zstd, plain, AUTO_LEVEL, dst)
  return frame.length + seekTableSize(1) <= plain.length * (1 - MIN_SAVING) ? frame : null
}

// ------------------------------------------------------------------------------------------------ reading

/** Where a frame is: in the stream (compressed) and in the file (decompressed). */
export interface FrameLocation {
  index: number
  compressedOffset: number
  compressedSize: number
  decompressedOffset: number
  decompressedSize: number
  checksum: number
}

/** A checked seek table. */
export interface SeekTable {
  readonly frames: number
  /** The stream's size: frames and seek table. */
  readonly streamSize: number
  /** The file's size: the frames' plaintext. */
  readonly fileSize: number
  /** Frame `i` (0 ≤ i < frames). */
  frame (i: number): FrameLocation
  /** The frames holding plaintext bytes [start, end) (0 ≤ start < end ≤ fileSize), as [first, last] inclusive. */
  framesFor (start: number, end: number): [number, number]
}

/** The stream's last bytes that {@link seekTableLength} needs. */
export const SEEK_TABLE_FOOTER_SIZE = FOOTER

function damaged (name: string, what: string): PackerError {
  return new PackerError('CORRUPT', `${name}: ${what}; the set is damaged`, { subject: name })
}

function notSeekable (name: string, what: string): PackerError {
  return new PackerError('FORMAT', `${name}: ${what}; the set is damaged or was not written by packer`, { subject: name })
}

/**
 * From the last {@link SEEK_TABLE_FOOTER_SIZE} bytes of a stream of `streamSize` bytes (stored for the file `name`):
 * how many of its last bytes hold the seek table frame, for {@link parseSeekTable}.
 */
export function seekTableLength (footer: Uint8Array, streamSize: number, name: string): number {
  if (footer.length < FOOTER) throw new RangeError(`the footer is ${FOOTER} bytes`)
  const f = footer.subarray(footer.length - FOOTER)
  if (streamSize < SKIPPABLE_HEADER + FOOTER) throw notSeekable(name, `${streamSize} bytes are too few for a zstd seekable stream`)
  if (readU32(f, 5) !== SEEKABLE_MAGIC) throw notSeekable(name, 'no zstd seek table at the end of its stored stream')
  const descriptor = f[4]
  if ((descriptor & RESERVED_BITS) !== 0) throw notSeekable(name, `its zstd seek table has reserved bits set (descriptor 0x${descriptor.toString(16)})`)
  if ((descriptor & CHECKSUM_FLAG) === 0) throw notSeekable(name, 'its zstd seek table has no frame checksums')
  const frames = readU32(f, 0)
  if (frames > MAX_FRAMES || seekTableSize(frames) > streamSize) {
    throw damaged(name, `its zstd seek table lists ${frames} frames, more than a ${streamSize}-byte stream holds`)
  }
  return seekTableSize(frames)
}

/**
 * Checks the seek table at the end of `tail` (the last bytes of the stream, at least {@link seekTableLength} of
 * them) against the stream's size and, when known, the file's size (the file table's `size`): every frame holds 1 to
 * {@link MAX_FRAME_SIZE} bytes in at most compressBound of them, and the frames fill the stream up to the table.
 */
export function parseSeekTable (tail: Uint8Array, streamSize: number, name: string, fileSize?: number): SeekTable {
  const length = seekTableLength(tail, streamSize, name)
  if (tail.length < length) throw new RangeError(`the seek table is the stream's last ${length} bytes, ${tail.length} given`)
  const t = tail.subarray(tail.length - length)
  if (readU32(t, 0) !== SKIPPABLE_MAGIC) throw notSeekable(name, 'its zstd seek table does not start a skippable frame')
  if (readU32(t, 4) !== length - SKIPPABLE_HEADER) {
    throw damaged(name, `its zstd seek table frame says ${readU32(t, 4)} bytes, its frame count needs ${length - SKIPPABLE_HEADER}`)
  }
  const frames = (length - SKIPPABLE_HEADER - FOOTER) / ENTRY
  const compressedOffsets = new Float64Array(frames + 1)
  const decompressedOffsets = new Float64Array(frames + 1)
  const checksums = new Uint32Array(frames)
  for (let i = 0; i < frames; i++) {
    const at = SKIPPABLE_HEADER + i * ENTRY
    const c = readU32(t, at)
    const d = readU32(t, at + 4)
    if (d === 0 || d > MAX_FRAME_SIZE) throw damaged(name, `frame ${i} of its zstd stream holds ${d} bytes (1 to ${MAX_FRAME_SIZE} expected)`)
    if (c === 0 || c > compressBound(d)) throw damaged(name, `frame ${i} of its zstd stream takes ${c} bytes for ${d}, more than zstd ever needs`)
    compressedOffsets[i + 1] = compressedOffsets[i] + c
    decompressedOffsets[i + 1] = decompressedOffsets[i] + d
    checksums[i] = readU32(t, at + 8)
  }
  if (compressedOffsets[frames] + length !== streamSize) {
    throw damaged(name, `its zstd frames and seek table take ${compressedOffsets[frames] + length} bytes, the stream has ${streamSize}`)
  }
  const total = decompressedOffsets[frames]
  if (fileSize !== undefined && total !== fileSize) {
    throw damaged(name, `its zstd frames hold ${total} bytes, the file table says ${fileSize}`)
  }
  return {
    frames,
    streamSize,
    fileSize: total,
    frame (i) {
      if (!Number.isInteger(i) || i < 0 || i >= frames) throw new RangeError(`no frame ${i} in ${frames}`)
      return {
        index: i,
        compressedOffset: compressedOffsets[i],
        compressedSize: compressedOffsets[i + 1] - compressedOffsets[i],
        decompressedOffset: decompressedOffsets[i],
        decompressedSize: decompressedOffsets[i + 1] - decompressedOffsets[i],
        checksum: checksums[i],
      }
    },
    framesFor (start, end) {
      if (!(start >= 0 && start < end && end <= total)) throw new RangeError(`bytes [${start}, ${end}) are not within the file's ${total}`)
      return [frameHolding(decompressedOffsets, start), frameHolding(decompressedOffsets, end - 1)]
    },
  }
}

/** The frame whose plaintext holds byte `offset`: the last i with offsets[i] ≤ offset. */
function frameHolding (offsets: Float64Array, offset: number): number {
  let lo = 0
  let hi = offsets.length - 1 // offsets[hi] > offset
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1
    if (offsets[mid] <= offset) lo = mid
    else hi = mid
  }
  return lo
}

/**
 * Decompresses frame `at` (its location in `table`) from its stored bytes `frame` into `dst` (at least its
 * decompressedSize bytes) and returns the plaintext, a view of `dst`. The frame must say what the table says: its
 * content size, and a checksum equal to the table's, which zstd checks against the plaintext. Anything else is a
 * CORRUPT PackerError, never wrong bytes.
 */
export function decompressFrame (zstd: ZstdCodec, at: FrameLocation, frame: Uint8Array, dst: Uint8Array, name: string): Uint8Array {
  const which = `frame ${at.index} of its zstd stream`
  if (frame.length !== at.compressedSize) throw new RangeError(`${which} is ${at.compressedSize} bytes, ${frame.length} given`)
  if (dst.length < at.decompressedSize) throw new RangeError(`${which} holds ${at.decompressedSize} bytes, dst has ${dst.length}`)
  const header = frameHeader(frame)
  if (header === null) throw damaged(name, `${which} is not a zstd frame with its content size and checksum`)
  if (header.contentSize !== at.decompressedSize) {
    throw damaged(name, `${which} holds ${header.contentSize} bytes, its seek table says ${at.decompressedSize}`)
  }
  if (readU32(frame, frame.length - 4) !== at.checksum) throw damaged(name, `${which} does not have the checksum its seek table gives`)
  const out = dst.subarray(0, at.decompressedSize)
  try {
    zstd.decompressFrame(frame, out)
  } catch (err) {
    throw damaged(name, `${which} does not decompress (${(err as Error).message})`)
  }
  return out
}

/**
 * The content size of a zstd frame that has one and a checksum (zstd_compression_format.md, frame header), or null.
 * Checked here rather than by the codec so that both codecs refuse the same frames.
 */
function frameHeader (frame: Uint8Array): { contentSize: number } | null {
  if (frame.length < 6 || readU32(frame, 0) !== ZSTD_MAGIC) return null
  const descriptor = frame[4]
  const fcsFlag = descriptor >> 6
  const singleSegment = (descriptor >> 5) & 1
  const reserved = (descriptor >> 3) & 1
  const checksum = (descriptor >> 2) & 1
  const dictIdBytes = [0, 1, 2, 4][descriptor & 3]
  const fcsBytes = [singleSegment, 2, 4, 8][fcsFlag]
  if (reserved !== 0 || checksum === 0 || fcsBytes === 0) return null
  const at = 5 + (singleSegment ? 0 : 1) + dictIdBytes
  if (frame.length < at + fcsBytes + 4) return null
  switch (fcsBytes) {
    case 1: return { contentSize: frame[at] }
    case 2: return { contentSize: (frame[at] | frame[at + 1] << 8) + 256 }
    case 4: return { contentSize: readU32(frame, at) }
    default: return { contentSize: readU32(frame, at) + readU32(frame, at + 4) * 2 ** 32 }
  }
}

function readU32 (b: Uint8Array, at: number): number {
  return (b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24) >>> 0
}

function writeU32 (b: Uint8Array, at: number, v: number): void {
  b[at] = v
  b[at + 1] = v >>> 8
  b[at + 2] = v >>> 16
  b[at + 3] = v >>> 24
}
