// Starting and stopping FUSE mounts for the mount benchmarks (bench/mount.mjs, bench/mount-scale.mjs, the compress
// case's), and reading files through them.
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export const mounted = (mnt) => fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt)

const detach = (mnt) => { try { if (mounted(mnt)) execFileSync('fusermount', ['-uz', mnt], { stdio: 'ignore' }) } catch {} }

/**
 * Starts a mount process; resolves when it is ready (its ready text on stdout, or the mount point in /proc/mounts),
 * with the wall time from spawn to ready.
 */
export function startMount (cmd, argv, mnt, { readyText, env, timeoutSecs = 60 } = {}) {
  fs.mkdirSync(mnt, { recursive: true })
  detach(mnt)
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
    let out = ''
    let err = ''
    let done = false
    const finish = (fn) => {
      if (done) return
      done = true
      clearInterval(poll)
      clearTimeout(limit)
      fn()
    }
    const ok = () => finish(() => resolve({ proc: p, mnt, secs: (performance.now() - t0) / 1000, out, stderr: () => err }))
    const fail = (why) => finish(() => {
      p.kill('SIGKILL')
      reject(new Error(`${path.basename(cmd)} mount: ${why}: ${err.trim().split('\n').slice(-3).join(' | ')}`))
    })
    p.stderr.on('data', (d) => { err += d })
    p.stdout.on('data', (d) => { out += d; if (readyText && out.includes(readyText)) ok() })
    const poll = readyText ? undefined : setInterval(() => { if (mounted(mnt)) ok() }, 20)
    const limit = setTimeout(() => fail(`not ready after ${timeoutSecs} s`), timeoutSecs * 1000)
    p.on('exit', (code) => fail(`exited ${code}`))
  })
}

/** Stops a mount started by startMount: SIGTERM, then a lazy unmount and SIGKILL if it lingers. */
export async function stopMount (m, waitSecs = 5) {
  if (m === undefined) return
  m.proc.removeAllListeners('exit')
  const exited = new Promise((resolve) => { if (m.proc.exitCode !== null || m.proc.signalCode !== null) resolve(); else m.proc.on('exit', resolve) })
  m.proc.kill('SIGTERM')
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, waitSecs * 1000))])
  detach(m.mnt)
  if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL')
}

/** Seconds for `dd bs=1M` of a file to /dev/null, or null when it took longer than `timeout` s (or failed). */
export function ddSeq (file, timeout) {
  const t0 = performance.now()
  const r = spawnSync('timeout', [String(timeout), 'dd', `if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none'], { stdio: 'ignore' })
  const secs = (performance.now() - t0) / 1000
  return r.status === 0 ? secs : null
}

/** Random 4 KiB reads with O_DIRECT (each a round trip to the file system), from a separate process. */
export function randomReads (file, n, seed, span = 0) {
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
