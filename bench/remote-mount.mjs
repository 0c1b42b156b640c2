#!/usr/bin/env node
/**
 * Remote mount against local mount, and against peers reading the same bytes from the same server (issue 15). Run as
 * root on a machine with FUSE, nginx and rclone, after `npm run build`:
 *   node bench/remote-mount.mjs [--work DIR] [--size-mib 1024] [--runs 3] [--delay-ms 0] [--cli dist/cli/main.js]
 *
 * One file of --size-mib random bytes packed encrypted (age X25519); a sequential cold read (dd bs=1M, page cache
 * dropped before every run, a fresh mount each run) of it through `packer mount SETDIR` and through `packer mount
 * http://127.0.0.1:PORT/set/` with the same directory served by nginx (started here on 127.0.0.1, one process,
 * autoindex on; with --delay-ms, nginx's echo module holds every answer that long: a distant server). Peers, from the
 * same nginx in the same runs: `rclone mount` of the directory over HTTP (`:http:` remote) read with the same dd — the
 * raw CAR, no decryption or hash checks, so close to the ceiling of an HTTP FUSE mount — and `curl` of the whole CAR
 * to /dev/null. And `packer fetch` of the set (its CAR written to disk, its piece CID checked) against `curl -o` of the
 * CAR to disk. Prints MB/s of each (median of the runs), the remote mount's ratio to each, fetch's to curl's, and the
 * CPU-seconds (a mount's during the read, all threads) and peak RSS of each. --cli measures another build (e.g. a copy of an older dist),
 * in the same conditions.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startMount, stopMount } from './lib/mounts.mjs'
import { config, dropCaches, timed } from './lib/sys.mjs'
import { ensureEncryptedFileSet } from './lib/sets.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const CLI = path.resolve(opt('--cli', path.join(ROOT, 'dist/cli/main.js')))
const WORK = path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-remote-mount-bench')))
const SIZE_MIB = Number(opt('--size-mib', '1024'))
const RUNS = Number(opt('--runs', '3'))
const DELAY_MS = Number(opt('--delay-ms', '0'))
// the runs are interleaved, so each measures the same moment of a shared machine: none waits for quiet
config.waitQuiet = false

const packer = (...a) => execFileSync(process.execPath, [CLI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)] }
const peakRss = (pid) => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024
/** CPU-seconds a process has used, all its threads (utime + stime from /proc, in clock ticks of 1/100 s). */
const cpuSecs = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100 }

function ensureSet () { return ensureEncryptedFileSet(path.join(WORK, `set-${SIZE_MIB}`), SIZE_MIB, packer) }

async function freePort () {
  const s = net.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** nginx in the foreground, one process, serving `root` on 127.0.0.1. */
async function startNginx (root) {
  const conf = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-bench-nginx-'))
  const port = await freePort()
  // autoindex: rclone's http remote lists the directory
  const location = DELAY_MS > 0 ? `location / { echo_sleep ${DELAY_MS / 1000}; echo_exec @files; }\n location @files { autoindex on; }` : 'location / { autoindex on; }'
  fs.writeFileSync(path.join(conf, 'nginx.conf'), `daemon off; master_process off; pid ${conf}/nginx.pid; error_log ${conf}/error.log;
${DELAY_MS > 0 ? 'load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;' : ''}
events { }
http { access_log off; sendfile on; client_body_temp_path ${conf}; proxy_temp_path ${conf}; fastcgi_temp_path ${conf}; uwsgi_temp_path ${conf}; scgi_temp_path ${conf};
  server { listen 127.0.0.1:${port}; root ${root}; ${location} } }\n`)
  const p = spawn('/usr/sbin/nginx', ['-c', path.join(conf, 'nginx.conf'), '-p', conf], { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) {
    if (await new Promise((resolve) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) }).on('error', () => resolve(false)) })) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => { p.kill('SIGTERM'); fs.rmSync(conf, { recursive: true, force: true }) } }
}

/** A cold sequential read of `file` through a fresh mount made by `start()`: MB/s, the mount's CPU-seconds and peak RSS. */
async function coldRead (start, file, bytes) {
  dropCaches()
  const m = await start()
  try {
    const cpu0 = cpuSecs(m.proc.pid)
    const t0 = performance.now()
    const r = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none'])
    const secs = (performance.now() - t0) / 1000
    if (r.status !== 0) throw new Error(`dd failed: ${r.stderr}`)
    return { mbps: bytes / secs / 1e6, cpu: cpuSecs(m.proc.pid) - cpu0, rss: peakRss(m.proc.pid) }
  } finally {
    await stopMount(m)
  }
}

const packerMount = (where, key, mnt) => coldRead(
  () => startMount(process.execPath, [CLI, 'mount', '-i', key, where, mnt], mnt, { readyText: 'mounted set' }),
  path.join(mnt, 'big.bin'), SIZE_MIB * 1048576)

/** rclone's own HTTP mount of the set directory (read-only, no cache: every read goes to the server). */
const rcloneMount = (url, car, bytes, mnt) => coldRead(
  () => startMount('rclone', ['mount', ':http:', mnt, '--http-url', url, '--read-only', '--vfs-cache-mode', 'off'], mnt),
  path.join(mnt, car), bytes)

/** Runs a command with the page cache dropped first (lib/sys.mjs's timed, which also waits for the final sync). */
async function coldRun (cmd, args, bytes) {
  const t = await timed(cmd, args, { cold: true })
  return { mbps: bytes / t.seconds / 1e6, cpu: t.cpuSeconds, rss: t.rssBytes }
}

/** curl of the whole CAR to `out` (/dev/null, or a file: as fetch writes one): MB/s, CPU-s, peak RSS. */
async function curlWhole (url, bytes, out = '/dev/null') {
  const r = await coldRun('curl', ['-sS', '--fail', '-o', out, url], bytes)
  if (out !== '/dev/null' && fs.statSync(out).size !== bytes) throw new Error(`curl got ${fs.statSync(out).size} bytes of ${bytes}`)
  return r
}

/** `packer fetch` of the set (its CARs, each piece CID checked, with the manifest and index) into a fresh directory. */
async function packerFetch (url, bytes, dir) {
  fs.rmSync(dir, { recursive: true, force: true })
  return await coldRun(process.execPath, [CLI, 'fetch', url, '-o', dir, '-q'], bytes)
}

async function main () {
  const dir = ensureSet()
  const key = path.join(dir, 'key.txt')
  const setDir = path.join(dir, 'set')
  const car = fs.readdirSync(setDir).filter((n) => n.endsWith('.car')).sort((a, b) => fs.statSync(path.join(setDir, b)).size - fs.statSync(path.join(setDir, a)).size)[0]
  const carBytes = fs.statSync(path.join(setDir, car)).size
  const nginx = await startNginx(dir)
  const mnt = path.join(WORK, 'mnt')
  const runs = { local: [], remote: [], rclone: [], curl: [], fetch: [], curlDisk: [] }
  try {
    for (let run = 0; run < RUNS; run++) {
      // Interleaved, so load that comes and goes on a shared machine falls on all alike.
      runs.local.push(await packerMount(setDir, key, mnt))
      runs.remote.push(await packerMount(`${nginx.url}/set/`, key, mnt))
      runs.rclone.push(await rcloneMount(`${nginx.url}/set/`, car, carBytes, mnt))
      runs.curl.push(await curlWhole(`${nginx.url}/set/${car}`, carBytes))
      runs.fetch.push(await packerFetch(`${nginx.url}/set/`, carBytes, path.join(WORK, 'fetched')))
      runs.curlDisk.push(await curlWhole(`${nginx.url}/set/${car}`, carBytes, path.join(WORK, 'curled.car')))
    }
  } finally {
    nginx.stop()
    fs.rmSync(path.join(WORK, 'fetched'), { recursive: true, force: true })
    fs.rmSync(path.join(WORK, 'curled.car'), { force: true })
  }
  const mbps = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v.map((x) => x.mbps))]))
  const mib = (b) => Math.round(b / 1048576)
  const line = (name, k, what) => {
    const rss = runs[k][0].rss === undefined ? '' : `, ${median(runs[k].map((x) => x.cpu)).toFixed(2)} CPU-s, peak RSS ${Math.max(...runs[k].map((x) => mib(x.rss)))} MiB`
    console.log(`  ${name.padEnd(13)} ${mbps[k].toFixed(0)} MB/s (runs ${runs[k].map((x) => x.mbps.toFixed(0)).join(', ')})${rss}${what}`)
  }
  console.log(`sequential cold read of ${SIZE_MIB} MiB, encrypted, median of ${RUNS}${DELAY_MS ? `, nginx answering after ${DELAY_MS} ms` : ''}, load ${os.loadavg()[0].toFixed(1)}:`)
  line('local mount', 'local', '')
  line('remote mount', 'remote', '')
  line('rclone mount', 'rclone', ` (the raw ${mib(carBytes)} MiB CAR)`)
  line('curl', 'curl', ` (the whole CAR, one GET, to /dev/null)`)
  line('packer fetch', 'fetch', ` (the set: its CAR checked against its piece CID, to disk)`)
  line('curl -o', 'curlDisk', ` (the whole CAR, one GET, to disk)`)
  console.log(`  remote mount / local mount:  ${(mbps.remote / mbps.local).toFixed(2)}`)
  console.log(`  remote mount / rclone mount: ${(mbps.remote / mbps.rclone).toFixed(2)}`)
  console.log(`  remote mount / curl:         ${(mbps.remote / mbps.curl).toFixed(2)}`)
  console.log(`  packer fetch / curl -o:      ${(mbps.fetch / mbps.curlDisk).toFixed(2)}`)
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
