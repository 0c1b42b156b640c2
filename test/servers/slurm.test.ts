import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, run, tmpDir } from '../helpers.js'
import { clusterPids, startSlurm, type JobTask, type SlurmCluster } from './slurm.js'

const JOB_TIMEOUT_MS = 30_000

/** A task's record reduced to what these tests compare. */
const outcome = (t: JobTask): { taskId: number | null, state: string, exitCode: number, signal: number } =>
  ({ taskId: t.taskId, state: t.state, exitCode: t.exitCode, signal: t.signal })

/** Whether a process exists and is not a zombie (a zombie runs nothing; init reaps it). */
function alive (pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'))
  } catch {
    return false
  }
}

/** A process's command name; '' once it has exited (a job's short-lived processes may, between listing and reading). */
function comm (pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

function isListening (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** Listening TCP and UDP sockets (`ss -ltnup`): local address and owning pids. */
async function listeners (): Promise<Array<{ local: string, pids: number[] }>> {
  const r = await run('ss', ['-H', '-ltnup'])
  expect(r.code).toBe(0)
  return r.stdout.split('\n').filter(Boolean).map((line) => ({
    local: line.trim().split(/\s+/)[4],
    pids: [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])),
  }))
}

async function waitFor (what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('a single-node Slurm cluster (test/servers/slurm.ts)', () => {
  let cluster: SlurmCluster
  beforeAll(async () => { cluster = await startSlurm() })
  afterAll(async () => { await cluster?.stop() })

  it('runs every task of an array job once, with its index, the environment it was submitted from and our node', async () => {
    const shared = tmpDir()
    const task = path.join(shared, 'task.mjs')
    fs.writeFileSync(task, `import fs from 'node:fs'
const e = process.env
fs.writeFileSync(process.argv[2] + '/task-' + e.SLURM_ARRAY_TASK_ID + '.json', JSON.stringify({
  task: e.SLURM_ARRAY_TASK_ID, count: e.SLURM_ARRAY_TASK_COUNT, arrayJob: e.SLURM_ARRAY_JOB_ID,
  cluster: e.SLURM_CLUSTER_NAME, mark: e.PACKER_TEST_MARK, node: process.execPath }))
`)
    const mark = `mark-${process.pid}-${Date.now()}`
    const id = await cluster.sbatch(['--array=0-3'], `#!/bin/sh\nexec node ${task} ${shared}\n`, { env: { PACKER_TEST_MARK: mark } })
    const tasks = await cluster.waitJob(id, JOB_TIMEOUT_MS)
    expect(tasks.map(outcome)).toEqual([0, 1, 2, 3].map((i) => ({ taskId: i, state: 'COMPLETED', exitCode: 0, signal: 0 })))
    expect(fs.readdirSync(shared).filter((n) => n.endsWith('.json')).sort()).toEqual(['task-0.json', 'task-1.json', 'task-2.json', 'task-3.json'])
    for (const i of [0, 1, 2, 3]) {
      expect(JSON.parse(fs.readFileSync(path.join(shared, `task-${i}.json`), 'utf8'))).toEqual({
        task: String(i), count: '4', arrayJob: String(id), cluster: cluster.name, mark, node: process.execPath,
      })
    }
  })

  it('reports a task that exits 3 as FAILED with code 3, one killed by SIGKILL with signal 9, the others COMPLETED', async () => {
    const id = await cluster.sbatch(['--array=0-3'], `#!/bin/sh
case "$SLURM_ARRAY_TASK_ID" in
  1) exit 3 ;;
  2) kill -KILL $$ ;;
esac
exit 0
`)
    expect((await cluster.waitJob(id, JOB_TIMEOUT_MS)).map(outcome)).toEqual([
      { taskId: 0, state: 'COMPLETED', exitCode: 0, signal: 0 },
      { taskId: 1, state: 'FAILED', exitCode: 3, signal: 0 },
      { taskId: 2, state: 'FAILED', exitCode: 0, signal: 9 },
      { taskId: 3, state: 'COMPLETED', exitCode: 0, signal: 0 },
    ])
  })

  it('listens on 127.0.0.1 only, daemons and a running job step alike', async () => {
    const shared = tmpDir()
    const id = await cluster.sbatch([], `#!/bin/sh
touch ${shared}/started
while [ ! -e ${shared}/release ]; do sleep 0.1; done
`)
    await waitFor('the job to start', () => fs.existsSync(path.join(shared, 'started')), JOB_TIMEOUT_MS)
    const pids = cluster.pids()
    expect(pids.map(comm)).toEqual(expect.arrayContaining(['munged', 'slurmctld', 'slurmd', 'slurmstepd']))
    const ours = (await listeners()).filter((l) => l.pids.some((pid) => pids.includes(pid)))
    expect(ours.map((l) => l.local).sort()).toEqual([`127.0.0.1:${cluster.ports.slurmctld}`, `127.0.0.1:${cluster.ports.slurmd}`].sort())
    fs.writeFileSync(path.join(shared, 'release'), '')
    expect((await cluster.waitJob(id, JOB_TIMEOUT_MS)).map(outcome)).toEqual([{ taskId: null, state: 'COMPLETED', exitCode: 0, signal: 0 }])
  })

  it('runs deploy/slurm/pack-array.sbatch as an array: `pack --plan WORK --shard auto` per task, with its resources', async () => {
    // A stub stands in for packer (PACKER): it records its arguments and environment (test/pack/shards.test.ts runs
    // the same script with packer itself).
    const shared = tmpDir()
    const stub = path.join(shared, 'packer-stub')
    fs.writeFileSync(stub, `#!/bin/sh
printf '%s\\n' "$@" "cpus=$SLURM_CPUS_PER_TASK" "mem=$SLURM_MEM_PER_NODE" >${shared}/args-$SLURM_ARRAY_TASK_ID
echo "stub packed shard $SLURM_ARRAY_TASK_ID"
[ "$SLURM_ARRAY_TASK_ID" = 1 ] && exit 5
exit 0
`, { mode: 0o755 })
    const work = path.join(shared, 'work dir')
    const script = fs.readFileSync(path.join(ROOT, 'deploy/slurm/pack-array.sbatch'), 'utf8')
    const id = await cluster.sbatch(['--array=0-1'], script, { env: { PACKER: stub }, scriptArgs: [work] })
    const tasks = await cluster.waitJob(id, JOB_TIMEOUT_MS)
    expect(tasks.map(outcome)).toEqual([
      { taskId: 0, state: 'COMPLETED', exitCode: 0, signal: 0 },
      { taskId: 1, state: 'FAILED', exitCode: 5, signal: 0 },
    ])
    for (const i of [0, 1]) {
      expect(fs.readFileSync(path.join(shared, `args-${i}`), 'utf8').split('\n'))
        .toEqual(['pack', '--plan', work, '--shard', 'auto', '--jobs', '2', 'cpus=2', 'mem=2048', ''])
      expect(tasks[i].stdout).toBe(path.join(cluster.dir, 'jobs', `packer-pack-${id}_${i}.out`))
      expect(fs.readFileSync(tasks[i].stdout, 'utf8')).toBe(`stub packed shard ${i}\n`)
    }
  })

  it('runs a second cluster beside it, with its own name, ports and directory; stopping one leaves the other', async () => {
    const other = await startSlurm()
    try {
      expect(other.name).not.toBe(cluster.name)
      expect(other.dir).not.toBe(cluster.dir)
      expect([other.ports.slurmctld, other.ports.slurmd]).not.toContain(cluster.ports.slurmctld)
      expect([other.ports.slurmctld, other.ports.slurmd]).not.toContain(cluster.ports.slurmd)
      const shared = tmpDir()
      const script = `#!/bin/sh\necho "$SLURM_CLUSTER_NAME" >${shared}/"$SLURM_CLUSTER_NAME"\n`
      const [a, b] = await Promise.all([cluster.sbatch([], script), other.sbatch([], script)])
      const [ta, tb] = await Promise.all([cluster.waitJob(a, JOB_TIMEOUT_MS), other.waitJob(b, JOB_TIMEOUT_MS)])
      expect([...ta, ...tb].map((t) => t.state)).toEqual(['COMPLETED', 'COMPLETED'])
      expect(fs.readdirSync(shared).sort()).toEqual([cluster.name, other.name].sort())
    } finally {
      await other.stop()
    }
    expect(other.pids()).toEqual([])
    const sinfo = spawnSync('sinfo', ['--noheader', '--format=%t'], { env: cluster.clientEnv(), encoding: 'utf8' })
    expect(sinfo.stdout.trim()).toBe('idle')
  })

  it('leaves nothing behind when the test process dies without stop(): killed (watchdog) or exiting (exit hook)', async () => {
    // The child imports slurm.ts compiled to JavaScript (it imports only node: modules).
    const dir = tmpDir()
    const source = fs.readFileSync(path.join(ROOT, 'test/servers/slurm.ts'), 'utf8')
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } })
    fs.writeFileSync(path.join(dir, 'slurm.mjs'), js.outputText)
    fs.copyFileSync(path.join(ROOT, 'test/servers/slurm-namespace.sh'), path.join(dir, 'slurm-namespace.sh')) // beside it, as it expects
    // It starts a cluster and a job, and says so once the job's process runs.
    fs.writeFileSync(path.join(dir, 'child.mjs'), `import fs from 'node:fs'
import { startSlurm } from ${JSON.stringify(pathToFileURL(path.join(dir, 'slurm.mjs')).href)}
const c = await startSlurm()
await c.sbatch([], '#!/bin/sh\\nsleep 300\\n')
const comm = (pid) => { try { return fs.readFileSync('/proc/' + pid + '/comm', 'utf8').trim() } catch { return '' } }
while (!c.pids().some((pid) => comm(pid) === 'sleep')) await new Promise((resolve) => setTimeout(resolve, 50))
console.log(JSON.stringify({ name: c.name, dir: c.dir }))
if (process.argv[2] === 'exit') process.exit(0)
setInterval(() => {}, 1000)
`)
    for (const mode of ['kill', 'exit']) {
      const child = spawn(process.execPath, [path.join(dir, 'child.mjs'), mode], { stdio: ['ignore', 'pipe', 'inherit'] })
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (d) => { out += d; if (out.includes('\n')) resolve(out) })
        child.once('exit', (code) => reject(new Error(`child (${mode}) exited ${code} before starting its cluster`)))
      })
      const { name, dir: clusterDir } = JSON.parse(line) as { name: string, dir: string }
      if (mode === 'kill') child.kill('SIGKILL')
      await new Promise((resolve) => child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve))
      await waitFor(`cluster ${name} (${mode}) to be cleaned up`, () => clusterPids(name).length === 0 && !fs.existsSync(clusterDir), 10_000)
    }
  })

  it('stop() kills every process it started, running jobs too, closes its ports and removes its files; twice is fine', async () => {
    const shared = tmpDir()
    await cluster.sbatch([], `#!/bin/sh\ntouch ${shared}/started\nsleep 300\n`)
    await waitFor('the job to start', () => fs.existsSync(path.join(shared, 'started')), JOB_TIMEOUT_MS)
    // The job's shell may not have started its sleep yet when the file appears (seen at load 15).
    let pids: number[] = []
    await waitFor('the job\'s sleep to start', () => { pids = cluster.pids(); return pids.map(comm).includes('sleep') }, JOB_TIMEOUT_MS)
    expect(pids.map(comm)).toContain('sleep')
    await cluster.stop()
    await cluster.stop()
    expect(cluster.pids()).toEqual([])
    await waitFor('killed processes to be reaped', () => !pids.some(alive), 5_000)
    expect(await isListening(cluster.ports.slurmctld)).toBe(false)
    expect(await isListening(cluster.ports.slurmd)).toBe(false)
    const ports = [cluster.ports.slurmctld, cluster.ports.slurmd].map((p) => `:${p}`)
    expect((await listeners()).filter((l) => ports.some((p) => l.local.endsWith(p)) || l.pids.some((pid) => pids.includes(pid)))).toEqual([])
    expect(fs.existsSync(cluster.dir)).toBe(false)
  })
})
