import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { CLI, run, type Run } from '../helpers.js'

/**
 * A `packer mount` running in a child process. The test process never touches the mount with synchronous fs calls
 * (a process reading its own mount can deadlock, and this one is not the mounting process, but sync calls would
 * also block vitest): it reads through child processes (cat, dd, sha256sum…) or async fs.
 */
export interface RunningMount {
  proc: ChildProcess
  mnt: string
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
  /** Unmounts (fusermount -uz) and kills the process if still there; for `finally`. */
  cleanup: () => Promise<void>
}

/**
 * Starts `packer mount ARGS` (or, with `argv`, `node ARGV`: a script mounting through the library, which prints
 * 'mounted set' when ready) and waits until it is ready.
 */
export async function startMount (args: string[], mnt: string, opts: { env?: NodeJS.ProcessEnv, argv?: string[] } = {}): Promise<RunningMount> {
  const proc = spawn(process.execPath, opts.argv ?? [CLI, 'mount', ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d) => { out += d })
  proc.stderr!.on('data', (d) => { err += d })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  const m: RunningMount = {
    proc,
    mnt,
    stdout: () => out,
    stderr: () => err,
    exited,
    cleanup: async () => {
      if (await isMounted(mnt)) await run('fusermount', ['-uz', mnt])
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL')
        await exited
      }
    },
  }
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => {
      const check = (): void => { if (out.includes('mounted set')) resolve(true) }
      proc.stdout!.on('data', check)
      check()
    }),
    exited.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20_000)),
  ])
  if (!ready) {
    await m.cleanup()
    throw new Error(`packer mount did not become ready: ${err}${out}`)
  }
  return m
}

export async function isMounted (mnt: string): Promise<boolean> {
  const text = await fs.promises.readFile('/proc/mounts', 'utf8')
  return text.split('\n').some((l) => l.split(' ')[1] === mnt)
}

/** Runs a shell command (bash -c). */
export function sh (cmd: string, opts: { cwd?: string } = {}): Promise<Run> {
  return run('bash', ['-c', cmd], opts)
}

export async function shOk (cmd: string, opts: { cwd?: string } = {}): Promise<string> {
  const r = await sh(cmd, opts)
  if (r.code !== 0) throw new Error(`${cmd} exited ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** `sha256sum` of every file under `dir`, in name order, computed by a child process (never this one: it may be a mount). */
export async function treeSums (dir: string): Promise<string> {
  return await shOk(`cd '${dir}' && find . -type f -print0 | sort -z | xargs -0 sha256sum`)
}

/**
 * Reads each file (path under `mnt`, and the SHA-256 its bytes should have) in a child process: 'ok' when it has
 * those bytes, 'EIO' when the read failed with an I/O error, else what sha256sum printed. Paths with newlines,
 * backslashes or non-ASCII bytes are left out (shell quoting).
 */
export async function readEach (mnt: string, files: Array<[string, string]>): Promise<string[]> {
  return await Promise.all(files.filter(([p]) => !/[\n\\]|[^\x00-\x7f]/.test(p)).map(async ([p, sum]) => {
    const r = await shOk(`sha256sum '${path.join(mnt, p)}' 2>&1 || true`)
    return r.includes(sum) ? 'ok' : (r.includes('Input/output error') ? 'EIO' : r)
  }))
}

export async function waitFor (cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await cond()) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return await cond()
}

/**
 * A script for a child process (`node -e RANDOM_READS MOUNTED_FILE SOURCE_FILE COUNT [OFFSET:LENGTH…]`) that preads
 * the mounted file at the given ranges and COUNT random ones and compares with the source; prints `checked N bad B`.
 */
export const RANDOM_READS = `
const fs = require('fs')
const [mnt, ref, count, ...fixed] = process.argv.slice(1)
const want = fs.readFileSync(ref)
let seed = 12345
const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
;(async () => {
  const fh = await fs.promises.open(mnt, 'r')
  const reads = fixed.map((f) => f.split(':').map(Number))
  for (let i = 0; i < Number(count); i++) reads.push([rnd(want.length), 1 + rnd(i % 3 === 0 ? 3 * 1048576 : 70000)])
  let bad = 0
  for (const [off, len] of reads) {
    const buf = Buffer.alloc(len)
    const { bytesRead } = await fh.read(buf, 0, len, off)
    const exp = want.subarray(off, off + len)
    if (bytesRead !== exp.length || !buf.subarray(0, bytesRead).equals(exp)) { bad++; console.log('MISMATCH', off, len, bytesRead, exp.length) }
  }
  await fh.close()
  console.log('checked', reads.length, 'bad', bad)
})().catch((e) => { console.log('ERROR', e.message); process.exit(1) })
`

/** Damages a file in place: byte `at` XOR `mask` (a CAR block whose hash then no longer matches). */
export function flipByte (file: string, at: number, mask: number): void {
  const fd = fs.openSync(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    fs.readSync(fd, b, 0, 1, at)
    b[0] ^= mask
    fs.writeSync(fd, b, 0, 1, at)
  } finally { fs.closeSync(fd) }
}
