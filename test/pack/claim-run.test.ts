import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { claimRun, isAlive, readHeartbeat, type Heartbeat } from '../../src/pack/shard.js'
import { WorkDir, newRunId } from '../../src/pack/work-dir.js'
import { tmpDir } from '../helpers.js'

const beatOf = (run: string, pid = process.pid, updated = Date.now()): Heartbeat =>
  ({ run, host: os.hostname(), pid, started: updated, updated, files: 0, bytes: 0, cars: 0 })

/** Run ids as newRunId makes them, distinct within this process. */
const runIds = (n: number): string[] => Array.from({ length: n }, (_, i) => `${newRunId()}-${i}`)

describe('claiming a shard run dir while other runs of the same shard claim theirs', () => {
  it('runs that start at once each get their own dir, with their own heartbeat in it', async () => {
    const work = new WorkDir(tmpDir())
    const out = tmpDir()
    const beats = runIds(12).map((run) => beatOf(run))
    const dirs = await Promise.all(beats.map(async (b) => await claimRun(work, 0, b, out)))
    expect(new Set(dirs).size).toBe(beats.length)
    for (const [i, dir] of dirs.entries()) {
      expect(path.basename(dir)).toBe(beats[i]!.run)
      expect((await readHeartbeat(dir))?.run).toBe(beats[i]!.run)
    }
    expect(fs.readdirSync(work.runsDir(0)).sort()).toEqual(beats.map((b) => b.run).sort())
  })

  it("a dead run's dir is taken over by exactly one of the runs that start at once; its partial CARs go", async () => {
    const work = new WorkDir(tmpDir())
    const out = tmpDir()
    const dead = 'gone-host-1-00000000'
    const deadDir = work.runDir(0, dead)
    fs.mkdirSync(deadDir, { recursive: true })
    fs.writeFileSync(path.join(deadDir, 'heartbeat.json'), JSON.stringify(beatOf(dead, 1, Date.now() - 3_600_000)))
    fs.writeFileSync(path.join(deadDir, 'pack.journal'), 'the dead run\'s journal\n')
    fs.writeFileSync(path.join(out, `.partial-s0-${dead}-3.car`), 'part of a CAR')
    expect(isAlive(await readHeartbeat(deadDir))).toBe(false)
    const beats = runIds(8).map((run) => beatOf(run))
    const dirs = await Promise.all(beats.map(async (b) => await claimRun(work, 0, b, out)))
    const heirs = dirs.filter((d) => fs.existsSync(path.join(d, 'pack.journal')))
    expect(heirs).toHaveLength(1)
    for (const [i, dir] of dirs.entries()) expect((await readHeartbeat(dir))?.run).toBe(beats[i]!.run)
    expect(fs.existsSync(deadDir)).toBe(false)
    expect(fs.readdirSync(out)).toEqual([])
  })
})
