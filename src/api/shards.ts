import { DEFAULT_BIN_SIZE } from '../car/car-set-writer.js'
import { parseSize } from '../format/size.js'
import { makePlan } from '../pack/plan.js'
import { packShard as runShard, shardFromEnvironment } from '../pack/shard.js'
import { joinShards } from '../pack/join.js'
import { workStatus, type WorkStatus } from '../pack/status.js'
import { compressionOf } from '../pack/compress.js'
import { openSource } from '../pack/locations.js'
import { isS3Url } from '../s3/s3-url.js'
import { PackerError } from '../errors.js'
import { binSizeOf, jobsOf, packProgress, type PackEvent } from './pack.js'
import { s3SettingsOf, type S3Options } from './s3.js'
import { passphraseText, setEncryptionOf, type RecipientOptions } from './keys.js'
import { pieceInfo, type PieceInfo } from './set.js'
import type { Callbacks } from './events.js'

export type { WorkStatus, ShardStatus, ShardState } from '../pack/status.js'

export interface PlanOptions extends RecipientOptions, S3Options, Callbacks<PlanEvent> {
  /** Directory for the CAR set, new or empty: every shard writes its CARs there (shared storage). */
  output: string
  /** The private work directory (shared storage, new or empty; made mode 0700): never ship it. */
  work: string
  /** How many shards, or `shardSize`: the bytes a shard should hold (e.g. '2TiB'). */
  shards?: number
  shardSize?: number | string
  binSize?: number | string
  /** As pack's `compress`. */
  compress?: string
}

export type PlanEvent = { event: 'scanning', files: number, bytes: number }

export interface PlanResult {
  work: string
  shards: Array<{ shard: number, entries: number, files: number, bytes: number }>
  files: number
  bytes: number
}

/**
 * `packer plan`: walks SOURCE (a directory, a file, or `s3://BUCKET/PREFIX`) once and cuts it into shards that
 * `packShard` packs, on any machines, then `join`.
 */
export async function plan (source: string, options: PlanOptions): Promise<PlanResult> {
  if (isS3Url(options.output)) {
    throw new PackerError('USAGE', `${options.output}: a plan's shards write their CARs into one shared directory (the join moves some of them); give a directory, and copy the joined set to S3`, { subject: options.output })
  }
  const warn = options.onWarning ?? (() => {})
  const encryption = await setEncryptionOf(options, warn)
  const passphrase = options.passphrase === undefined ? undefined : await passphraseText(options.passphrase)
  const shardBytes = options.shardSize === undefined ? undefined : typeof options.shardSize === 'string' ? parseSize(options.shardSize, '--shard-size') : options.shardSize
  const tree = await openSource(source, s3SettingsOf(options))
  const p = await makePlan({
    source: tree,
    out: options.output,
    work: options.work,
    binSize: options.binSize === undefined ? DEFAULT_BIN_SIZE : binSizeOf(options.binSize),
    shards: options.shards,
    shardBytes,
    encryption,
    compress: compressionOf(options.compress, encryption !== null, warn),
    passphrase,
    warn,
    progress: (files, bytes) => options.onEvent?.({ event: 'scanning', files, bytes }),
  }).finally(async () => await tree.close())
  return {
    work: options.work,
    shards: p.shards.map((s, shard) => ({ shard, ...s })),
    files: p.shards.reduce((n, s) => n + s.files, 0),
    bytes: p.shards.reduce((n, s) => n + s.bytes, 0),
  }
}

export interface ShardOptions extends Callbacks<PackEvent> {
  /** The shard's index, or 'auto': from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX. */
  shard: number | 'auto'
  onChange?: 'retry' | 'fail' | 'skip'
  jobs?: number | string
}

export interface ShardResult {
  shard: number
  /** This run's id, or the committed run's when there was nothing to do. */
  run: string
  nothingToDo: boolean
  /** Another run of the same shard committed first: this run's CARs were removed. */
  lost: boolean
  files: number
  bytes: number
  cars: number
  seconds: number
}

/** `packer pack --plan WORK --shard I`: packs one shard of a plan; safe to retry, and to run twice at once. */
export async function packShard (work: string, options: ShardOptions): Promise<ShardResult> {
  const shard = options.shard === 'auto' ? shardFromEnvironment() : options.shard
  const started = Date.now()
  const r = await runShard({
    work,
    shard,
    onChange: options.onChange,
    jobs: options.jobs === undefined ? undefined : jobsOf(options.jobs),
    warn: options.onWarning ?? (() => {}),
    progress: packProgress(options.onEvent ?? (() => {})),
  })
  return { shard, run: r.run, nothingToDo: r.nothingToDo, lost: r.lost, files: r.files, bytes: r.bytes, cars: r.cars.length, seconds: (Date.now() - started) / 1000 }
}

export type JoinEvent = PackEvent | { event: 'moving', bytes: number }

export interface JoinResult {
  nothingToDo: boolean
  root: string
  setId: string
  pieces: PieceInfo[]
  /** Shards' partly filled last CARs whose blocks went into full CARs, and their bytes. */
  movedCars: number
  movedBytes: number
  /** Files and directories the join removed (from OUTDIR and WORK). */
  removed: string[]
  seconds: number
}

/** `packer join WORK`: makes one ordinary set of the committed shards, without reading source data again. */
export async function join (work: string, options: Callbacks<JoinEvent> = {}): Promise<JoinResult> {
  const started = Date.now()
  const emit = options.onEvent ?? (() => {})
  const progress = packProgress(emit)
  const r = await joinShards({
    work,
    warn: options.onWarning ?? (() => {}),
    progress: (e) => { if (e.type === 'moving') emit({ event: 'moving', bytes: e.bytes }); else progress(e) },
  })
  return {
    nothingToDo: r.nothingToDo,
    root: r.manifest.root,
    setId: r.manifest.table.cid,
    pieces: pieceInfo(r.manifest),
    movedCars: r.movedCars,
    movedBytes: r.movedBytes,
    removed: r.removed,
    seconds: (Date.now() - started) / 1000,
  }
}

/** `packer status WORK`: each shard committed, running (its heartbeat is fresh), dead or pending. */
export async function status (work: string): Promise<WorkStatus> {
  return await workStatus(work)
}
