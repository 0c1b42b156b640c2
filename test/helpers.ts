import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect } from 'vitest'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const CLI = path.join(ROOT, 'dist/cli/main.js')
export const IPFS_CAR = path.join(ROOT, 'node_modules/ipfs-car/bin.js')

export interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command to completion, capturing its output. */
export function run (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv, input?: string, cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.on('error', () => {}) // the child may exit without reading its input
    child.stdin.end(opts.input ?? '')
  })
}

/** Runs the packer CLI as a user would (a real process on real files). */
export function packer (args: string[], opts: { env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<Run> {
  return run(process.execPath, [CLI, ...args], opts)
}

/** Runs packer with `preload` (an ES module's source) imported first: a fault injected into the real CLI. */
export function packerWithPreload (preload: string, args: string[]): Promise<Run> {
  const file = path.join(tmpDir(), 'preload.mjs')
  fs.writeFileSync(file, preload)
  return run(process.execPath, ['--import', file, CLI, ...args])
}

/** Runs packer and fails the test with its stderr unless it exits 0. */
export async function packerOk (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const r = await packer(args, opts)
  if (r.code !== 0) throw new Error(`packer ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return r
}

const created: string[] = []

/** A new temporary directory, removed when the test file's tests are done (tests unmount what they mount first). */
export function tmpDir (prefix = 'packer-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  created.push(dir)
  return dir
}

afterAll(() => {
  for (const dir of created.splice(0)) {
    try { fs.rmSync(dir, { recursive: true, force: true }) } catch {} // e.g. a read-only directory restored by a test
  }
})

/** Deterministic pseudo-random bytes (so failures reproduce). */
export function bytes (n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n)
  let off = 0
  let counter = 0
  while (off < n) {
    const block = crypto.createHash('sha256').update(`${seed}:${counter++}`).digest()
    const stream = crypto.createCipheriv('chacha20', block, Buffer.alloc(16))
    const chunk = stream.update(Buffer.alloc(Math.min(1 << 20, n - off)))
    chunk.copy(out, off)
    off += chunk.length
  }
  return out
}

export function sha256 (data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex')
}

export interface TreeEntry { type: 'file' | 'dir' | 'symlink', mode: number, mtimeNs: bigint, sha256?: string, size?: number, target?: string }

/** Describes a tree on disk by raw path bytes (latin1 keys): type, permission bits, mtime in ns, content hash, link target. */
export function describeTree (root: string, opts: { mtimes?: boolean } = {}): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>()
  const visit = (dir: Buffer, rel: string): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const abs = Buffer.concat([dir, Buffer.from('/'), name])
      const key = rel + name.toString('latin1')
      const st = fs.lstatSync(abs, { bigint: true })
      const base = { mode: Number(st.mode & 0o7777n), mtimeNs: opts.mtimes === false ? 0n : st.mtimeNs }
      if (st.isSymbolicLink()) out.set(key, { ...base, type: 'symlink', mode: 0, target: fs.readlinkSync(abs, { encoding: 'buffer' }).toString('latin1') })
      else if (st.isDirectory()) { out.set(key, { ...base, type: 'dir' }); visit(abs, key + '/') }
      else out.set(key, { ...base, type: 'file', size: Number(st.size), sha256: sha256(fs.readFileSync(abs)) })
    }
  }
  visit(Buffer.from(root), '')
  return out
}

/** Sets a file's mtime to an exact nanosecond value with touch(1), which passes nanoseconds to utimensat. */
export async function setMtimeNs (file: string, ns: bigint): Promise<void> {
  const s = ns / 1_000_000_000n
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0')
  const r = await run('touch', ['-h', '-d', `@${s}.${frac}`, file])
  if (r.code !== 0) throw new Error(r.stderr)
}

export function carFiles (dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.car')).sort()
}

/** The one line a failing command printed (warnings aside); fails the test unless it is exactly one line. */
export function oneLine (stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => !l.includes('warning:'))
  expect(lines).toHaveLength(1)
  return lines[0]
}
