#!/usr/bin/env node
// Where the time of a pack from S3 goes (issue 16): one `packer pack s3://… --no-encrypt` (or, --disk, of the same
// tree on disk) from fauxqs on 127.0.0.1 in this process, sampled every 20 ms: how many ranged GETs the server had
// under way and of how many objects (its onRequest / onResponse hooks), and the CPU-seconds of each of packer's threads
// (/proc/PID/task/*/stat: the main thread, V8's platform threads, leaf workers, packer-commp).
//
//   node bench/s3-gets.mjs [--dist DIST] [--files 40] [--mib 10] [--disk] [--gets N]
//
// --dist: another build's dist directory (a copy kept beside dist/, as for s3-pack.mjs --compare); --gets N prints
// the first N GETs (object, range, ms from the start when the server got it and when its answer was sent).
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { BENCH_AWS_ENV, startServer } from './lib/s3-cases.mjs'

const args = process.argv.slice(2)
const opt = (name, fallback) => { const i = args.indexOf(`--${name}`); return i < 0 ? fallback : args[i + 1] }
const DIST = path.resolve(opt('dist', path.join(path.dirname(fileURLToPath(import.meta.url)), '../dist')))
const FILES = Number(opt('files', 40))
const MIB = Number(opt('mib', 10))
const DISK = args.includes('--disk')
const SHOWN = Number(opt('gets', 0))
const TICKS_PER_SECOND = 100 // USER_HZ of /proc/*/stat

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-bench-s3-gets-'))
/** GETs under way, by object; every GET as [object, range, got, answered]. */
const underWay = new Map()
const gets = []
let t0 = Date.now()
const server = await startServer((app) => {
  app.addHook('onRequest', async (req) => {
    if (req.method !== 'GET' || req.headers.range === undefined) return
    const object = req.url.replace(/\?.*$/, '')
    underWay.set(object, (underWay.get(object) ?? 0) + 1)
    req.seen = { object, range: req.headers.range, got: Date.now() - t0 }
    gets.push(req.seen)
  })
  app.addHook('onResponse', async (req) => {
    if (req.seen === undefined) return
    req.seen.answered = Date.now() - t0
    const left = underWay.get(req.seen.object) - 1
    if (left === 0) underWay.delete(req.seen.object)
    else underWay.set(req.seen.object, left)
  })
})
const tree = path.join(work, 'tree')
fs.mkdirSync(tree)
await server.put('bench', Buffer.alloc(0))
for (let i = 0; i < FILES; i++) {
  const name = `f${String(i).padStart(4, '0')}.bin`
  const bytes = crypto.createCipheriv('chacha20', crypto.createHash('sha256').update(String(i)).digest(), Buffer.alloc(16)).update(Buffer.alloc(MIB << 20))
  if (DISK) fs.writeFileSync(path.join(tree, name), bytes)
  else await server.put(`bench/tree/${name}`, bytes)
}

const env = { ...process.env, ...BENCH_AWS_ENV, XDG_STATE_HOME: path.join(work, 'state') }
t0 = Date.now()
const child = spawn(process.execPath, [path.join(DIST, 'cli/main.js'), 'pack', DISK ? tree : 's3://bench/tree', '-o', path.join(work, 'out'), '-q', '--no-encrypt', '--s3-endpoint', server.endpoint], { env, stdio: ['ignore', 'inherit', 'inherit'] })
const threads = new Map()
const samples = { gets: {}, objects: {}, n: 0 }
const count = (h, k) => { h[k] = (h[k] ?? 0) + 1 }
const timer = setInterval(() => {
  samples.n++
  count(samples.gets, [...underWay.values()].reduce((a, b) => a + b, 0))
  count(samples.objects, underWay.size)
  let tids = []
  try { tids = fs.readdirSync(`/proc/${child.pid}/task`) } catch {}
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${child.pid}/task/${tid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      threads.set(tid, { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), cpu: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND })
    } catch {} // the thread ended
  }
}, 20)
const code = await new Promise((resolve) => child.on('close', resolve))
clearInterval(timer)
const wall = (Date.now() - t0) / 1000
await server.stop()
fs.rmSync(work, { recursive: true, force: true })
if (code !== 0) throw new Error(`pack exited ${code}`)
const shares = (h) => Object.entries(h).map(([k, v]) => `${k}: ${(100 * v / samples.n).toFixed(0)} %`).join(', ')
const busy = [...threads].filter(([, t]) => t.cpu >= 0.05)
console.log(`${DISK ? 'from disk' : 'from S3'}, ${FILES} files of ${MIB} MiB, ${DIST}: wall ${wall.toFixed(1)} s, ${gets.length} ranged GETs, load ${os.loadavg()[0].toFixed(1)}`)
console.log(`  share of the time with N ranged GETs under way: ${shares(samples.gets)}`)
console.log(`  share of the time with GETs of N objects under way: ${shares(samples.objects)}`)
console.log(`  packer's CPU-s by thread (first: main): ${busy.map(([tid, t]) => `${t.name}/${tid} ${t.cpu.toFixed(2)}`).join(', ')}; all ${[...threads.values()].reduce((a, t) => a + t.cpu, 0).toFixed(2)}`)
for (const g of gets.slice(0, SHOWN)) console.log(`  ${g.object} ${g.range} ${g.got}-${g.answered} ms`)
