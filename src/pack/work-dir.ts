import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { decodePath, encodePath } from '../format/stored-path.js'
import type { SourceEntry, SourceRun } from '../source/walk.js'
import type { SourceSpec, TreeSource } from '../source/tree-source.js'
import { Appender, readLines } from '../spill/lines.js'

/**
 * WORK, the private directory of a set packed on many machines (docs/FORMAT.md §9, README "Packing on many machines").
 * It holds what must never reach storage providers — the plan names files, shard results hold file keys — on storage
 * every machine shares (NFS, EFS, Lustre):
 *
 *   plan.json                         what every shard needs: source, OUTDIR, bin size, encryption, the shards' totals
 *   shards/<i>/entries.jsonl          shard i's part of the source, in table order (its list of directories and entries)
 *   shards/<i>/runs/<run>/            a run of shard i: heartbeat.json, its pack journal (pack.journal, pack.blocks)
 *   shards/<i>/done                   created exclusively by the run that committed shard i: its run id
 *   join/                             the join's own journal and temporary files
 *   joined.json                       after the join: the set it made
 */
export const PLAN_FILE = 'plan.json'
const PLAN_VERSION = 1

/** How a planned set is encrypted: what every shard needs, and the join to seal the table index. */
export type PlannedEncryption =
  | null
  | { names: 'hidden' | 'plain', recipients: string[], kinds: string[], fingerprint: string }
  /** Passphrase sets: files go to the set's own key; the table index's age file key and header are made at plan time. */
  | { names: 'hidden' | 'plain', passphrase: { setIdentity: string, indexKey: string, indexHeader: string } }

export interface ShardTotals { entries: number, files: number, bytes: number }

export interface Plan {
  plan: 'packer-plan'
  version: number
  /** Random: shard results of another plan are never mixed in. */
  id: string
  /** The source (a path, or `s3://BUCKET/PREFIX`), as TreeSource.spec says it. */
  source: string
  /** An S3 source's store and mtime rule (SourceSpec.s3). */
  s3?: SourceSpec['s3']
  out: string
  binSize: number
  single: boolean
  encryption: PlannedEncryption
  /** How files are compressed: 'off', 'auto' or 'zstd:LEVEL'. */
  compress: string
  shards: ShardTotals[]
  createdBy: string
}

export class WorkDir {
  readonly dir: string
  constructor (dir: string) { this.dir = path.resolve(dir) }

  get planFile (): string { return path.join(this.dir, PLAN_FILE) }
  get joined (): string { return path.join(this.dir, 'joined.json') }
  get joinDir (): string { return path.join(this.dir, 'join') }
  shardDir (i: number): string { return path.join(this.dir, 'shards', String(i)) }
  entries (i: number): string { return path.join(this.shardDir(i), 'entries.jsonl') }
  done (i: number): string { return path.join(this.shardDir(i), 'done') }
  runsDir (i: number): string { return path.join(this.shardDir(i), 'runs') }
  runDir (i: number, run: string): string { return path.join(this.runsDir(i), run) }

  async readPlan (): Promise<Plan> {
    let text: string
    try {
      text = await fs.readFile(this.planFile, 'utf8')
    } catch (err) {
      if (isErrno(err, 'ENOENT')) {
        const joined = await fs.access(this.joined).then(() => true, () => false)
        throw new PackerError('USAGE', joined
          ? `${this.dir} holds a set already joined (see ${this.joined}); make a new plan to pack again`
          : `${this.planFile} not found: ${this.dir} is not a packer work directory (make one with 'packer plan')`, { subject: this.dir })
      }
      throw err
    }
    let p: Plan
    try { p = JSON.parse(text) } catch { throw new PackerError('FORMAT', `${this.planFile} is not valid JSON; make the plan again`, { subject: this.planFile }) }
    if (p?.plan !== 'packer-plan') throw new PackerError('FORMAT', `${this.planFile} is not a packer plan`, { subject: this.planFile })
    if (p.version !== PLAN_VERSION) throw new PackerError('FORMAT', `${this.planFile} is plan version ${String(p.version)}, which this packer does not know; use the packer that made it`, { subject: this.planFile })
    return p
  }

  async writePlan (p: Plan): Promise<void> {
    const tmp = `${this.planFile}.tmp`
    await fs.writeFile(tmp, JSON.stringify(p, null, 2) + '\n', { mode: 0o600 })
    await fs.rename(tmp, this.planFile)
  }
}

export function newPlan (o: Omit<Plan, 'plan' | 'version' | 'id'>): Plan {
  return { plan: 'packer-plan', version: PLAN_VERSION, id: crypto.randomBytes(8).toString('hex'), ...o }
}

/** A run's id: unique across machines and retries. */
export function newRunId (): string {
  return `${os.hostname().replace(/[^A-Za-z0-9-]/g, '_').slice(0, 40)}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`
}

/** An entry of a shard's list: its path and what the walk saw (the shard checks the file still is so). */
function entryLine (e: SourceEntry): string {
  const s = e.stat
  const o: Record<string, unknown> = { ...encodePath(e.path), t: e.type, s: [s.dev.toString(), s.ino.toString(), s.size.toString(), s.mtimeNs.toString(), s.mode.toString(), s.uid.toString(), s.gid.toString()] }
  if (e.version !== undefined) o.v = e.version
  if (e.target !== undefined) o.target = e.target.toString('base64')
  return JSON.stringify(o) + '\n'
}

/** Writes a shard's list: its directories (each once, empty ones too) and entries, in table order. */
export class ShardListWriter {
  readonly #out: Appender
  #dir: Buffer | null = null
  constructor (file: string) { this.#out = new Appender(file) }

  async add (run: SourceRun): Promise<void> {
    if (this.#dir === null || !this.#dir.equals(run.dir)) {
      await this.#out.write(JSON.stringify({ dir: encodePath(run.dir) }) + '\n')
      this.#dir = run.dir
    }
    for (const e of run.entries) await this.#out.write(entryLine(e))
  }

  async close (): Promise<void> { await this.#out.close() }
}

const RUN = 256

/** A shard's list as the runs a walk of `source` would give. */
export async function * readShardList (file: string, source: TreeSource, single: boolean): AsyncGenerator<SourceRun> {
  const where = `shard list ${file}`
  let dir: Buffer = Buffer.alloc(0)
  let entries: SourceEntry[] = []
  let started = false
  for await (const line of readLines(file)) {
    if (line === '') continue
    const o = JSON.parse(line)
    if (o.dir !== undefined) {
      if (started) yield { dir, entries }
      started = true
      dir = o.dir.path === '' ? Buffer.alloc(0) : decodePath(o.dir, where)
      entries = []
      continue
    }
    const p = decodePath(o, where)
    const [dev, ino, size, mtimeNs, mode, uid, gid] = (o.s as string[]).map(BigInt)
    entries.push({
      path: p,
      abs: source.locate(p, single),
      type: o.t,
      stat: { dev: dev!, ino: ino!, size: size!, mtimeNs: mtimeNs!, mode: mode!, uid: uid!, gid: gid! },
      version: typeof o.v === 'string' ? o.v : undefined,
      target: typeof o.target === 'string' ? Buffer.from(o.target, 'base64') : undefined,
    })
    if (entries.length === RUN) { yield { dir, entries }; entries = [] }
  }
  if (started) yield { dir, entries }
}
