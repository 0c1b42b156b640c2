/**
 * Where pack's bytes come from: one interface, one small implementation per kind of source (local-tree.ts, a
 * directory or file on disk; src/s3/s3-tree.ts, a bucket prefix), as rclone has one backend interface and many
 * backends. The pipeline (src/pack) never asks which one it has: it walks the tree, opens files, and hands leaf jobs
 * the input each source gives — a descriptor the job reads itself (local), or bytes fetched beforehand (S3).
 */
import type { SourceIdentity } from './file-reader.js'
import type { SourceEntry, WalkedSource, WalkOptions } from './walk.js'

/**
 * What a leaf job reads plaintext from: a descriptor it preads (a local file, a spool of compressed frames), or the
 * bytes themselves, starting at byte `at` of the file (fetched by the main thread; transferred, never copied).
 */
export type PlainInput = { fd: number } | { bytes: Uint8Array, at: number }

/** What a job reading a whole small file takes: its path, read there with the listed identity checked; or its bytes. */
export type WholeFileInput = { path: Uint8Array, expect: SourceIdentity } | { bytes: Uint8Array }

/** A file's bytes as leaf jobs take them. */
export interface ByteSource {
  readonly size: number
  /** The input of a job that needs plaintext [start, end): a descriptor, or those bytes (fetched now). */
  input: (start: number, end: number) => PlainInput | Promise<PlainInput>
}

/** A listed file open for reading. */
export interface SourceFile extends ByteSource {
  /** Throws SourceChangedError when the file is no longer the one listed, unchanged. */
  check: (when: string) => Promise<void>
  close: () => Promise<void>
}

/** How a plan records a source, so that shards on other machines open the same one. */
export interface SourceSpec {
  /** A directory or file (absolute path), or `s3://BUCKET/PREFIX`. */
  source: string
  /** S3 sources: the store and how mtimes are read (never credentials: each machine uses its own chain). */
  s3?: { endpoint?: string, pathStyle?: boolean, mtime: 'metadata' | 'last-modified' }
}

export interface TreeSource {
  /** How messages, journals and plans name it: an absolute path, or `s3://BUCKET/PREFIX`. */
  readonly name: string
  readonly spec: SourceSpec
  /** Reads of one file's leaves kept in flight (at least): more for a source with latency per request. */
  readonly readsInFlight: number
  /** The tree in the file table's order (FORMAT.md §5). */
  walk: (opts: WalkOptions) => Promise<WalkedSource>
  /** Where a path of the archive is read from (`single`: the source is that one file), as SourceEntry.abs. */
  locate: (path: Buffer, single: boolean) => Buffer
  /** Opens a listed file, checked against what the walk saw (SourceChangedError, SourceVanishedError). */
  open: (e: SourceEntry) => Promise<SourceFile>
  /** A listed file small enough for one leaf, as a whole-file job reads it (fetched now where it must be). */
  wholeFile: (e: SourceEntry) => WholeFileInput | Promise<WholeFileInput>
  /** These files will be read soon, whole (wholeFile), in this order (a local disk reads them ahead). */
  willRead: (entries: SourceEntry[]) => void
  /**
   * These files will be opened (open), in this order, after those named before: a source whose every request waits a
   * round trip (S3) starts fetching their first bytes now, within a bound of its own, so that the next file's bytes
   * arrive while this one is sealed and written. A file opened out of turn, or never, costs only the bytes fetched.
   */
  willOpen: (entries: SourceEntry[]) => void
  /**
   * Updates a listed file's entry to what it is now, after it changed while read (`--on-change retry`); throws
   * SourceVanishedError when it is gone, SourceChangedError when it is no longer a file.
   */
  refresh: (e: SourceEntry) => Promise<void>
  /** Releases connections. */
  close: () => Promise<void>
}
