import { PackerError } from '../errors.js'
import type { CID } from 'multiformats/cid'
import type { CarRecord } from '../format/manifest.js'

/** A block (its CID: the SHA-256 its bytes must have) and its place in its CAR. */
export interface BlockAt { cid: CID, offset: number, length: number }

/**
 * How a worker thread gets a block's bytes: a descriptor it preads (it checks the hash itself), or bytes already
 * fetched and checked here (a remote store). Bytes with `release` are lent: in memory the store reuses once they are
 * released, so the caller calls it once it, and any thread it gave them to, is done with them (never before).
 */
export type Place = { fd: number, offset: number } | { bytes: Uint8Array, release?: () => void }

/** One CAR read end to end (verify, fetch): `name` is the file or URL it is read from. */
export interface WholeCar {
  name: string
  /** False when the CAR was found by content under a name that is not the manifest's (files only). */
  ownName: boolean
  size: number
  /**
   * The CAR's bytes from `from` on. With `reuse`, a chunk may be valid only until the next is asked for (a store may
   * receive the next into its memory): for a reader that copies what it keeps.
   */
  stream: (from?: number, o?: { reuse?: boolean }) => AsyncIterable<Uint8Array>
}

/** One of a CAR's several sources (HttpCars: each --piece-url), read alone; `drop` passes it over for this CAR. */
export interface CarSource extends WholeCar {
  drop: (err: PackerError) => void
}

/** What sits under a CAR's own name when that CAR was not found there (files only; a URL holds what it holds). */
export type Occupant = { kind: 'none' } | { kind: 'other' } | { kind: 'found' | 'copy', car: number }

/**
 * Where a set's CARs are read from: a directory (LocalCars), web servers (HttpCars); object stores are one more.
 * Everything above it (block source, reader, unpack, verify, mount) reads through this alone. CARs are numbered as
 * in the manifest. Errors are PackerErrors naming the CAR and where it was looked for.
 */
export interface CarStore {
  /** Where the CARs are, for messages: a directory, a URL, URL templates. */
  readonly where: string
  /**
   * Bytes a sequential reader should read ahead, when the reader's own default is too little: a store far away needs
   * more in flight to cover its latency (a local one has none to cover).
   */
  readonly readAhead?: number
  /** True when CAR `car` can be read (a file that is absent now may be copied in later). */
  has: (car: number) => Promise<boolean>
  /** The error for CAR `car` when it cannot be read: where it was looked for and what to do. */
  absent: (car: number) => MissingCarError
  /** Blocks of CAR `car`, each its bytes once their SHA-256 matches, or the error that keeps it from being read. */
  readBlocks: (car: number, blocks: BlockAt[]) => Promise<Array<Buffer | PackerError>>
  /** Where a worker thread reads a block from (throws MissingCarError when the CAR is absent); lent bytes are released. */
  place: (car: number, block: BlockAt) => Promise<Place>
  /** The CAR read whole, or null when it is absent. */
  whole: (car: number) => Promise<WholeCar | null>
  /**
   * CAR `car`'s sources not dropped, in the order tried, each streamed from it alone (a failure mid-body is not carried
   * on by the next): for a reader that checks the whole CAR (fetch's piece CID) and must know which source sent wrong
   * bytes. Absent when a store has one place per CAR (whole() is it).
   */
  sources?: (car: number) => CarSource[]
  /** What is under CAR `car`'s own name when the CAR itself is elsewhere or absent. */
  occupant: (car: number) => Promise<Occupant>
  /** Extra copies of the set's CARs under other names, each with the CAR it holds (files only). */
  extraCopies: () => Promise<Array<{ file: string, car: number }>>
  close: () => Promise<void>
}

/** CAR `car` cannot be read where the store looks for it; `why` says where and what to do. */
export class MissingCarError extends PackerError {
  readonly car: number
  constructor (car: number, record: CarRecord, why: string) {
    super('MISSING_CAR', `CAR ${record.file} (piece ${record.pieceCid}) ${why}`, { subject: record.file })
    this.car = car
  }
}
