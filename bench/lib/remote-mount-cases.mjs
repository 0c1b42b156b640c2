// Issue 15's remote mount: one encrypted file read through `packer mount URL` of its set served by nginx (on
// 127.0.0.1; with a delay, nginx's echo module holds every answer that long: a distant server), against the local
// mount of the same set, `rclone mount` of the same directory over HTTP reading the raw CAR (no decryption, no hash
// checks: close to the ceiling of an HTTP FUSE mount) and curl; and `packer fetch` of the set against `curl -o`. Used
// by bench/remote-mount.mjs and by bench/run.mjs's remote-mount case.
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { startMount, stopMount } from './mounts.mjs'
import { dropCaches, median, peakRss, timed, which } from './sys.mjs'
import { ensureEncryptedFileSet } from './sets.mjs'

const NGINX = '/usr/sbin/nginx'
const ECHO_MODULE = '/usr/lib/nginx/modules/ngx_http_echo_module.so'

/** CPU-seconds a process has used, all its threads (utime + stime from /proc, in clock ticks of 1/100 s). */
const cpuSecs = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100 }

/** What the measurement needs and this machine lacks (empty when it can run): root, FUSE, nginx, its echo module, rclone. */
export function remoteMountMissing (delayMs) {
  return [
    [process.getuid?.() === 0, 'root'],
    [fs.existsSync('/dev/fuse'), '/dev/fuse'],
    [fs.existsSync(NGINX), 'nginx'],
    [delayMs === 0 || fs.existsSync(ECHO_MODULE), "nginx's echo module"],
    [which('rclone') !== null, 'rclone'],
  ].filter(([ok]) => !ok).map(([, what]) => what)
}

async function freePort () {
  const s = net.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** nginx in the foreground, one process, serving `root` on 127.0.0.1, every answer `delayMs` late. */
async function startNginx (root, delayMs) {
  const conf = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-bench-nginx-'))
  const port = await freePort()
  // autoindex: rclone's http remote lists the directory
  const location = delayMs > 0 ? `location / { echo_sleep ${delayMs / 1000}; echo_exec @files; }\n location @files { autoindex on; }` : 'location / { autoindex on; }'
  fs.writeFileSync(path.join(conf, 'nginx.conf'), `daemon off; master_process off; pid ${conf}/nginx.pid; error_log ${conf}/error.log;
${delayMs > 0 ? `load_module ${ECHO_MODULE};` : ''}
events { }
http { access_log off; sendfile on; client_body_temp_path ${conf}; proxy_temp_path ${conf}; fastcgi_temp_path ${conf}; uwsgi_temp_path ${conf}; scgi_temp_path ${conf};
  server { listen 127.0.0.1:${port}; root ${root}; ${location} } }\n`)
  const p = spawn(NGINX, ['-c', path.join(conf, 'nginx.conf'), '-p', conf], { stdio: 'ignore' })
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

/**
 * Measures `runs` rounds, each tool once a round in the same order (interleaved, so load that comes and goes on a
 * shared machine falls on all alike), with `cli` (dist/cli/main.js of the build measured) on a file of `sizeMib` MiB
 * (its set built in `work` once). Returns each tool's runs ({ mbps, cpu, rss }) and median MB/s.
 */
export async function measureRemoteMount ({ cli, work, sizeMib, runs, delayMs }) {
  const packer = (...a) => execFileSync(process.execPath, [cli, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const dir = ensureEncryptedFileSet(path.join(work, `set-${sizeMib}`), sizeMib, packer)
  const key = path.join(dir, 'key.txt')
  const setDir = path.join(dir, 'set')
  const bySize = (a, b) => fs.statSync(path.join(setDir, b)).size - fs.statSync(path.join(setDir, a)).size
  const car = fs.readdirSync(setDir).filter((n) => n.endsWith('.car')).sort(bySize)[0]
  const carBytes = fs.statSync(path.join(setDir, car)).size
  const fileBytes = sizeMib * 1048576
  const nginx = await startNginx(dir, delayMs)
  const mnt = path.join(work, 'mnt')
  const fetched = path.join(work, 'fetched')
  const curled = path.join(work, 'curled.car')
  const packerMount = (where) => coldRead(
    () => startMount(process.execPath, [cli, 'mount', '-i', key, where, mnt], mnt, { readyText: 'mounted set' }),
    path.join(mnt, 'big.bin'), fileBytes)
  const rcloneMount = (url) => coldRead(
    () => startMount('rclone', ['mount', ':http:', mnt, '--http-url', url, '--read-only', '--vfs-cache-mode', 'off'], mnt),
    path.join(mnt, car), carBytes)
  const set = `${nginx.url}/set/`
  const r = { local: [], remote: [], rclone: [], curl: [], fetch: [], curlDisk: [] }
  try {
    for (let run = 0; run < runs; run++) {
      r.local.push(await packerMount(setDir))
      r.remote.push(await packerMount(set))
      r.rclone.push(await rcloneMount(set))
      r.curl.push(await curlWhole(`${set}${car}`, carBytes))
      fs.rmSync(fetched, { recursive: true, force: true })
      r.fetch.push(await coldRun(process.execPath, [cli, 'fetch', set, '-o', fetched, '-q'], carBytes))
      r.curlDisk.push(await curlWhole(`${set}${car}`, carBytes, curled))
    }
  } finally {
    nginx.stop()
    fs.rmSync(fetched, { recursive: true, force: true })
    fs.rmSync(curled, { force: true })
  }
  const mbps = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v.map((x) => x.mbps))]))
  return { sizeMib, delayMs, runs: r, mbps, carBytes, load1: os.loadavg()[0] }
}

const mib = (b) => Math.round(b / 1048576)
const cpuOf = (m, k) => median(m.runs[k].map((x) => x.cpu))
const rssOf = (m, k) => Math.max(...m.runs[k].map((x) => x.rss ?? 0)) || null

/** The measurement as bench/remote-mount.mjs prints it. */
export function printRemoteMount (m) {
  const line = (name, k, what) => {
    const more = m.runs[k][0].rss === undefined ? '' : `, ${cpuOf(m, k).toFixed(2)} CPU-s, peak RSS ${mib(rssOf(m, k))} MiB`
    console.log(`  ${name.padEnd(13)} ${m.mbps[k].toFixed(0)} MB/s (runs ${m.runs[k].map((x) => x.mbps.toFixed(0)).join(', ')})${more}${what}`)
  }
  console.log(`sequential cold read of ${m.sizeMib} MiB, encrypted, median of ${m.runs.local.length}${m.delayMs ? `, nginx answering after ${m.delayMs} ms` : ''}, load ${m.load1.toFixed(1)}:`)
  line('local mount', 'local', '')
  line('remote mount', 'remote', '')
  line('rclone mount', 'rclone', ` (the raw ${mib(m.carBytes)} MiB CAR)`)
  line('curl', 'curl', ' (the whole CAR, one GET, to /dev/null)')
  line('packer fetch', 'fetch', ' (the set: its CAR checked against its piece CID, to disk)')
  line('curl -o', 'curlDisk', ' (the whole CAR, one GET, to disk)')
  console.log(`  remote mount / local mount:  ${(m.mbps.remote / m.mbps.local).toFixed(2)}`)
  console.log(`  remote mount / rclone mount: ${(m.mbps.remote / m.mbps.rclone).toFixed(2)}`)
  console.log(`  remote mount / curl:         ${(m.mbps.remote / m.mbps.curl).toFixed(2)}`)
  console.log(`  packer fetch / curl -o:      ${(m.mbps.fetch / m.mbps.curlDisk).toFixed(2)}`)
}

/**
 * bench/run.mjs's rows for its cases remoteMount0 and remoteMount50: the issue's goals (≥ 0.8 × the local mount at
 * 0 ms, ≥ 0.8 × rclone's raw read at both latencies), the rest for information.
 */
export function remoteMountRows (C) {
  const rows = []
  for (const delayMs of [0, 50]) {
    const c = C[`remoteMount${delayMs}`]
    if (!c) continue
    const name = `remote mount, ${delayMs} ms`
    if (c.error) { rows.push({ case: name, error: c.error }); continue }
    const fig = (k) => ({ bytes: k === 'fetch' || k === 'curlDisk' || k === 'rclone' ? c.carBytes : c.sizeMib * 1048576, mbps: c.mbps[k], cpuSeconds: cpuOf(c, k), rssBytes: rssOf(c, k), load1: c.load1 })
    const ratio = (a, b, vs, goal) => ({ ratio: c.mbps[a] / c.mbps[b], vs, target: goal ? '≥ 0.8' : '', met: goal ? c.mbps[a] / c.mbps[b] >= 0.8 : null })
    rows.push({ case: `${name}: remote mount`, ...fig('remote'), ...ratio('remote', 'local', 'local mount', delayMs === 0) })
    rows.push({ case: `${name}: remote mount`, ...fig('remote'), ...ratio('remote', 'rclone', 'rclone mount (raw CAR)', true) })
    rows.push({ case: `${name}: local mount`, ...fig('local'), vs: 'reference' })
    rows.push({ case: `${name}: rclone mount`, ...fig('rclone'), vs: 'reference' })
    rows.push({ case: `${name}: packer fetch`, ...fig('fetch'), ...ratio('fetch', 'curlDisk', 'curl -o', false) })
    rows.push({ case: `${name}: curl -o`, ...fig('curlDisk'), vs: 'reference' })
  }
  return rows
}
