import fs from 'node:fs/promises'
import path from 'node:path'
import { isAlive, readHeartbeat, readResult } from './shard.js'
import { WorkDir } from './work-dir.js'

export type ShardState = 'committed' | 'running' | 'dead' | 'pending'

export interface ShardStatus {
  shard: number
  state: ShardState
  /** The committed run, or the runs seen (running or dead). */
  runs: Array<{ run: string, host: string, pid: number, alive: boolean, updated: number, files: number, bytes: number, cars: number }>
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
  cars: number
}

export interface WorkStatus {
  work: string
  /** Set when the shards were joined: the set's ID and where it is. */
  joined: { setId: string, out: string } | null
  shards: ShardStatus[]
}

/**
 * `packer status WORK`: each shard committed (with its files, bytes and CARs), running (a run's heartbeat is fresh),
 * dead (only runs whose heartbeat stopped: a retry takes over their work) or pending (never started).
 */
export async function workStatus (dir: string): Promise<WorkStatus> {
  const work = new WorkDir(dir)
  const joined = await fs.readFile(work.joined, 'utf8').then((t) => JSON.parse(t), () => null)
  if (joined !== null) return { work: work.dir, joined: { setId: joined.setId, out: joined.out }, shards: [] }
  const plan = await work.readPlan()
  const now = Date.now()
  const shards: ShardStatus[] = []
  for (const [i, totals] of plan.shards.entries()) {
    const s: ShardStatus = { shard: i, state: 'pending', runs: [], files: 0, bytes: 0, totalFiles: totals.files, totalBytes: totals.bytes, cars: 0 }
    const winner = await fs.readFile(work.done(i), 'utf8').then((t) => t.trim(), () => null)
    if (winner !== null) {
      const r = await readResult(work, i, winner)
      Object.assign(s, { state: 'committed', files: r?.files ?? 0, bytes: r?.bytes ?? 0, cars: r?.cars.length ?? 0 })
      s.runs.push({ run: winner, host: '', pid: 0, alive: false, updated: 0, files: s.files, bytes: s.bytes, cars: s.cars })
      shards.push(s)
      continue
    }
    const runs = await fs.readdir(work.runsDir(i)).catch(() => [] as string[])
    for (const run of runs) {
      if (run.startsWith('.')) continue // a run dir being made
      const h = await readHeartbeat(path.join(work.runsDir(i), run))
      if (h === null) continue
      const alive = isAlive(h, now)
      s.runs.push({ run, host: h.host, pid: h.pid, alive, updated: h.updated, files: h.files, bytes: h.bytes, cars: h.cars })
    }
    const best = s.runs.reduce<ShardStatus['runs'][number] | null>((b, r) => (b === null || (r.alive && !b.alive) || (r.alive === b.alive && r.bytes > b.bytes) ? r : b), null)
    if (best !== null) Object.assign(s, { state: best.alive ? 'running' : 'dead', files: best.files, bytes: best.bytes, cars: best.cars })
    shards.push(s)
  }
  return { work: work.dir, joined: null, shards }
}
