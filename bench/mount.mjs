#!/usr/bin/env node
/**
 * Figures for `packer mount` (issue 5). Run as root on a machine with FUSE, after `npm run build`:
 *   node bench/mount.mjs [--work DIR] [--size-mib 1024] [--files 100000] [--runs 3] [--workers N]
 * Prints: sequential cold read of a 1 GiB encrypted file (dd bs=1M, page cache dropped before each run) next to a
 * trivial fuse-native file system serving bytes from memory (the ceiling); random 4 KiB O_DIRECT reads p50/p99, cold
 * and cached; `ls -lR` of a 100k-file set, first and repeated; time from `packer mount` to ready for that set; peak
 * RSS of the mount process while the 1 GiB file is read. Sets are built once in --work and reused.
 */
import { spawn, execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(ROOT, 'dist/cli/main.js')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const WORK = path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-mount-bench')))
const SIZE_MIB = Number(opt('--size-mib', '1024'))
const FILES = Number(opt('--files', '100000'))
const RUNS = Number(opt('--runs', '3'))
const WORKERS = opt('--workers')
fs.mkdirSync(WORK, { recursive: true })

const sh = (cmd) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const dropCaches = () => { sh('sync; echo 3 > /proc/sys/vm/drop_caches') }
const mb = (bytes, s) => (bytes / s / 1e6).toFixed(0)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function packer (...a) { return execFileSync(process.execPath, [CLI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) }

function ensureBigSet () {
  const dir = path.join(WORK, `big-${SIZE_MIB}`)
  if (fs.existsSync(path.join(dir, 'set/manifest.json'))) return dir
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true })
  const fd = fs.openSync(path.join(dir, 'src/big.bin'), 'w')
  const c = crypto.createCipheriv('chacha20', crypto.randomBytes(32), Buffer.alloc(16))
  const z = Buffer.alloc(1 << 20)
  for (let i = 0; i < SIZE_MIB; i++) fs.writeSync(fd, c.update(z))
  fs.closeSync(fd)
  const recipient = packer('keygen', '-o', path.join(dir, 'key.txt')).trim()
  packer('pack', path.join(dir, 'src'), '-o', path.join(dir, 'set'), '-r', recipient, '-q')
  return dir
}

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

/** Starts a mount; resolves when its ready line appears, with the wall time from spawn to ready. */
function startMount (cmd, argv, mnt, readyText) {
  fs.mkdirSync(mnt, { recursive: true })
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stderr.on('data', (d) => { err += d })
    p.stdout.on('data', (d) => {
      out += d
      if (out.includes(readyText)) resolve({ proc: p, secs: (performance.now() - t0) / 1000, out, stderr: () => err })
    })
    p.on('exit', (code) => reject(new Error(`mount exited ${code}: ${err}`)))
  })
}

async function stopMount (m, mnt) {
  const exited = new Promise((resolve) => m.proc.on('exit', resolve))
  m.proc.removeAllListeners('exit')
  m.proc.on('exit', () => {})
  m.proc.kill('SIGTERM')
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
  try { sh(`grep -q " ${mnt} " /proc/mounts && fusermount -uz ${mnt}`) } catch {}
}

function ddSeq (file) {
  const t0 = performance.now()
  sh(`dd if=${file} of=/dev/null bs=1M status=none`)
  return (performance.now() - t0) / 1000
}

/** Random 4 KiB reads with O_DIRECT (each a round trip to the file system), from a separate process. */
function randomReads (file, n, seed, span = 0) {
  const script = `
const fs = require('fs')
const fd = fs.openSync(process.argv[1], fs.constants.O_RDONLY | fs.constants.O_DIRECT)
const size = Number(process.argv[4]) || fs.fstatSync(fd).size
const buf = Buffer.alloc(4096)
let s = Number(process.argv[3])
const lat = []
for (let i = 0; i < Number(process.argv[2]); i++) {
  s = (s * 1103515245 + 12345) % 2147483648
  const off = Math.floor((s / 2147483648) * (size / 4096 - 1)) * 4096
  const t = process.hrtime.bigint()
  fs.readSync(fd, buf, 0, 4096, off)
  lat.push(Number(process.hrtime.bigint() - t) / 1e3)
}
lat.sort((a, b) => a - b)
console.log(JSON.stringify({ p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)] }))`
  return JSON.parse(execFileSync(process.execPath, ['-e', script, file, String(n), String(seed), String(span)], { encoding: 'utf8' }))
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

async function main () {
  if (process.getuid() !== 0) throw new Error('run as root (drops the page cache, mounts FUSE)')
  const big = ensureBigSet()
  const many = ensureManySet()
  const bytes = SIZE_MIB * 1048576
  const lines = []
  const say = (l) => { lines.push(l); console.log(l) }
  say(`packer mount figures (${os.cpus().length} CPUs, ${os.cpus()[0].model}; load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`)

  // The ceiling: trivial fuse-native serving bytes from memory.
  const tmnt = path.join(WORK, 'mnt-trivial')
  const tm = await startMount(process.execPath, ['-e', TRIVIAL, tmnt, String(SIZE_MIB)], tmnt, 'ready')
  const trivial = []
  try {
    for (let i = 0; i < RUNS; i++) { dropCaches(); trivial.push(ddSeq(`${tmnt}/big.bin`)) }
  } finally { await stopMount(tm, tmnt) }
  const ceiling = bytes / median(trivial) / 1e6

  const mnt = path.join(WORK, 'mnt')
  const extra = WORKERS ? ['--workers', WORKERS] : []
  const m = await startMount(process.execPath, [CLI, 'mount', path.join(big, 'set'), mnt, '-i', path.join(big, 'key.txt'), ...extra], mnt, 'mounted set')
  try {
    const cold = []
    for (let i = 0; i < RUNS; i++) {
      dropCaches()
      // A fresh mount process each run would also drop packer's own cache; the LRU (256 MiB) is smaller than the file.
      cold.push(ddSeq(`${mnt}/big.bin`))
    }
    const rss = peakRss(m.proc.pid)
    say(`sequential read, ${SIZE_MIB} MiB encrypted file, cold (dd bs=1M): ${cold.map((s) => mb(bytes, s)).join(', ')} MB/s; median ${mb(bytes, median(cold))} MB/s = ${(bytes / median(cold) / 1e6 / ceiling * 100).toFixed(0)}% of trivial fuse-native from memory (${ceiling.toFixed(0)} MB/s: ${trivial.map((s) => mb(bytes, s)).join(', ')})`)
    say(`peak RSS of the mount process while reading it: ${(rss / 1048576).toFixed(0)} MiB (cache 256 MiB)`)
  } finally { await stopMount(m, mnt) }
  // Random reads on a fresh mount. Cold: 300 offsets over the whole file (nearly all in blocks not read before: each
  // costs a pread, SHA-256 of its 1 MiB block and decryption). Cached: 2000 offsets within the first 128 MiB, read
  // a second time (they fit the 256 MiB cache).
  dropCaches()
  const m3 = await startMount(process.execPath, [CLI, 'mount', path.join(big, 'set'), mnt, '-i', path.join(big, 'key.txt'), ...extra], mnt, 'mounted set')
  try {
    const rc = randomReads(`${mnt}/big.bin`, 300, 7)
    randomReads(`${mnt}/big.bin`, 2000, 9, 128 * 1048576)
    const rw = randomReads(`${mnt}/big.bin`, 2000, 9, 128 * 1048576)
    say(`random 4 KiB reads (O_DIRECT, queue depth 1): cold p50 ${rc.p50.toFixed(0)} us, p99 ${rc.p99.toFixed(0)} us; cached p50 ${rw.p50.toFixed(0)} us, p99 ${rw.p99.toFixed(0)} us`)
  } finally { await stopMount(m3, mnt) }

  const mnt2 = path.join(WORK, 'mnt-many')
  dropCaches()
  const m2 = await startMount(process.execPath, [CLI, 'mount', path.join(many, 'set'), mnt2, '-i', path.join(many, 'key.txt')], mnt2, 'mounted set')
  try {
    const own = /ready in ([\d.]+) s/.exec(m2.out)?.[1]
    say(`time to ready, ${FILES}-file encrypted set: ${m2.secs.toFixed(2)} s from spawn to the ready line (packer's own count, after node starts: ${own} s)`)
    const times = []
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now()
      sh(`ls -lR ${mnt2} > /dev/null`)
      times.push((performance.now() - t0) / 1000)
    }
    say(`ls -lR of ${FILES} files: first ${times[0].toFixed(2)} s, repeated ${times.slice(1).map((t) => t.toFixed(2)).join(', ')} s`)
  } finally { await stopMount(m2, mnt2) }
}

main().catch((err) => { console.error(err); process.exit(1) })
