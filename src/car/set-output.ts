/**
 * Where a set's files go: one interface, one implementation per kind of place (src/pack/dir-output.ts, a local
 * directory; src/s3/s3-output.ts, a bucket prefix), so that the CAR writer and the pack never ask which they have.
 */

/** A CAR being written: appended to, then committed under its final name (known only at its end), or discarded. */
export interface CarDraft {
  /**
   * Appends bytes; resolves once they are queued within the sink's bound. The caller does not change them until
   * `release`, when given, is called: once the sink no longer reads them (never after a failure).
   */
  write: (bytes: Uint8Array, release?: () => void) => Promise<void>
  /** Makes everything written durable under `name` (`<pieceCid>.car`). */
  commit: (name: string) => Promise<void>
  /** Throws away what was written (after a failure). */
  discard: () => Promise<void>
}

/** Where CARs are written. */
export interface CarSink {
  /** Starts the CAR numbered `n` (from 0) of this writer. */
  begin: (n: number) => Promise<CarDraft>
}

export interface CarSinkOptions {
  /** Name of the n-th CAR while it is written (default `.partial-<n>.car`): writers sharing a place use their own. */
  partialName?: (n: number) => string
  /**
   * Told, before a draft receives any bytes, what a later run needs to throw it away should this one be killed (an
   * S3 multipart upload's id: nothing lists unfinished uploads on every store); the pack journals it.
   */
  onDraft?: (draft: string) => Promise<void>
  /** The largest CAR that will be written (the bin size): an upload in parts sizes its parts by it. */
  largestCar?: number
}

/** The default name of a CAR while it is written. */
export const partialCarName = (n: number): string => `.partial-${n}.car`

/** A set's place: its CARs, blocks.idx and manifest.json, side by side. */
export interface SetOutput {
  /** How messages name it: the directory as given, or `s3://BUCKET/PREFIX/`. */
  readonly where: string
  /** What messages call it. */
  readonly kind: 'directory' | 'prefix'
  /** What the pack journal's name derives from, once prepared: its real path; a store's endpoint and URL. */
  identity: () => Promise<string>
  /** Makes it exist, or checks that it can be reached and used; throws a one-line error. */
  prepare: () => Promise<void>
  /** Keeps other packs out until released (LOCKED, naming the holder, when another holds it). */
  lock: () => Promise<{ release: () => Promise<void> }>
  /** The names of everything in it but its locks; a name ending in `/` is a subdirectory (a prefix). */
  names: () => Promise<string[]>
  /** The size of a file in it, or null when there is none of that name. */
  size: (name: string) => Promise<number | null>
  /** `length` bytes of a file from `offset` (shorter only at its end). */
  readAt: (name: string, offset: number, length: number) => Promise<Buffer>
  remove: (name: string) => Promise<void>
  /** Where CARs go; `onDraft` also hears of drafts putFile makes (an upload in parts). */
  cars: (opts?: CarSinkOptions) => CarSink
  /** Writes a small file whole or not at all. */
  putBytes: (name: string, bytes: Uint8Array) => Promise<void>
  /** Writes a file that `produce` makes at a path it is given (in `scratchDir` when it cannot be made in place). */
  putFile: (name: string, produce: (file: string) => Promise<void>, scratchDir: string) => Promise<void>
  /** Throws away drafts an interrupted run reported (CarSinkOptions.onDraft) and did not commit. */
  discardDrafts: (drafts: string[]) => Promise<void>
  /** Releases connections. */
  close: () => Promise<void>
}
