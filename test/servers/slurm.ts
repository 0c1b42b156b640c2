import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

/**
 * A real single-node Slurm cluster (Debian's slurm-wlm and munge) for tests: munged, slurmctld and slurmd run as
 * the test's user (root in CI) in the foreground, on 127.0.0.1 only, from a private configuration in a temporary
 * directory; nothing under /etc is read or written. Each cluster has its own name, ports, munge key and socket, and
 * spool and state directories, so test files running side by side each start their own.
 *
 * Debugging: `PACKER_SLURM_KEEP=1` keeps the directory after stop(); its log/ holds munged.log, slurmctld.log and
 * slurmd.log, and a job's output defaults to jobs/slurm-JOB_TASK.out there (sbatch runs in jobs/).
 */
export interface SlurmCluster {
  /** ClusterName, unique to this cluster; Slurm gives every job step SLURM_CLUSTER_NAME=name. */
  name: string
  /** The cluster's temporary directory (slurm.conf, log/, jobs/ …). */
  dir: string
  /** Where the daemons listen, on 127.0.0.1. */
  ports: { slurmctld: number, slurmd: number }
  /**
   * Environment for Slurm clients (sbatch, squeue, scontrol) and for processes that call them: SLURM_CONF, and a
   * PATH that starts with the directory of the node running the tests, so jobs (which inherit it) run that node.
   * Merge it over a process environment stripped of Slurm variables (`clientEnv()` does both).
   */
  env: Record<string, string>
  /** process.env without variables of any Slurm job the tests may themselves run in, with `env` over it. */
  clientEnv: () => NodeJS.ProcessEnv
  /**
   * Submits `script` (a batch script's text) as `sbatch --parsable --export=ALL …args SCRIPT …scriptArgs` from jobs/,
   * in clientEnv() with `env` over it (the job inherits it); the job id.
   */
  sbatch: (args: string[], script: string, opts?: { env?: NodeJS.ProcessEnv, scriptArgs?: string[] }) => Promise<number>
  /**
   * Polls until every task of the job (every array task) has ended; their records, by task id. They come from
   * slurmctld (`scontrol show job`, kept an hour by MinJobAge): sacct needs an accounting database (slurmdbd), and
   * files the tasks write would miss tasks that never start, are cancelled, or are killed before writing.
   */
  waitJob: (jobId: number, timeoutMs: number) => Promise<JobTask[]>
  /** Live processes of this cluster: its daemons, job steps (slurmstepd) and the jobs' own processes. */
  pids: () => number[]
  /** Kills every process of this cluster and removes its directory; safe to call twice. */
  stop: () => Promise<void>
}

/** One task of a job as slurmctld records it (`scontrol show job`). */
export interface JobTask {
  jobId: number
  /** The array task index (SLURM_ARRAY_TASK_ID), null for a job that is not an array. */
  taskId: number | null
  /** COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL … */
  state: string
  /** Why it ended as it did, e.g. NonZeroExitCode. */
  reason: string
  /** The batch script's exit status, and the signal that killed it (0 if none). */
  exitCode: number
  signal: number
  /** The file its standard output went to. */
  stdout: string
}

const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000
const CLIENT_TIMEOUT_MS = 30_000
/** Set in the daemons' environment (slurmstepd inherits it from slurmd): how stop() finds them. */
const MARKER = 'PACKER_SLURM_CLUSTER'
const NAMESPACE_SCRIPT = fileURLToPath(new URL('./slurm-namespace.sh', import.meta.url))
const ENDED_STATES = new Set([
  'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED',
])

/** The daemons are in /usr/sbin, which a user's PATH may lack. */
function sbin (name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
    const candidate = path.join(dir || '.', name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  throw new Error(`${name} not found: install slurm-wlm and munge with: sudo bash scripts/setup-system.sh --tests`)
}

/** A port nothing listens on right now (slurmctld and slurmd take theirs from slurm.conf). */
async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** process.env without the variables of a Slurm job we may be running inside (they would steer sbatch and squeue). */
function withoutSlurm (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !/^(SLURM|SBATCH|SALLOC|SRUN|SQUEUE|SINFO)_/.test(k)))
}

/** This machine's node line as slurmd detects it (CPUs, sockets, cores, threads, RealMemory), renamed `localhost`. */
function nodeLine (): string {
  const r = spawnSync(sbin('slurmd'), ['-C'], { encoding: 'utf8', env: withoutSlurm(process.env) })
  const line = r.stdout?.split('\n').find((l) => l.startsWith('NodeName='))
  if (r.status !== 0 || line === undefined) throw new Error(`slurmd -C failed: ${r.stderr ?? r.error}`)
  return line.replace(/^NodeName=\S+/, 'NodeName=localhost NodeAddr=127.0.0.1')
}

function slurmConf (name: string, dir: string, ports: SlurmCluster['ports']): string {
  const at = (sub: string): string => path.join(dir, sub)
  return `# written by test/servers/slurm.ts
ClusterName=${name}
# "localhost" passes slurmctld's check that it runs on SlurmctldHost whatever the machine's hostname.
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${ports.slurmctld}
SlurmdPort=${ports.slurmd}
# Listen on the configured addresses (127.0.0.1), not on every address.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${at('run/munge.socket')}
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${at('state')}
SlurmdSpoolDir=${at('spool')}
SlurmctldPidFile=${at('run/slurmctld.pid')}
SlurmdPidFile=${at('run/slurmd.pid')}
SlurmctldLogFile=${at('log/slurmctld.log')}
SlurmdLogFile=${at('log/slurmd.log')}
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# No cgroups (none to delegate in a container): track a job's processes by parentage, bind no tasks to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# Start a job as soon as it is submitted or a CPU frees, not in batches up to 3 s later (batch_sched_delay).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
# Memory is a consumable resource (so --mem is checked), and a job that asks none gets 256 MiB a CPU, not the
# whole node, which would run array tasks one at a time.
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
# A node that comes back after a restart is usable at once.
ReturnToService=2
# Keep ended jobs' records an hour, for waitJob (the default, 300 s, could drop them during a slow test).
MinJobAge=3600
${nodeLine()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
`
}

/** The pids of live processes whose environment names cluster `name` (daemons by MARKER, job processes by Slurm's). */
export function clusterPids (name: string): number[] {
  const wanted = [`${MARKER}=${name}`, `SLURM_CLUSTER_NAME=${name}`]
  const out: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let environ: string
    try { environ = fs.readFileSync(`/proc/${entry}/environ`, 'latin1') } catch { continue } // gone meanwhile
    if (environ.split('\0').some((v) => wanted.includes(v))) out.push(Number(entry))
  }
  return out
}

/** SIGKILLs every process of the cluster until none is left (a job step may fork while we kill); synchronous. */
function killCluster (name: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4))
  for (let round = 0; round < 50; round++) {
    const pids = clusterPids(name)
    if (pids.length === 0) return
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch {} // already gone
    }
    Atomics.wait(pause, 0, 0, 20) // a killed process's environ reads empty once it is a zombie
  }
}

/**
 * A shell that cleans up after the test process if it dies without stop() (SIGKILL, a crash): it reads (with a
 * builtin, so killing the shell leaves no child) until the end of its standard input, a pipe from us that only our
 * death closes. Detached, so a Ctrl-C on the test run, which reaches the daemons (the test's process group), spares it.
 */
function spawnWatchdog (name: string, dir: string, keep: boolean): ChildProcess {
  const script = `while read -r _; do :; done
for f in /proc/[0-9]*/environ; do
  if grep -qzx -e "${MARKER}=$1" -e "SLURM_CLUSTER_NAME=$1" "$f" 2>/dev/null; then p=\${f#/proc/}; kill -9 "\${p%/environ}" 2>/dev/null; fi
done
${keep ? '' : 'rm -rf "$2"'}`
  const watchdog = spawn('sh', ['-c', script, 'sh', name, dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] })
  watchdog.unref()
  ;(watchdog.stdin as net.Socket).unref()
  return watchdog
}

function exited (proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null
}

function tail (file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

interface Run { code: number | null, stdout: string, stderr: string }

const execFileAsync = promisify(execFile)

/** Runs a Slurm client to completion; killed after CLIENT_TIMEOUT_MS (they time out on their own, MessageTimeout). */
async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, { env, cwd, encoding: 'utf8', timeout: CLIENT_TIMEOUT_MS })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const err = e as { code?: unknown, stdout?: string, stderr?: string }
    return { code: typeof err.code === 'number' ? err.code : null, stdout: err.stdout ?? '', stderr: err.stderr || String(e) }
  }
}

/** Records of `scontrol show job -o`: one line a job (a pending array range is one line), `Key=Value` fields. */
function parseJobs (text: string): Array<Map<string, string>> {
  return text.split('\n').filter((l) => l.startsWith('JobId=')).map((line) => {
    const fields = new Map<string, string>()
    for (const m of line.matchAll(/(?:^| )([A-Za-z_:/]+)=(\S*)/g)) if (!fields.has(m[1])) fields.set(m[1], m[2])
    return fields
  })
}

/**
 * Starts munged, slurmctld and slurmd on 127.0.0.1 and waits until the node is idle. Call stop() in afterAll (or
 * finally); a process-exit hook and a watchdog process also stop the cluster if the test process ends first.
 */
export async function startSlurm (): Promise<SlurmCluster> {
  // SlurmUser and SlurmdUser are root: slurmd starts each job as the user who submitted it.
  if (process.getuid?.() !== 0) throw new Error('the Slurm tests need root (slurmd runs as root to start jobs): run them as root')
  let lastError = ''
  // Another process may take a free port before slurmctld or slurmd binds it: try again with others.
  for (let attempt = 0; attempt < 3; attempt++) {
    const cluster = await launch()
    const failure = await becameIdle(cluster)
    if (failure === undefined) return cluster.api
    await cluster.api.stop()
    lastError = failure
    if (!failure.includes('Address already in use')) break
  }
  throw new Error(`slurm did not start: ${lastError}`)
}

interface Launched { api: SlurmCluster, daemons: ChildProcess[] }

async function launch (): Promise<Launched> {
  const name = `packer${crypto.randomBytes(4).toString('hex')}`
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-slurm-'))
  const keep = process.env.PACKER_SLURM_KEEP === '1'
  const watchdog = spawnWatchdog(name, dir, keep)
  const onExit = (): void => { killCluster(name); if (!keep) fs.rmSync(dir, { recursive: true, force: true }) }
  process.once('exit', onExit)

  // munged refuses a socket whose directory, or any above it, is not executable by all; and a key that others read.
  fs.chmodSync(dir, 0o755)
  for (const sub of ['run', 'log', 'state', 'spool', 'jobs']) fs.mkdirSync(path.join(dir, sub), { mode: 0o755 })
  fs.mkdirSync(path.join(dir, 'munge'), { mode: 0o700 })
  const key = path.join(dir, 'munge/munge.key')
  fs.writeFileSync(key, crypto.randomBytes(128), { mode: 0o400 })
  const ports = { slurmctld: await freePort(), slurmd: await freePort() }
  const conf = path.join(dir, 'slurm.conf')
  fs.writeFileSync(conf, slurmConf(name, dir, ports))

  const env = { SLURM_CONF: conf, PATH: [path.dirname(process.execPath), process.env.PATH ?? '/usr/bin:/bin'].join(':') }
  const clientEnv = (): NodeJS.ProcessEnv => ({ ...withoutSlurm(process.env), ...env })
  // The daemons run in UTS and mount namespaces of their own, named localhost and with the cgroup file systems slurmd
  // needs (slurm-namespace.sh says why); env execs them, so the pid is the daemon's. The marker is put last in the
  // environment by env: slurmstepd writes its title over the start of the environment block, and sh reorders it.
  const daemon = (binary: string, args: string[]): ChildProcess =>
    spawn('unshare', ['--uts', '--mount', '--propagation', 'unchanged', 'sh', NAMESPACE_SCRIPT, `${MARKER}=${name}`, sbin(binary), ...args],
      { env: clientEnv(), stdio: 'ignore' }) // they log to log/
  const daemons = [daemon('munged', [
    '--foreground', `--key-file=${key}`, `--socket=${path.join(dir, 'run/munge.socket')}`,
    `--pid-file=${path.join(dir, 'run/munged.pid')}`, `--log-file=${path.join(dir, 'log/munged.log')}`,
    `--seed-file=${path.join(dir, 'munge/munged.seed')}`,
  ])]
  // slurmctld and slurmd authenticate through munged from their first message: start them once its socket exists.
  const socketDeadline = Date.now() + START_TIMEOUT_MS
  while (!fs.existsSync(path.join(dir, 'run/munge.socket')) && !exited(daemons[0]) && Date.now() < socketDeadline) await sleep(10)
  daemons.push(daemon('slurmctld', ['-D']), daemon('slurmd', ['-D', '-N', 'localhost']))

  let stopping: Promise<void> | undefined
  const api: SlurmCluster = {
    name,
    dir,
    ports,
    env,
    clientEnv,
    sbatch: async (args, script, opts = {}) => {
      const file = path.join(dir, 'jobs', `script-${crypto.randomBytes(4).toString('hex')}.sh`)
      fs.writeFileSync(file, script, { mode: 0o755 })
      const argv = ['--parsable', '--export=ALL', ...args, file, ...(opts.scriptArgs ?? [])]
      const r = await run('sbatch', argv, { ...clientEnv(), ...opts.env }, path.join(dir, 'jobs'))
      const id = Number(r.stdout.trim().split(';')[0])
      if (r.code !== 0 || !Number.isInteger(id)) throw new Error(`sbatch ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`)
      return id
    },
    waitJob: async (jobId, timeoutMs) => {
      const deadline = Date.now() + timeoutMs
      let last = ''
      for (;;) {
        const r = await run('scontrol', ['show', 'job', '-o', String(jobId)], clientEnv())
        last = r.code === 0 ? r.stdout : r.stderr
        const records = r.code === 0 ? parseJobs(r.stdout) : []
        // A pending part of an array is one record with a range (ArrayTaskId=2-3): not ended.
        const ended = records.length > 0 && records.every((f) =>
          ENDED_STATES.has(f.get('JobState') ?? '') && /^\d*$/.test(f.get('ArrayTaskId') ?? ''))
        if (ended) {
          return records.map((f) => {
            const [exitCode, signal] = (f.get('ExitCode') ?? '').split(':').map(Number)
            const task = f.get('ArrayTaskId')
            return {
              jobId: Number(f.get('JobId')),
              taskId: task === undefined ? null : Number(task),
              state: f.get('JobState') ?? '',
              reason: f.get('Reason') ?? '',
              exitCode,
              signal,
              stdout: f.get('StdOut') ?? '',
            }
          }).sort((a, b) => (a.taskId ?? 0) - (b.taskId ?? 0))
        }
        if (Date.now() > deadline) {
          throw new Error(`job ${jobId} had not ended after ${timeoutMs} ms: ${last.trim()}\nslurmctld.log:\n${tail(path.join(dir, 'log/slurmctld.log'))}`)
        }
        await sleep(200)
      }
    },
    pids: () => clusterPids(name),
    stop: () => {
      stopping ??= (async () => {
        killCluster(name)
        const deadline = Date.now() + STOP_TIMEOUT_MS
        while (daemons.some((d) => !exited(d)) && Date.now() < deadline) await sleep(20) // reaped: no zombies left
        process.removeListener('exit', onExit)
        watchdog.kill('SIGKILL')
        if (keep) process.stderr.write(`slurm cluster ${name} kept in ${dir} (PACKER_SLURM_KEEP=1)\n`)
        else fs.rmSync(dir, { recursive: true, force: true })
      })()
      return stopping
    },
  }
  return { api, daemons }
}

/** Waits until sinfo reports the node idle; otherwise what went wrong, with the logs' last lines. */
async function becameIdle ({ api, daemons }: Launched): Promise<string | undefined> {
  const deadline = Date.now() + START_TIMEOUT_MS
  let state = ''
  while (Date.now() < deadline && !daemons.some(exited)) {
    const r = await run('sinfo', ['--noheader', '--format=%t', '--nodes=localhost'], api.clientEnv())
    state = r.code === 0 ? r.stdout.trim() : r.stderr.trim()
    if (state === 'idle') return undefined
    await sleep(100)
  }
  const died = daemons.filter(exited).map((d) => path.basename(d.spawnfile)).join(', ')
  const logs = ['munged', 'slurmctld', 'slurmd'].map((d) => `${d}.log:\n${tail(path.join(api.dir, `log/${d}.log`))}`)
  return `${died === '' ? `node not idle after ${START_TIMEOUT_MS} ms (sinfo: ${state})` : `${died} exited`}\n${logs.join('\n')}`
}
