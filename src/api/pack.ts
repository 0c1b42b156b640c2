import { PackerError } from '../errors.js'
import { parseSize } from '../format/size.js'
import { displayPath } from '../format/stored-path.js'
import { DEFAULT_BIN_SIZE } from '../car/car-set-writer.js'
import { pack as packSet, type PackEvent as InternalPackEvent } from '../pack/packer.js'
import { openOutput, openSource, refuseNested } from '../pack/locations.js'
import { s3SettingsOf, type S3Options } from './s3.js'
import { defaultJobs } from '../pack/leaf-workers.js'
import { compressionOf } from '../pack/compress.js'
import { setEncryptionOf, type RecipientOptions } from './keys.js'
import { pieceInfo, type PieceInfo } from './set.js'
import type { Callbacks, FileEvent, ProgressEvent } from './events.js'

export interface PackOptions extends RecipientOptions, S3Options, Callbacks<PackEvent> {
  /**
   * Where the CAR set goes: a directory or `s3://BUCKET/PREFIX`, new or empty, or the one an interrupted pack with
   * the same options left.
   */
  output: string
  /** Largest CAR: bytes, or text such as `64MiB`, `31.5GiB` (default: the largest whose piece fits a 32 GiB sector). */
  binSize?: number | string
  /** A source file that changes while it is packed: read it again (default), fail, or leave it out. */
  onChange?: 'retry' | 'fail' | 'skip'
  /** Threads that hash and encrypt, 1 to 256 (default: the cores available); the set does not depend on it. */
  jobs?: number | string
  /** Where the resume journal lives (default `$XDG_STATE_HOME/packer` or `~/.local/state/packer`). */
  stateDir?: string
  /**
   * Compression before encryption: 'auto' (the default when encrypting: a file whose first MiB shrinks by 10 % at
   * zstd level 3, at which it is then compressed), 'off' (the default in clear, where it is refused), 'zstd' (level
   * 3, every file that shrinks) or 'zstd:LEVEL' (1 to 19).
   */
  compress?: string
}

/** pack's events: what `packer pack --json` prints, plus `scanning` and `progress` for progress displays. */
export type PackEvent =
  | { event: 'scanning', files: number, bytes: number }
  | { event: 'scan', files: number, bytes: number }
  | { event: 'resume', cars: number, files: number }
  | FileEvent
  | { event: 'skip', path: string, reason: string }
  | { event: 'car', index: number, file: string, size: number, pieceCid: string, pieceSize: number, root: string }
  | ProgressEvent
  | { event: 'done', nothingToDo: true, root: string, setId: string }
  | { event: 'done', nothingToDo?: undefined, files: number, bytes: number, cars: number, seconds: number, root: string, setId: string, skipped: PackSkip[], resumed: PackResume | null }

/** A source entry left out (a FIFO, a device, a file that changed with onChange 'skip'). */
export interface PackSkip { path: string, reason: string }
/** What an interrupted pack had completed and this one kept. */
export interface PackResume { cars: number, files: number }

export interface PackResult {
  /** True when the output already held the set these options make: nothing was done. */
  nothingToDo: boolean
  files: number
  bytes: number
  /** Number of CARs. */
  cars: number
  seconds: number
  root: string
  setId: string
  skipped: PackSkip[]
  resumed: PackResume | null
  /** Every CAR with its piece CID, for deals. */
  pieces: PieceInfo[]
}

/** The internal pack's progress as the API's events (what `--json` prints, and running totals). */
export function packProgress (emit: (e: PackEvent) => void): (e: InternalPackEvent) => void {
  const progress: ProgressEvent = { event: 'progress', bytes: 0, totalBytes: 0, files: 0, totalFiles: 0 }
  const report = (): void => emit({ ...progress })
  return (e) => {
    switch (e.type) {
      case 'scan':
        progress.totalFiles = e.files; progress.totalBytes = e.bytes
        emit({ event: e.done ? 'scan' : 'scanning', files: e.files, bytes: e.bytes })
        break
      case 'read': progress.bytes += e.bytes; report(); break
      case 'file': progress.files++; emit({ event: 'file', path: displayPath(e.path), bytes: e.bytes }); report(); break
      case 'skip': emit({ event: 'skip', path: displayPath(e.path), reason: e.reason }); break
      case 'car': emit({ event: 'car', index: e.index, file: e.car.file, size: e.car.size, pieceCid: e.car.pieceCid, pieceSize: e.car.pieceSize, root: e.car.root }); break
      case 'resume': emit({ event: 'resume', cars: e.cars, files: e.files }); break
    }
  }
}

export function binSizeOf (b: number | string | undefined): number {
  if (b === undefined) return DEFAULT_BIN_SIZE
  if (typeof b === 'string') return parseSize(b, '--bin-size')
  if (!Number.isSafeInteger(b) || b <= 0) throw new PackerError('USAGE', `--bin-size: ${b} is not a whole number of bytes`)
  return b
}

export function jobsOf (j: number | string | undefined): number {
  if (j === undefined) return defaultJobs()
  const jobs = Number(j)
  if (!/^[0-9]+$/.test(String(j)) || !Number.isSafeInteger(jobs) || jobs < 1 || jobs > 256) {
    throw new PackerError('USAGE', `--jobs ${j}: give a whole number from 1 to 256`)
  }
  return jobs
}

/**
 * `packer pack`: packs `source` (a directory, whose contents become the set's root, one file, or the objects under
 * `s3://BUCKET/PREFIX`) into a CAR set in `options.output`. Run it again with the same options to continue after a
 * crash.
 */
export async function pack (source: string, options: PackOptions): Promise<PackResult> {
  const binSize = binSizeOf(options.binSize)
  const jobs = jobsOf(options.jobs)
  const warn = options.onWarning ?? (() => {})
  const emit = options.onEvent ?? (() => {})
  const encryption = await setEncryptionOf(options, warn)
  const compress = compressionOf(options.compress, encryption !== null, warn)
  const s3 = s3SettingsOf(options)
  refuseNested(source, options.output)
  const started = Date.now()
  const tree = await openSource(source, s3)
  let r
  try {
    const output = await openOutput(options.output, s3)
    try {
      r = await packSet({
        source: tree,
        output,
        binSize,
        encryption,
        onChange: options.onChange,
        jobs,
        stateDir: options.stateDir,
        compress,
        warn,
        progress: packProgress(emit),
      })
    } finally {
      await output.close()
    }
  } finally {
    await tree.close()
  }
  const m = r.manifest
  const seconds = (Date.now() - started) / 1000
  if (r.nothingToDo) emit({ event: 'done', nothingToDo: true, root: m.root, setId: m.table.cid })
  else emit({ event: 'done', files: r.files, bytes: r.bytes, cars: m.cars.length, seconds, root: m.root, setId: m.table.cid, skipped: r.skipped, resumed: r.resumed })
  return { nothingToDo: r.nothingToDo, files: r.files, bytes: r.bytes, cars: m.cars.length, seconds, root: m.root, setId: m.table.cid, skipped: r.skipped, resumed: r.resumed, pieces: pieceInfo(m) }
}
