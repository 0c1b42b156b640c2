// Processes, timing to durability, page cache, peak RSS, machine description, apt.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, promises as fs, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'

export const MB = 1e6
export const MiB = 2 ** 20
export const GiB = 2 ** 30

export function which (bin) {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

/** The lower median of the numbers among `xs` (null and undefined left out); null when there is none. */
export const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)] }

/** A running process's peak RSS in bytes (VmHWM). */
export const peakRss = (pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** `sync`: every dirty page of every filesystem on disk. */
export function syncDisk () {
  spawnSync('sync', [], { stdio: 'ignore' })
}

let dropWarned = false
/** sync, then drop the page cache (root only). Returns whether it was dropped. */
export function dropCaches () {
  syncDisk()
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch (e) {
    if (!dropWarned) console.log(`  (cannot drop the page cache: ${e.code ?? e.message}; reads may come from memory)`)
    dropWarned = true
    return false
  }
}

/** CPU time of the whole machine so far, in seconds: { busy, total } (all cores; /proc/stat, USER_HZ = 100). */
export function cpuSnapshot () {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f
    const total = f.slice(0, 8).reduce((a, b) => a + (b || 0), 0)
    return { busy: (user + nice + system + irq + softirq + (steal || 0)) / 100, total: total / 100 }
  } catch {
    return null
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits until the machine is quiet: other processes use under `threshold` of all cores for two 1-second windows
 * running, or `maxSeconds` have passed. Returns { waited, busy } (busy: the last window's fraction).
 */
export async function waitQuiet ({ threshold = 0.1, maxSeconds = 90 } = {}) {
  const t0 = performance.now()
  let calm = 0
  let busy = null
  for (;;) {
    const a = cpuSnapshot()
    await sleep(1000)
    const b = cpuSnapshot()
    if (!a || !b) return { waited: 0, busy: null }
    busy = (b.busy - a.busy) / Math.max(1e-9, b.total - a.total)
    calm = busy < threshold ? calm + 1 : 0
    const waited = (performance.now() - t0) / 1000
    if (calm >= 2 || waited >= maxSeconds) return { waited, busy }
  }
}

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null
export const rssMethod = () => (TIME ? '/usr/bin/time -v (max RSS of the largest process)' : '/proc/PID/status VmHWM, polled every 50 ms')

function tail (text, n = 15) {
  return text.split('\n').filter(Boolean).slice(-n).join('\n')
}

/**
 * Runs cmd with args, timed from spawn until the process has exited AND `sync` has returned, so that every
 * byte it wrote is on disk. With cold: true the page cache is dropped first (after a sync, not timed).
 * Throws on a non-zero exit, with the tail of the command's output.
 */
export const config = { waitQuiet: true, maxWait: 60 }

export async function timed (cmd, args, { env = {}, cwd, cold = true, log, rssFile } = {}) {
  syncDisk()
  const quiet = config.waitQuiet ? await waitQuiet({ maxSeconds: config.maxWait }) : null
  const dropped = cold ? dropCaches() : false
  const logFd = log ? openSync(log, 'a') : 'ignore'
  const rssOut = rssFile ?? path.join(os.tmpdir(), `bench-rss-${process.pid}-${Date.now()}.txt`)
  const argv = TIME ? ['-v', '-o', rssOut, cmd, ...args] : args
  const load1 = os.loadavg()[0]
  const cpu0 = cpuSnapshot()
  const t0 = performance.now()
  const child = spawn(TIME ?? cmd, argv, { env: { ...process.env, ...env }, cwd, stdio: ['ignore', logFd, logFd] })
  let hwm = 0
  let poll = null
  if (!TIME) {
    const read = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
        if (m) hwm = Math.max(hwm, Number(m[1]) * 1024)
      } catch {}
    }
    poll = setInterval(read, 50)
  }
  const code = await new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)))
  })
  if (poll) clearInterval(poll)
  const tExit = performance.now()
  syncDisk()
  const t1 = performance.now()
  const cpu1 = cpuSnapshot()
  if (typeof logFd === 'number') closeSync(logFd)
  let rssBytes = hwm || null
  let cpuSeconds = null
  if (TIME) {
    try {
      const txt = readFileSync(rssOut, 'utf8')
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(txt)
      if (m) rssBytes = Number(m[1]) * 1024
      const u = /User time \(seconds\): ([\d.]+)/.exec(txt)
      const sy = /System time \(seconds\): ([\d.]+)/.exec(txt)
      if (u && sy) cpuSeconds = Number(u[1]) + Number(sy[1])
      if (!rssFile) await fs.rm(rssOut, { force: true })
    } catch {}
  }
  if (code !== 0) {
    let out = ''
    try { if (log) out = readFileSync(log, 'utf8') } catch {}
    throw new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(' ')}… exited with ${code}\n${tail(out)}`)
  }
  const seconds = (t1 - t0) / 1000
  // CPU used by everything else on the machine meanwhile, as a fraction of all cores: these machines are shared.
  let othersCpu = null
  if (cpu0 && cpu1 && cpuSeconds != null) {
    othersCpu = Math.max(0, (cpu1.busy - cpu0.busy - cpuSeconds) / Math.max(1e-9, cpu1.total - cpu0.total))
  }
  return {
    seconds,
    cpuSeconds, // user + system of the command and its children
    othersCpu,
    load1, // the 1-minute load average when the command started
    quietWait: quiet ? { seconds: quiet.waited, busyBefore: quiet.busy } : null,
    exitSeconds: (tExit - t0) / 1000, // until the process exited
    syncSeconds: (t1 - tExit) / 1000, // the final sync (data the process left dirty in the page cache)
    rssBytes,
    coldCache: dropped,
  }
}

/** Runs a command and returns its stdout (throws on failure). */
export function run (cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * MiB, ...opts })
  if (r.error) throw r.error
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}: ${tail(r.stderr ?? '')}`)
  return r.stdout
}

function firstLine (cmd, args) {
  try {
    return run(cmd, args).split('\n')[0].trim()
  } catch {
    return null
  }
}

export function machine (workDir) {
  const cpus = os.cpus()
  let fsType = null
  let disk = null
  try {
    const line = run('df', ['-T', '-B1', workDir]).trim().split('\n').pop().split(/\s+/)
    fsType = line[1]
    disk = { device: line[0], sizeBytes: Number(line[2]), availBytes: Number(line[4]) }
  } catch {}
  return {
    hostname: os.hostname(),
    nproc: os.availableParallelism ? os.availableParallelism() : cpus.length,
    cpuModel: cpus[0]?.model ?? null,
    cpuFlags: (() => {
      try {
        const flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1].split(' ') ?? []
        return ['sha_ni', 'aes', 'avx2', 'avx512f'].filter((f) => flags.includes(f))
      } catch {
        return []
      }
    })(),
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    os: (() => {
      try {
        return /^PRETTY_NAME="?(.*?)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? null
      } catch {
        return null
      }
    })(),
    node: process.version,
    fsType,
    disk,
    tools: {
      dd: firstLine('dd', ['--version']),
      restic: firstLine('restic', ['version']),
      borg: firstLine('borg', ['--version']),
      rclone: firstLine('rclone', ['version']),
      ipfsCar: (() => {
        try {
          return JSON.parse(readFileSync(new URL('../../node_modules/ipfs-car/package.json', import.meta.url), 'utf8')).version
        } catch {
          return null
        }
      })(),
    },
  }
}

let aptUpdated = false
/** Makes sure bin is on PATH, installing the Debian package pkg if we are root and apt-get exists. */
export function ensureTool (bin, pkg, { install = true } = {}) {
  if (which(bin)) return { ok: true }
  if (!install) return { ok: false, why: 'not installed (--no-install)' }
  if (!isRoot || !which('apt-get')) return { ok: false, why: `not installed (${isRoot ? 'no apt-get' : 'not root'})` }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const tryInstall = () => spawnSync('apt-get', ['install', '-y', '-q', pkg], { env, encoding: 'utf8' })
  console.log(`  installing ${pkg} (apt-get)…`)
  let r = tryInstall()
  if (r.status !== 0 && !aptUpdated) {
    aptUpdated = true
    spawnSync('apt-get', ['update', '-q'], { env, stdio: 'ignore' })
    r = tryInstall()
  }
  if (r.status !== 0 || !which(bin)) return { ok: false, why: `not installed (apt-get install ${pkg} failed)` }
  return { ok: true, installed: true }
}

export async function dirStats (dir) {
  let files = 0
  let bytes = 0
  async function walk (d) {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) {
        files++
        bytes += (await fs.stat(p)).size
      }
    }
  }
  await walk(dir)
  return { files, bytes }
}

/** Bytes actually allocated on disk under dir (du), for outputs. */
export function diskUsage (p) {
  try {
    return Number(run('du', ['-s', '-B1', p]).split(/\s+/)[0])
  } catch {
    return null
  }
}
