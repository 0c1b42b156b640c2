/**
 * The optional native addon (native/, built by node-gyp into native/build/Release/packer_native.node):
 * fast CommP, nanosecond file times and zstd frames (libzstd). Everything using it has a fallback (pure JS; for zstd,
 * node:zlib where Node has it); the addon is missing when the build failed or was skipped, and disabled by
 * PACKER_NO_NATIVE=1.
 */
import { promises as fsp } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** Result of a native CommP computation. */
export interface NativeCommP {
  /** The 32-byte CommP root (last byte's top two bits clear). */
  root: Uint8Array
  /** Tree height: log2(paddedSize / 32). */
  height: number
  payloadSize: number
  paddedSize: number
}

/** Opaque handle of a native streaming CommP hasher. */
export type NativeCommPHandle = object & { readonly __nativeCommP?: never }

export interface NativeAddon {
  /**
   * Starts a streaming hasher with `threads` worker threads. `callback` runs on the JS thread each time more
   * bytes were hashed (`hashed` = bytes hashed so far; chunks entirely hashed are let go), and a last time with
   * `done` and the result after {@link NativeAddon.commpFinish}. The bytes after the last full native block
   * (about 254 KiB) wait for more data or commpFinish. An idle hasher does not keep the process alive.
   */
  commpCreate (threads: number, impl: string | undefined,
    callback: (hashed: number, done: boolean, result?: NativeCommP) => void): NativeCommPHandle
  /** Queues bytes; they are read in place by a worker thread and must not change until entirely hashed. */
  commpWrite (handle: NativeCommPHandle, bytes: Uint8Array): void
  commpFinish (handle: NativeCommPHandle): void
  /** Abandons the hasher: stops its threads and lets go of every chunk. */
  commpDestroy (handle: NativeCommPHandle): void
  /** Synchronous CommP of one buffer on the calling thread. */
  commpOneshot (bytes: Uint8Array, impl?: string): NativeCommP
  /** SHA-256 implementations usable on this machine, the default first. */
  commpImpls (): string[]
  /** Seconds taken to hash `nodes` tree nodes with `impl` (benchmarks). */
  benchNodeHash (impl: string, nodes: number): number
  /** utimensat(AT_FDCWD, path, …, AT_SYMLINK_NOFOLLOW); throws an Error whose `code` is the errno name. */
  setFileTimes (path: string | Uint8Array, atimeSec: bigint, atimeNsec: number, mtimeSec: bigint, mtimeNsec: number): void
  /** malloc_trim(0): gives the free pages of every malloc arena back to the system; false where not glibc. */
  trimMalloc (): boolean
  /** malloc_trim(0) on libuv's thread pool, one at a time: returns at once, false when one is still under way. */
  trimMallocInBackground (): boolean
  /**
   * The offset in `bytes` of its first 2 MiB boundary, the whole 2 MiB pages of the `length` bytes from there advised
   * MADV_HUGEPAGE (fresh memory is then faulted in 2 MiB at a time); -1 when `bytes` cannot hold them from there.
   */
  hugePagesAt (bytes: Uint8Array, length: number): number
  /** posix_fadvise(WILLNEED) of whole files (opened without following symlinks), on libuv's pool: returns at once. */
  adviseWillNeed (paths: Uint8Array[]): void
  /** Age recipients for ageSealFile; null when one is of a kind or size the addon does not do. */
  ageRecipients (list: Array<{ x25519: Uint8Array } | { spki: Uint8Array, tag: string }>): NativeAgeRecipients | null
  /** A whole file as an age file: file key (16) ‖ its SHA-256 (32) ‖ header length (u32 LE) ‖ the age file. */
  ageSealFile (recipients: NativeAgeRecipients, plain: Uint8Array): Buffer
  /** The plaintext of a whole age file opened with its 16-byte file key; null when it does not open (any fault). */
  ageOpenFile (fileKey: Uint8Array, file: Uint8Array): Buffer | null
  /**
   * Opens `count` consecutive sealed chunks of one file (64 KiB + 16 each, chunk `lastIndex` the final one, of
   * `lastPlain` bytes), the first being chunk `first`, from `sealed` into `out` (64 KiB apart): how many opened
   * before the first that failed authentication (`count` when all did). Either buffer may be shared memory.
   */
  ageOpenChunks (payloadKey: Uint8Array, first: number, count: number, lastIndex: number, lastPlain: number, sealed: Uint8Array, out: Uint8Array): number
  /** Seals `count` consecutive chunks of plaintext (64 KiB apart in `plain`) into `out` (64 KiB + 16 apart), as above. */
  ageSealChunks (payloadKey: Uint8Array, first: number, count: number, lastIndex: number, lastPlain: number, plain: Uint8Array, out: Uint8Array): void
  /**
   * Compresses `src` as one zstd frame with its content size and XXH64 checksum into `dst`, which must hold
   * ZSTD_compressBound(src.length) bytes; returns the frame's length. Uses this thread's reusable context.
   */
  zstdCompressFrame (src: Uint8Array, level: number, dst: Uint8Array): number
  /**
   * Decompresses `src`, exactly one zstd frame whose content size is dst.length, into `dst` (its checksum checked
   * when it has one); returns dst.length. Throws an Error whose `code` is 'ZSTD' for anything else.
   */
  zstdDecompressFrame (src: Uint8Array, dst: Uint8Array): number
  /** The zstd library in use, e.g. "1.5.4" (Node 22 and later: the zstd bundled with node, see native/README.md). */
  zstdVersion (): string
  /**
   * On libuv's thread pool, writes each file whole under its name (which must not exist: O_CREAT|O_EXCL|O_NOFOLLOW,
   * 0600), then fchown (uid >= 0), fchmod, futimens, close; a file that fails is removed. `paths`: each name followed
   * by a NUL byte; `meta`: [mode, uid, gid, mtimeSec, mtimeNsec] per file. `done` gets the files that failed.
   */
  writeFiles (paths: Uint8Array, data: Uint8Array[], meta: Float64Array, done: (failures: FileOpFailure[]) => void): void
  /** rename(2) of `count` pairs on libuv's thread pool; `paths`: from, NUL, to, NUL… */
  renameFiles (paths: Uint8Array, count: number, done: (failures: FileOpFailure[]) => void): void
  /**
   * A whole file read into `into` (exactly `size` bytes) if it is still the regular file of that device, inode, size
   * and mtime, before and after the read: 0; else 1 (read it through node:fs to learn why).
   */
  readFileInto (path: Uint8Array, dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint, into: Uint8Array): number
  /**
   * lstat(2) of `count` names (each followed by a NUL byte) on libuv's thread pool: [dev, ino, size, mtimeNs, mode,
   * uid, gid] of each into `stats`, a symlink's target into `targets`; an mtime past int64 nanoseconds is EOVERFLOW.
   */
  lstatFiles (paths: Uint8Array, count: number, stats: BigInt64Array, done: (failures: FileOpFailure[], targets: Array<Buffer | undefined>) => void): void
}

/** A file writeFiles, renameFiles or lstatFiles could not do: its index in the batch, its errno's name, the system call. */
export type FileOpFailure = [index: number, code: string, syscall: string]

/** Opaque handle of parsed age recipients. */
export type NativeAgeRecipients = object & { readonly __nativeAgeRecipients?: never }

export interface NativeAddonLoad {
  addon: NativeAddon | null
  /** Why the addon is not available, when it is not. */
  reason?: string
}

/**
 * Relative to this module: src/ under tests, dist/ when built (also in an installed package, which carries the
 * built addon); both are one level below the package root.
 */
const ADDON_PATH = '../native/build/Release/packer_native.node'
/** How to (re)build it, wherever this package is: a clone or node_modules/filecoin-packer. */
export const BUILD_COMMAND = `node ${fileURLToPath(new URL('../native/build.mjs', import.meta.url))}`
const EXPECTED: Array<keyof NativeAddon> = ['commpCreate', 'commpWrite', 'commpFinish', 'commpDestroy',
  'commpOneshot', 'commpImpls', 'benchNodeHash', 'setFileTimes', 'readFileInto', 'trimMalloc', 'trimMallocInBackground', 'hugePagesAt', 'adviseWillNeed',
  'ageRecipients', 'ageSealFile', 'ageOpenFile', 'ageOpenChunks', 'ageSealChunks', 'zstdCompressFrame', 'zstdDecompressFrame', 'zstdVersion', 'writeFiles', 'renameFiles', 'lstatFiles']

let cached: NativeAddonLoad | undefined

/** Loads the addon once per process. Never throws. */
export function loadNativeAddon (): NativeAddonLoad {
  if (cached !== undefined) return cached
  if (process.env.PACKER_NO_NATIVE === '1') {
    cached = { addon: null, reason: 'disabled by PACKER_NO_NATIVE=1' }
    return cached
  }
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon
    const missing = EXPECTED.filter((name) => typeof addon[name] !== 'function')
    cached = missing.length === 0
      ? { addon }
      : { addon: null, reason: `native/build is stale (no ${missing.join(', ')}); rebuild with: ${BUILD_COMMAND}` }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    cached = {
      addon: null,
      reason: code === 'MODULE_NOT_FOUND'
        ? `native/build/Release/packer_native.node not built; build it with: ${BUILD_COMMAND}`
        : `cannot load native/build/Release/packer_native.node: ${(err as Error).message.split('\n')[0]}`,
    }
  }
  return cached
}

/** The addon, or null when it is not available (see {@link loadNativeAddon} for why). */
export function nativeAddon (): NativeAddon | null {
  return loadNativeAddon().addon
}

const NS_PER_S = 1_000_000_000n

/** Splits nanoseconds since the epoch into whole seconds (floored, so negative times work) and 0…999,999,999 ns. */
export function splitNs (ns: bigint): { sec: bigint, nsec: number } {
  let sec = ns / NS_PER_S
  let rem = ns - sec * NS_PER_S
  if (rem < 0n) {
    sec -= 1n
    rem += NS_PER_S
  }
  return { sec, nsec: Number(rem) }
}

/**
 * Sets a file's access and modification times, in nanoseconds since the epoch, without following a symlink
 * (the link itself gets the times).
 *
 * With the native addon the times are exact to the nanosecond (utimensat with AT_SYMLINK_NOFOLLOW; the call is a
 * single metadata syscall made on the calling thread). Without it, this falls back to `fs.promises.lutimes` with
 * the times as fractional seconds: a double, so precision is about a microsecond for present-day dates, and the
 * nanoseconds read back will usually differ from those given.
 *
 * `path` is a string or the file name's raw bytes (a Buffer), for names that are not valid UTF-8.
 * Errors are Node-style system errors (`code` 'ENOENT', 'EPERM'…, `syscall`, `path`).
 */
export async function setFileTimesNs (path: string | Uint8Array, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
  const addon = nativeAddon()
  if (addon !== null) {
    const a = splitNs(atimeNs)
    const m = splitNs(mtimeNs)
    addon.setFileTimes(path, a.sec, a.nsec, m.sec, m.nsec)
    return
  }
  await fsp.lutimes(typeof path === 'string' ? path : Buffer.from(path.buffer, path.byteOffset, path.byteLength), nsToSeconds(atimeNs), nsToSeconds(mtimeNs))
}

function nsToSeconds (ns: bigint): number {
  const { sec, nsec } = splitNs(ns)
  return Number(sec) + nsec / 1e9
}

/** What lstatFiles found of a batch of names: 7 numbers a name in `stats`; the names it could not stat in `failures`. */
export interface LstatBatch { stats: BigInt64Array, targets: Array<Buffer | undefined>, failures: FileOpFailure[] }

/** lstat and readlink of `count` NUL-terminated names in one call off this thread; null without the addon. */
export async function lstatFiles (paths: Uint8Array, count: number): Promise<LstatBatch | null> {
  const addon = nativeAddon()
  if (addon === null) return null
  const stats = new BigInt64Array(count * 7)
  return await new Promise((resolve) => { addon.lstatFiles(paths, count, stats, (failures, targets) => { resolve({ stats, targets, failures }) }) })
}

/** Starts reading files into the page cache ahead of their turn, off this thread (a no-op without the addon). */
export function adviseWillNeed (paths: Uint8Array[]): void {
  if (paths.length > 0) nativeAddon()?.adviseWillNeed(paths)
}
