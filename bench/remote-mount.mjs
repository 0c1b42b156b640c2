#!/usr/bin/env node
/**
 * Remote mount against local mount (issue 15). Run as root on a machine with FUSE and nginx, after `npm run build`:
 *   node bench/remote-mount.mjs [--work DIR] [--size-mib 1024] [--runs 3] [--delay-ms 0]
 *
 * One file of --size-mib random bytes packed encrypted (age X25519); a sequential cold read (dd bs=1M, page cache
 * dropped before every run, a fresh mount each run) of it through `packer mount SETDIR` and through `packer mount
 * http://127.0.0.1:PORT/set/` with the same directory served by nginx (started here on 127.0.0.1, one process; with
 * --delay-ms, nginx's echo module holds every answer that long: a distant server). Prints MB/s of each (median of
 * the runs), the ratio remote / local, and each mount process's peak RSS.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startMount, stopMount } from './lib/mounts.mjs'
import { ensureEncryptedFileSet } from './lib/sets.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(ROOT, 'dist/cli/main.js')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const WORK = path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-remote-mount-bench')))
const SIZE_MIB = Number(opt('--size-mib', '1024'))
const RUNS = Number(opt('--runs', '3'))
const DELAY_MS = Number(opt('--delay-ms', '0'))

const packer = (...a) => execFileSync(process.execPath, [CLI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)] }
const peakRss = (pid) => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024
const dropCaches = () => { try { execFileSync('bash', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']) } catch {} }

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
  const location = DELAY_MS > 0 ? `location / { echo_sleep ${DELAY_MS / 1000}; echo_exec @files; }\n location @files { }` : 'location / { }'
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

/** One cold sequential read through a fresh mount of `where`: MB/s and the mount's peak RSS. */
async function coldRead (where, key, mnt) {
  dropCaches()
  const m = await startMount(process.execPath, [CLI, 'mount', '-i', key, where, mnt], mnt, { readyText: 'mounted set' })
  try {
    const t0 = performance.now()
    const r = spawnSync('dd', [`if=${path.join(mnt, 'big.bin')}`, 'of=/dev/null', 'bs=1M', 'status=none'])
    const secs = (performance.now() - t0) / 1000
    if (r.status !== 0) throw new Error(`dd failed: ${r.stderr}`)
    return { mbps: SIZE_MIB * 1048576 / secs / 1e6, rss: peakRss(m.proc.pid) }
  } finally {
    await stopMount(m)
  }
}

async function main () {
  const dir = ensureSet()
  const key = path.join(dir, 'key.txt')
  const nginx = await startNginx(dir)
  const mnt = path.join(WORK, 'mnt')
  const local = []
  const remote = []
  try {
    for (let run = 0; run < RUNS; run++) {
      // Alternating, so load that comes and goes on a shared machine falls on both alike.
      local.push(await coldRead(path.join(dir, 'set'), key, mnt))
      remote.push(await coldRead(`${nginx.url}/set/`, key, mnt))
    }
  } finally {
    nginx.stop()
  }
  const l = median(local.map((x) => x.mbps))
  const r = median(remote.map((x) => x.mbps))
  const mib = (b) => Math.round(b / 1048576)
  console.log(`sequential cold read of ${SIZE_MIB} MiB, encrypted, median of ${RUNS}${DELAY_MS ? `, nginx answering after ${DELAY_MS} ms` : ''}:`)
  console.log(`  local mount  ${l.toFixed(0)} MB/s (runs ${local.map((x) => x.mbps.toFixed(0)).join(', ')}), peak RSS ${Math.max(...local.map((x) => mib(x.rss)))} MiB`)
  console.log(`  remote mount ${r.toFixed(0)} MB/s (runs ${remote.map((x) => x.mbps.toFixed(0)).join(', ')}), peak RSS ${Math.max(...remote.map((x) => mib(x.rss)))} MiB`)
  console.log(`  ratio remote / local: ${(r / l).toFixed(2)}`)
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
