#!/usr/bin/env node
/**
 * Figures for `packer mount` (issue 5). Run as root on a machine with FUSE, after `npm run build`:
 *   node bench/mount.mjs [--work DIR] [--size-mib 1024] [--files 100000] [--runs 3] [--workers N] [--no-peers]
 *                        [--peer-timeout 60] [--json] [--out bench/mount-results.json]
 *
 * Sequential cold read (dd bs=1M, page cache dropped before every run) of the same 1 GiB of bytes through four FUSE
 * mounts, all mounted at once and read in rounds (one run of each per round, the order rotating, so load that comes
 * and goes on a shared machine falls on all of them alike):
 *   - packer mount of the file packed encrypted (age, X25519 key);
 *   - rclone mount --read-only of an rclone crypt remote over a local directory (passwords `rclone obscure`d, config
 *     in a temporary directory);
 *   - borg mount of a borg repository (repokey, lz4, BORG_PASSPHRASE);
 *   - a trivial fuse-native file system serving bytes from memory: the ceiling for anything built on fuse-native.
 * Each mount first reads the file's last 32 MiB, untimed (a warm-up). Then: peak RSS of the packer mount process
 * over those reads; random 4 KiB O_DIRECT reads (p50/p99, cold and cached) on a fresh mount, and its peak RSS once
 * they have filled its cache; time from `packer mount` to ready for a 100k-file set (fresh mounts, median); `ls -lR` of
 * it, first and repeated. Prints each figure, packer's ratio to each peer and to the ceiling, and writes every figure
 * as JSON to --out (with --json, also to stdout; the lines then go to stderr). Installs Debian's rclone and
 * borgbackup with apt-get when missing. The data (sets, rclone store, borg repo) is built once in --work and reused.
 * Each peer run is time-boxed (--peer-timeout seconds); a peer slower than that is reported as such and not re-run.
 */
import { spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ddSeq, randomReads, startMount, stopMount } from './lib/mounts.mjs'
import { ensureEncryptedFileSet } from './lib/sets.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(ROOT, 'dist/cli/main.js')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const flag = (name) => args.includes(name)
const WORK = path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-mount-bench')))
const SIZE_MIB = Number(opt('--size-mib', '1024'))
const FILES = Number(opt('--files', '100000'))
const RUNS = Number(opt('--runs', '3'))
const WORKERS = opt('--workers')
const PEERS = !flag('--no-peers')
const PEER_TIMEOUT = Number(opt('--peer-timeout', '60'))
const JSON_OUT = flag('--json')
const OUT = path.resolve(opt('--out', path.join(ROOT, 'bench/mount-results.json')))
const PASS = 'packer-bench-passphrase'
fs.mkdirSync(WORK, { recursive: true })

const say = (l) => { (JSON_OUT ? process.stderr : process.stdout).write(l + '\n') }
const sh = (cmd, opts = {}) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts })
const dropCaches = () => { sh('sync; echo 3 > /proc/sys/vm/drop_caches') }
const mbps = (bytes, s) => bytes / s / 1e6
const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)] }
const r0 = (x) => x == null ? null : Math.round(x)
const r2 = (x) => x == null ? null : Math.round(x * 100) / 100
const which = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0
const loadavg = () => os.loadavg().map((x) => Math.round(x * 10) / 10)

function packer (...a) { return execFileSync(process.execPath, [CLI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) }

/** Debian package for a tool, installed with apt-get when missing (root). */
function ensureTool (bin, pkg) {
  if (which(bin)) return true
  say(`installing ${pkg} (apt-get)…`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  let r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { env, stdio: 'ignore' })
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { env, stdio: 'ignore' })
    r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { env, stdio: 'ignore' })
  }
  return which(bin)
}

function ensureBigSet () { return ensureEncryptedFileSet(path.join(WORK, `big-${SIZE_MIB}`), SIZE_MIB, packer) }

function ensureManySet () {
  const dir = path.join(WORK, `many-${FILES}`)
  if (fs.existsSync(path.join(dir, 'set/manifest.json'))) return dir
  fs.rmSync(dir, { recursive: true, force: true })
  const per = 1000
  for (let i = 0; i < FILES; i++) {
    const d = path.join(dir, 'src', `d${String(Math.floor(i / per)).padStart(3, '0')}`)
    if (i % per === 0) fs.mkdirSync(d, { recursive: true })
    fs.writeFileSync(path.join(d, `f${i}.txt`), `file ${i}\n`)
  }
  const recipient = packer('keygen', '-o', path.join(dir, 'key.txt')).trim()
  packer('pack', path.join(dir, 'src'), '-o', path.join(dir, 'set'), '-r', recipient, '-q')
  return dir
}

/** An rclone config in a fresh temporary directory: `bench-crypt:` is a crypt remote over a local directory. */
function rcloneConfig (store) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-bench-rclone-'))
  const obscure = (p) => sh(`rclone obscure ${p}`).trim()
  const conf = path.join(dir, 'rclone.conf')
  fs.writeFileSync(conf, `[bench-crypt]\ntype = crypt\nremote = ${store}\npassword = ${obscure(PASS)}\npassword2 = ${obscure(PASS + '-salt')}\n`, { mode: 0o600 })
  return { dir, conf }
}

function ensureRcloneStore (big) {
  const store = path.join(WORK, `rclone-${SIZE_MIB}`)
  const done = path.join(WORK, `rclone-${SIZE_MIB}.done`)
  const cfg = rcloneConfig(store)
  if (!fs.existsSync(done)) {
    fs.rmSync(store, { recursive: true, force: true })
    fs.mkdirSync(store, { recursive: true })
    say('rclone: copying the file into a crypt remote (once)…')
    sh(`rclone --config ${cfg.conf} copy ${path.join(big, 'src/big.bin')} bench-crypt:`)
    fs.writeFileSync(done, '')
  }
  return cfg
}

function borgEnv () {
  return { ...process.env, BORG_PASSPHRASE: PASS, BORG_BASE_DIR: path.join(WORK, 'borg-base'), BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes', BORG_DISPLAY_PASSPHRASE: 'no' }
}

function ensureBorgRepo (big) {
  const repo = path.join(WORK, `borg-${SIZE_MIB}`)
  const done = path.join(WORK, `borg-${SIZE_MIB}.done`)
  if (!fs.existsSync(done)) {
    fs.rmSync(repo, { recursive: true, force: true })
    say('borg: creating a repository and an archive of the file (once)…')
    execFileSync('borg', ['init', '-e', 'repokey', repo], { env: borgEnv(), stdio: 'ignore' })
    execFileSync('borg', ['create', `${repo}::bench`, 'big.bin'], { env: borgEnv(), cwd: path.join(big, 'src'), stdio: 'ignore' })
    fs.writeFileSync(done, '')
  }
  return repo
}

const TRIVIAL = `
const Fuse = require(${JSON.stringify(path.join(ROOT, 'node_modules/fuse-native'))})
const size = Number(process.argv[2]) * 1048576
const block = require('crypto').randomBytes(1048576)
const st = (mode, sz) => ({ mode, size: sz, uid: 0, gid: 0, nlink: 1, mtime: new Date(), atime: new Date(), ctime: new Date() })
const ops = {
  getattr: (p, cb) => p === '/' ? cb(0, st(0o40755, 4096)) : p === '/big.bin' ? cb(0, st(0o100644, size)) : cb(Fuse.ENOENT),
  readdir: (p, cb) => cb(0, ['big.bin']),
  open: (p, f, cb) => cb(0, 1),
  release: (p, fd, cb) => cb(0),
  read: (p, fd, buf, len, pos, cb) => {
    const n = Math.max(0, Math.min(len, size - pos))
    let done = 0
    while (done < n) { const o = (pos + done) % 1048576; done += block.copy(buf, done, o, Math.min(1048576, o + n - done)) }
    cb(n)
  },
}
const f = new Fuse(process.argv[1], ops, { autoUnmount: true, kernelCache: true, attrTimeout: 3600, entryTimeout: 3600 })
f.mount((err) => { if (err) { console.error(err.message); process.exit(1) } console.log('ready') })
process.on('SIGTERM', () => f.unmount(() => process.exit(0)))`

function peakRss (pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmHWM:\s+(\d+)/.exec(s)[1]) * 1024
}

function version (cmd) {
  try { return sh(cmd).trim().split('\n')[0] } catch { return null }
}

async function main () {
  if (process.getuid() !== 0) throw new Error('run as root (drops the page cache, mounts FUSE)')
  const started = performance.now()
  const big = ensureBigSet()
  const many = ensureManySet()
  const bytes = SIZE_MIB * 1048576
  const result = {
    date: new Date().toISOString(),
    command: `node bench/mount.mjs ${args.join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0].model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version, loadBefore: loadavg() },
    sizeMiB: SIZE_MIB,
    runs: RUNS,
    unit: 'MB/s = 10^6 bytes per second; latencies in microseconds; times in seconds',
    sequential: {},
  }
  say(`packer mount figures (${os.cpus().length} CPUs, ${os.cpus()[0].model}; load ${loadavg().join(' ')})`)

  // Every system to compare, mounted side by side.
  const systems = []
  const extra = WORKERS ? ['--workers', WORKERS] : []
  systems.push({ name: 'ceiling', label: 'trivial fuse-native from memory', start: () => startMount(process.execPath, ['-e', TRIVIAL, path.join(WORK, 'mnt-trivial'), String(SIZE_MIB)], path.join(WORK, 'mnt-trivial'), { readyText: 'ready' }), file: 'big.bin', timeout: PEER_TIMEOUT })
  systems.push({ name: 'packer', label: 'packer mount (age, X25519)', start: () => startMount(process.execPath, [CLI, 'mount', path.join(big, 'set'), path.join(WORK, 'mnt'), '-i', path.join(big, 'key.txt'), ...extra], path.join(WORK, 'mnt'), { readyText: 'mounted set' }), file: 'big.bin', timeout: 600 })
  if (PEERS) {
    if (ensureTool('rclone', 'rclone')) {
      const cfg = ensureRcloneStore(big)
      result.machine.rclone = version('rclone version')
      systems.push({ name: 'rclone', label: 'rclone mount --read-only (crypt remote over a local dir)', start: () => startMount('rclone', ['--config', cfg.conf, 'mount', 'bench-crypt:', path.join(WORK, 'mnt-rclone'), '--read-only'], path.join(WORK, 'mnt-rclone')), file: 'big.bin', timeout: PEER_TIMEOUT, cleanup: () => fs.rmSync(cfg.dir, { recursive: true, force: true }) })
    } else result.sequential.rclone = { error: 'rclone not installed (apt-get install rclone failed)' }
    if (ensureTool('borg', 'borgbackup')) {
      const repo = ensureBorgRepo(big)
      result.machine.borg = version('borg --version')
      systems.push({ name: 'borg', label: 'borg mount (repokey, lz4)', start: () => startMount('borg', ['mount', '-f', `${repo}::bench`, path.join(WORK, 'mnt-borg')], path.join(WORK, 'mnt-borg'), { env: borgEnv() }), file: 'big.bin', timeout: PEER_TIMEOUT })
    } else result.sequential.borg = { error: 'borg not installed (apt-get install borgbackup failed)' }
  }

  let rss = null
  try {
    for (const s of systems) {
      try { s.m = await s.start() } catch (err) { s.error = err.message; say(`${s.name}: ${err.message}`) }
      s.secs = []
    }
    const live = systems.filter((s) => s.m)
    // Warm-up, untimed: every mount's first read after mounting was slower (JIT, first-touch memory, peers still
    // loading their metadata). The file's last 32 MiB: whatever a mount keeps of them is evicted, or never reached,
    // before a read from the start gets there.
    for (const s of live) spawnSync('timeout', [String(s.timeout), 'dd', `if=${path.join(s.m.mnt, s.file)}`, 'of=/dev/null', 'bs=1M', `skip=${SIZE_MIB - 32}`, 'status=none'], { stdio: 'ignore' })
    // ... and a pause, for whatever the mounts (and the kernel) still do after mounting.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    for (let r = 0; r < RUNS; r++) {
      for (let i = 0; i < live.length; i++) {
        const s = live[(i + r) % live.length]
        if (s.slow) continue
        dropCaches()
        const t = ddSeq(path.join(s.m.mnt, s.file), s.timeout)
        if (t === null) { s.slow = true; say(`${s.name}: no result within ${s.timeout} s (time box); not run again`) }
        s.secs.push(t)
      }
    }
    const p = systems.find((s) => s.name === 'packer')
    if (p?.m) rss = peakRss(p.m.proc.pid)
  } finally {
    for (const s of systems) { await stopMount(s.m); s.cleanup?.() }
  }
  result.machine.loadAfterSequential = loadavg()
  for (const s of systems) {
    const rates = s.secs.map((t) => t == null ? null : mbps(bytes, t))
    result.sequential[s.name] = s.error ? { label: s.label, error: s.error } : { label: s.label, runsMBps: rates.map(r0), medianMBps: r0(median(rates)), timedOut: !!s.slow }
  }
  const seq = result.sequential
  const pk = seq.packer?.medianMBps
  result.ratios = {}
  say(`sequential cold read of the same ${SIZE_MIB} MiB (dd bs=1M, page cache dropped before each run, ${RUNS} rounds), median MB/s:`)
  for (const s of systems) {
    const f = seq[s.name]
    const ratio = s.name !== 'packer' && pk && f.medianMBps ? pk / f.medianMBps : null
    if (ratio !== null) result.ratios[`packerTo${s.name[0].toUpperCase()}${s.name.slice(1)}`] = r2(ratio)
    say(`  ${s.label.padEnd(58)} ${f.error ? 'not available: ' + f.error : `${String(f.medianMBps ?? `> ${s.timeout} s`).padStart(5)} MB/s  (runs: ${f.runsMBps.map((x) => x ?? 'timeout').join(', ')})${ratio !== null ? `   packer/${s.name} = ${ratio.toFixed(2)}` : ''}`}`)
  }
  result.rss = { peakMiB: rss == null ? null : Math.round(rss / 1048576), cacheMiB: 256 }
  say(`peak RSS of the packer mount process over those sequential reads: ${result.rss.peakMiB} MiB (--cache-size 256MiB, the default)`)

  // Random reads on a fresh mount. Cold: 300 offsets over the whole file (nearly all in blocks not read before: each
  // costs a pread, SHA-256 of its 1 MiB block and decryption). Cached: 2000 offsets within the first 128 MiB, read
  // a second time (they fit the 256 MiB cache).
  const mnt = path.join(WORK, 'mnt')
  dropCaches()
  const m3 = await startMount(process.execPath, [CLI, 'mount', path.join(big, 'set'), mnt, '-i', path.join(big, 'key.txt'), ...extra], mnt, { readyText: 'mounted set' })
  try {
    const rc = randomReads(`${mnt}/big.bin`, 300, 7)
    randomReads(`${mnt}/big.bin`, 2000, 9, 128 * 1048576)
    const rw = randomReads(`${mnt}/big.bin`, 2000, 9, 128 * 1048576)
    result.random4k = { coldP50: r0(rc.p50), coldP99: r0(rc.p99), cachedP50: r0(rw.p50), cachedP99: r0(rw.p99) }
    say(`random 4 KiB reads (O_DIRECT, queue depth 1): cold p50 ${rc.p50.toFixed(0)} us, p99 ${rc.p99.toFixed(0)} us; cached p50 ${rw.p50.toFixed(0)} us, p99 ${rw.p99.toFixed(0)} us`)
    // Random reads keep what they read (a sequential reader's leaves are reused once it is past them): the cache is
    // full now, 300 leaves from the cold reads and 128 MiB from the others.
    result.rss.afterRandomMiB = Math.round(peakRss(m3.proc.pid) / 1048576)
    say(`peak RSS of that mount after the random reads (its 256 MiB cache full): ${result.rss.afterRandomMiB} MiB`)
  } finally { await stopMount(m3) }

  // Time to ready: fresh mounts of the 100k-file set (page cache dropped before the first only: the set's files are
  // what a user has just retrieved or read), median; then ls -lR on the last one.
  const mnt2 = path.join(WORK, 'mnt-many')
  const ready = []
  const own = []
  dropCaches()
  for (let i = 0; i < 3; i++) {
    const m2 = await startMount(process.execPath, [CLI, 'mount', path.join(many, 'set'), mnt2, '-i', path.join(many, 'key.txt')], mnt2, { readyText: 'mounted set' })
    ready.push(m2.secs)
    own.push(Number(/ready in ([\d.]+) s/.exec(m2.out)?.[1]))
    if (i < 2) { await stopMount(m2); continue }
    try {
      const times = []
      for (let k = 0; k < 3; k++) {
        const t0 = performance.now()
        sh(`ls -lR ${mnt2} > /dev/null`)
        times.push((performance.now() - t0) / 1000)
      }
      result.lsLR = { files: FILES, first: r2(times[0]), repeated: times.slice(1).map(r2) }
      say(`ls -lR of ${FILES} files: first ${times[0].toFixed(2)} s, repeated ${times.slice(1).map((t) => t.toFixed(2)).join(', ')} s`)
    } finally { await stopMount(m2) }
  }
  result.ready = { files: FILES, spawnToReady: ready.map(r2), median: r2(median(ready)), ownCount: own.map(r2), ownMedian: r2(median(own)) }
  say(`time to ready, ${FILES}-file encrypted set (3 fresh mounts): ${ready.map((t) => t.toFixed(2)).join(', ')} s from spawn to the ready line, median ${median(ready).toFixed(2)} s; packer's own count (after node has started): ${own.map((t) => t.toFixed(2)).join(', ')} s`)
  result.machine.loadAfter = loadavg()
  result.wallSeconds = r0((performance.now() - started) / 1000)
  say(`load ${result.machine.loadBefore.join(' ')} before, ${result.machine.loadAfter.join(' ')} after; ${result.wallSeconds} s`)
  fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n')
  say(`figures written to ${path.relative(process.cwd(), OUT) || OUT}`)
  if (JSON_OUT) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
}

main().catch((err) => { console.error(err); process.exit(1) })
