#!/usr/bin/env node
/**
 * Where a compressed file's decompression runs (issue 13): one process per run reads a compressed file of generated
 * log text through a build's SetReader (the reader of the mount, unpack and verify --decrypt) — 128 KiB reads, four
 * in flight, as the kernel sends a sequential reader's reads — and prints the CPU seconds of its main thread (the
 * mount's FUSE thread) and of the whole process, the main thread's event-loop delay, and MB/s. Give builds' dist
 * directories to compare them (e.g. the v2 checkout's, with decompression on the main thread, and this one's); runs
 * alternate between builds, page cache dropped before each (as root).
 *
 *   node bench/reader-threads.mjs [--size-mib 256] [--runs 3] [--work DIR] [DIST…]    (default DIST: this repo's dist)
 *
 * The CPU seconds are the steady figures on a shared machine: wall time and delays there are mostly other processes'.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { generatedText } from './lib/data.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)

if (args[0] === '--child') {
  const [, dist, setDir, keyFile] = args
  const { openCarSet } = await import(path.join(dist, 'api/set.js'))
  const { SetReader } = await import(path.join(dist, 'read/reader.js'))
  const set = await openCarSet(setDir, { identities: [keyFile] })
  const e = await set.files.lookup(Buffer.from('big.log'))
  const reader = new SetReader(set, { cacheSize: 256 * 2 ** 20 })
  const h = reader.open()
  // utime + stime of the main thread (its tid is the pid) and of the process, in clock ticks of 1/100 s
  const cpu = (file) => { const s = fs.readFileSync(file, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) / 100 }
  const main = () => cpu(`/proc/self/task/${process.pid}/stat`)
  const all = () => cpu('/proc/self/stat')
  const eld = monitorEventLoopDelay({ resolution: 1 })
  const [m0, a0, t0] = [main(), all(), performance.now()]
  eld.enable()
  let next = 0
  const piece = 128 * 1024
  const one = async () => { for (let at; (at = next) < e.size;) { next += piece; await reader.read(e, h, Buffer.allocUnsafe(piece), piece, at) } }
  await Promise.all([one(), one(), one(), one()])
  eld.disable()
  const secs = (performance.now() - t0) / 1000
  console.log(JSON.stringify({ mbps: e.size / secs / 1e6, mainCpu: main() - m0, processCpu: all() - a0, delayP99Ms: eld.percentile(99) / 1e6, delayMaxMs: eld.max / 1e6 }))
  await reader.close()
  await set.close()
  process.exit(0)
}

const opt = (name, def) => { const i = args.indexOf(name); if (i < 0) return def; const v = args[i + 1]; args.splice(i, 2); return v }
const SIZE = Number(opt('--size-mib', '256')) * 2 ** 20
const RUNS = Number(opt('--runs', '3'))
const WORK = path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-reader-threads')))
const dists = (args.length > 0 ? args : [path.join(ROOT, 'dist')]).map((d) => path.resolve(d))
const setDir = path.join(WORK, `set-${SIZE}`)
const keyFile = path.join(WORK, 'key.txt')
if (!fs.existsSync(path.join(setDir, 'manifest.json'))) {
  const cli = path.join(ROOT, 'dist/cli/main.js')
  const src = path.join(WORK, 'src')
  fs.rmSync(src, { recursive: true, force: true })
  fs.mkdirSync(src, { recursive: true })
  fs.writeFileSync(path.join(src, 'big.log'), generatedText('log', SIZE, 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima'.split(' '), 99))
  if (!fs.existsSync(keyFile)) execFileSync(process.execPath, [cli, 'keygen', '-o', keyFile], { stdio: 'ignore' })
  const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(keyFile, 'utf8'))[0]
  execFileSync(process.execPath, [cli, 'pack', src, '-o', setDir, '-r', recipient, '-q', '--compress', 'zstd'])
  fs.rmSync(src, { recursive: true, force: true })
}
const dropCaches = () => { try { execFileSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' }) } catch {} }
const results = new Map(dists.map((d) => [d, []]))
for (let r = 0; r < RUNS; r++) {
  for (const d of r % 2 ? [...dists].reverse() : dists) {
    dropCaches()
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', d, setDir, keyFile], { encoding: 'utf8' })
    results.get(d).push(JSON.parse(out.trim().split('\n').pop()))
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]
console.log(`${SIZE / 2 ** 20} MiB compressed file (zstd level 3), ${RUNS} runs per build, medians (each run's figures in brackets); load ${os.loadavg()[0].toFixed(1)} at the end`)
for (const [d, rs] of results) {
  const f = (k, digits) => `${median(rs.map((x) => x[k])).toFixed(digits)} [${rs.map((x) => x[k].toFixed(digits)).join(' ')}]`
  console.log(`${d}: main thread CPU ${f('mainCpu', 2)} s; process CPU ${f('processCpu', 2)} s; ${f('mbps', 0)} MB/s; event-loop delay p99 ${f('delayP99Ms', 1)} ms`)
}
