import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { processAlive } from '../process-alive.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { dirCarSink } from '../car/dir-sink.js'
import type { CarRecord } from '../format/manifest.js'
import { defaultJobs } from './leaf-workers.js'
import { PackJournal, sameArgs } from './journal.js'
import { keepCompleteCars } from './car-check.js'
import { packFiles, type OnChange, type PackEvent } from './files.js'
import { noSpaceError } from './packer.js'
import { dirOutput } from './dir-output.js'
import { openSourceSpec } from './locations.js'
import { plannedSetEncryption } from './set-encryption.js'
import { compressionOf } from './compress.js'
import { WorkDir, newRunId, readShardList, type Plan } from './work-dir.js'
import { faultPoint } from '../fault.js'

/** A run whose heartbeat is older than this is dead (its machine is gone, or it was killed). */
export const STALE_MS = 60_000
const HEARTBEAT_MS = 5_000

export interface ShardOptions {
  work: string
  /** The shard's index, 0 … shards-1. */
  shard: number
  onChange?: OnChange
  jobs?: number
  warn: (msg: string) => void
  progress?: (event: PackEvent) => void
}

export interface ShardResult {
  shard: number
  run: string
  /** True when the shard was already committed (by this run's predecessor or another run): nothing was done. */
  nothingToDo: boolean
  /** True when another run committed it first while this one ran: this run's CARs were removed. */
  lost: boolean
  files: number
  bytes: number
  cars: CarRecord[]
  resumed: { cars: number, files: number } | null
  skipped: Array<{ path: string, reason: string }>
}

/** What a run says of itself while it runs: `packer status` tells running from dead by it. */
export interface Heartbeat { run: string, host: string, pid: number, started: number, updated: number, files: number, bytes: number, cars: number }

/** The shard index `--shard auto` means: from the scheduler's array index variable. */
export function shardFromEnvironment (env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ['JOB_COMPLETION_INDEX', 'SLURM_ARRAY_TASK_ID', 'AWS_BATCH_JOB_ARRAY_INDEX']) {
    const v = env[name]
    if (v === undefined || v === '') continue
    if (!/^\d+$/.test(v)) throw new PackerError('USAGE', `--shard auto: ${name} is ${JSON.stringify(v)}, not a shard index`)
    return Number(v)
  }
  throw new PackerError('USAGE', '--shard auto: none of JOB_COMPLETION_INDEX (Kubernetes Indexed Job), SLURM_ARRAY_TASK_ID (Slurm array) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) is set; give --shard I')
}

export async function readHeartbeat (runDir: string): Promise<Heartbeat | null> {
  try { return JSON.parse(await fs.readFile(path.join(runDir, 'heartbeat.json'), 'utf8')) } catch { return null }
}

/** A run is alive while its heartbeat is fresh (and, on this host, its process exists). */
export function isAlive (h: Heartbeat | null, now = Date.now()): boolean {
  if (h === null) return false
  if (h.host === os.hostname() && !processAlive(h.pid)) return false
  return now - h.updated < STALE_MS
}

const partialPrefix = (shard: number, run: string): string => `.partial-s${shard}-${run}-`

/** Where a new run's dir is made before its first heartbeat is in it: other runs ignore dot names. */
const newRunPrefix = '.new-'

/** Writes a run's heartbeat into DIR, atomically (readers never see half of one). */
async function writeHeartbeat (dir: string, beat: Heartbeat): Promise<void> {
  beat.updated = Date.now()
  const tmp = path.join(dir, `.heartbeat.${process.pid}.tmp`)
  await fs.writeFile(tmp, JSON.stringify(beat) + '\n')
  await fs.rename(tmp, path.join(dir, 'heartbeat.json'))
}

/**
 * The run dir this run works in: a dead run's, taken over (renamed to this run's id: a rename is atomic, so two
 * retries never take the same one) so its complete CARs are kept; else a new one. Runs still alive are left alone:
 * a shard may run twice at once, and the first to commit wins. A run dir never shows under a run's name without a
 * fresh heartbeat in it, or a concurrent claim would take it for a dead one: a dead run's gets this run's heartbeat
 * before it is renamed, a new one is made under a dot name first.
 */
export async function claimRun (work: WorkDir, shard: number, beat: Heartbeat, out: string): Promise<string> {
  const runs = work.runsDir(shard)
  await fs.mkdir(runs, { recursive: true, mode: 0o700 })
  const dir = work.runDir(shard, beat.run)
  for (const old of await fs.readdir(runs)) {
    if (old.startsWith('.') || isAlive(await readHeartbeat(path.join(runs, old)))) continue
    try {
      await writeHeartbeat(path.join(runs, old), beat)
      await fs.rename(path.join(runs, old), dir)
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTEMPTY') || isErrno(err, 'EEXIST')) continue // another retry took it
      throw err
    }
    await writeHeartbeat(dir, beat) // another claimant's may have landed in it before the rename
    // The dead run's CARs in progress can never be finished.
    for (const n of await fs.readdir(out)) if (n.startsWith(partialPrefix(shard, old))) await fs.rm(path.join(out, n), { force: true })
    return dir
  }
  const fresh = path.join(runs, newRunPrefix + beat.run)
  await fs.mkdir(fresh, { mode: 0o700 })
  await writeHeartbeat(fresh, beat)
  await fs.rename(fresh, dir)
  return dir
}

/**
 * `packer pack --plan WORK --shard I`: packs shard I of a plan into the plan's OUTDIR, which other shards share: this
 * run touches only its own files there (its partial CARs carry its run id). Its journal lives in WORK, so a retry on
 * another machine continues it. When done, it commits by creating WORK/shards/I/done exclusively; a run that finds it
 * taken removes the CARs it made (those the winner does not also list) and its run dir. CARs of killed runs that
 * nothing lists are removed by the join.
 */
export async function packShard (o: ShardOptions): Promise<ShardResult> {
  const work = new WorkDir(o.work)
  const plan = await work.readPlan()
  if (!Number.isSafeInteger(o.shard) || o.shard < 0 || o.shard >= plan.shards.length) {
    throw new PackerError('USAGE', `shard ${o.shard} is not in the plan of ${work.dir}: it has shards 0 to ${plan.shards.length - 1}`)
  }
  const none = { files: 0, bytes: 0, cars: [], resumed: null, skipped: [] }
  const winner = await fs.readFile(work.done(o.shard), 'utf8').catch(() => null)
  if (winner !== null) return { shard: o.shard, run: winner.trim(), nothingToDo: true, lost: false, ...none }
  const run = newRunId()
  const started = Date.now()
  const beat: Heartbeat = { run, host: os.hostname(), pid: process.pid, started, updated: started, files: 0, bytes: 0, cars: 0 }
  const dir = await claimRun(work, o.shard, beat, plan.out)
  const writeBeat = async (): Promise<void> => { await writeHeartbeat(dir, beat) }
  const timer = setInterval(() => { writeBeat().catch(() => {}) }, HEARTBEAT_MS)
  timer.unref()
  try {
    return await runShard(o, plan, work, dir, run, beat, writeBeat)
  } finally {
    clearInterval(timer)
  }
}

async function runShard (o: ShardOptions, plan: Plan, work: WorkDir, dir: string, run: string, beat: Heartbeat, writeBeat: () => Promise<void>): Promise<ShardResult> {
  const enc = plannedSetEncryption(plan.encryption)
  const args = { source: plan.source, binSize: plan.binSize, encryption: enc?.fingerprint ?? 'none', names: enc ? enc.names : 'clear' as const, compress: plan.compress }
  const journal = await PackJournal.at(path.join(dir, 'pack'))
  let state = await journal.load()
  if (state !== null && !sameArgs(state.header, args)) state = null // another plan's: ignore
  const kept = state ? await keepCompleteCars(dirOutput(plan.out), state, async (n) => await journal.record(n)) : 0
  await journal.open({ out: plan.out, ...args, setIdentity: enc?.setIdentity }, state ?? undefined, kept)
  const keptCars = state ? state.cars.slice(0, kept) : []
  const mine: string[] = []
  const writer = new CarSetWriter({
    sink: dirCarSink(plan.out, { partialName: (n) => `${partialPrefix(o.shard, run)}${n}.car` }),
    binSize: plan.binSize,
    onRecord: async (r) => { await journal.addRecord(r) },
    onCarDone: async (car, index) => {
      mine.push(car.file)
      faultPoint('car-done')
      await journal.addCar(car)
      faultPoint('car-journaled')
      beat.cars = index + 1
      await writeBeat() // status shows CARs as they are made
      o.progress?.({ type: 'car', car, index })
    },
  })
  if (kept > 0) await writer.resume(keptCars, journal.records())
  const totals = plan.shards[o.shard]!
  const source = await openSourceSpec(plan)
  try {
    o.progress?.({ type: 'scan', files: totals.files, bytes: totals.bytes, done: true })
    const packed = await packFiles({
      source,
      runs: readShardList(work.entries(o.shard), source, plan.single),
      writer,
      journal,
      enc,
      onChange: o.onChange ?? 'retry',
      jobs: Math.max(1, Math.floor(o.jobs ?? defaultJobs())),
      kept,
      compress: compressionOf(plan.compress, enc !== null, o.warn),
      tmpDir: journal.workDir,
      warn: o.warn,
      progress: (e) => {
        if (e.type === 'file') { beat.files++; beat.bytes += e.bytes }
        if (e.type !== 'scan') o.progress?.(e)
      },
    })
    const cars = await writer.finish()
    await journal.sync()
    await journal.close()
    faultPoint('shard-commit')
    const result: ShardResult = {
      shard: o.shard, run, nothingToDo: false, lost: false, files: packed.files, bytes: packed.bytes, cars,
      resumed: kept > 0 ? { cars: kept, files: packed.resumedFiles } : null, skipped: packed.skipped,
    }
    await fs.writeFile(path.join(dir, 'result.json'), JSON.stringify({ ...result, plan: plan.id }) + '\n', { mode: 0o600 })
    if (await commit(work, o.shard, run)) return result
    // Another run of this shard committed first: its CARs are the shard's; ours go (but any it lists too: identical
    // bytes under the same name, as an unencrypted shard makes).
    const winner = (await fs.readFile(work.done(o.shard), 'utf8')).trim()
    const theirs = new Set(((await readResult(work, o.shard, winner))?.cars ?? []).map((c) => c.file))
    for (const f of [...keptCars.map((c) => c.file), ...mine]) if (!theirs.has(f)) await fs.rm(path.join(plan.out, f), { force: true })
    await fs.rm(dir, { recursive: true, force: true })
    return { ...result, lost: true }
  } catch (err) {
    await writer.abort()
    await journal.close()
    if (isErrno(err, 'ENOSPC')) throw noSpaceError(plan.out, totals.bytes, err)
    throw err
  } finally {
    await source.close()
  }
}

/** Commits a run: the exclusive creation of the shard's done marker. False when another run holds it. */
async function commit (work: WorkDir, shard: number, run: string): Promise<boolean> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(work.done(shard), 'wx', 0o600)
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false
    throw err
  }
  try {
    await fh.writeFile(run + '\n')
    await fh.datasync()
  } finally {
    await fh.close()
  }
  return true
}

/** A committed run's result.json, or null. */
export async function readResult (work: WorkDir, shard: number, run: string): Promise<(ShardResult & { plan: string }) | null> {
  try { return JSON.parse(await fs.readFile(path.join(work.runDir(shard, run), 'result.json'), 'utf8')) } catch { return null }
}
