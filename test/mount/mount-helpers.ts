import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
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

export async function waitFor (cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await cond()) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return await cond()
}
