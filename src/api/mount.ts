import { spawn, execFile, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PackerError, type ErrorCode } from '../errors.js'
import { unmountPath } from '../mount/index.js'
import { identitySources, passphraseText, type KeyOptions } from './keys.js'
import type { S3Access } from './s3.js'

/** The CLI that runs a mount: <package>/dist/cli/main.js (this module is in src/api or dist/api). */
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
/** The mount process writes its error here as JSON (see src/cli/main.ts) before it exits. */
const ERROR_FD = 3
/** How long unmount() waits for the mount process before it detaches the mount and kills it. */
const UNMOUNT_WAIT_MS = 15_000

export interface MountOptions extends KeyOptions, S3Access {
  /** Refuse the set unless its set ID (printed by pack) is this one. */
  expect?: string
  /** Directory, URL or s3://BUCKET/PREFIX holding manifest.json, blocks.idx and the table, when not beside the CARs. */
  manifest?: string
  /** Fetch the CARs from these URL templates ({pieceCid}, {pieceCidV2}; storage providers' /piece/ URLs), in order. */
  pieceUrls?: string[]
  /** Decrypted, verified data kept in memory: bytes, or text such as `512MiB` (default 128 MiB, at least 4 MiB). */
  cacheSize?: number | string
  /** Owner and group shown for every file (default: the caller's). */
  uid?: number
  gid?: number
  /** FUSE's allow_other and allow_root. */
  allowOther?: boolean
  allowRoot?: boolean
  /** The mount's log lines: files it could not read (missing CAR, damaged block), names shown changed. */
  onWarning?: (message: string) => void
}

export interface MountHandle {
  /** The mount point, absolute. */
  readonly mountpoint: string
  /** Unmounts and waits for the mount process to end. */
  unmount: () => Promise<void>
  /** Resolves when the mount is gone: by unmount(), from outside (`packer umount`, fusermount -u) or a crash. */
  readonly closed: Promise<void>
}

const running = new Set<ChildProcess>()
let exitHook = false

/** The CLI arguments and environment that carry the options to the mount process: keys never in argv. */
async function mountCommand (carDir: string, mountpoint: string, o: MountOptions): Promise<{ args: string[], env: NodeJS.ProcessEnv, stdin: string }> {
  const { files, texts } = identitySources(o.identities)
  const args = [CLI, 'mount', carDir, mountpoint, ...files.flatMap((f) => ['-i', f])]
  if (texts.length > 0) args.push('-i', '-')
  const env: NodeJS.ProcessEnv = { ...process.env, PACKER_ERROR_FD: String(ERROR_FD) }
  delete env.PACKER_PASSPHRASE
  if (o.passphrase !== undefined) {
    env.PACKER_PASSPHRASE = await passphraseText(o.passphrase)
    args.push('--passphrase')
  }
  if (o.expect !== undefined) args.push('--expect', o.expect)
  if (o.manifest !== undefined) args.push('--manifest', o.manifest)
  for (const t of o.pieceUrls ?? []) args.push('--piece-url', t)
  if (o.s3Endpoint !== undefined) args.push('--s3-endpoint', o.s3Endpoint)
  if (o.s3PathStyle === true) args.push('--s3-path-style')
  if (o.s3Timeout !== undefined) args.push('--s3-timeout', String(o.s3Timeout))
  if (o.cacheSize !== undefined) args.push('--cache-size', String(o.cacheSize))
  if (o.uid !== undefined) args.push('--uid', String(o.uid))
  if (o.gid !== undefined) args.push('--gid', String(o.gid))
  const fuse = [o.allowOther ? 'allow_other' : '', o.allowRoot ? 'allow_root' : ''].filter(Boolean)
  if (fuse.length > 0) args.push('-o', fuse.join(','))
  return { args, env, stdin: texts.map((t) => t.text.trimEnd() + '\n').join('') }
}

/** The error the mount process reported on its error descriptor, or one made from its last line. */
function mountError (reported: string, stderr: string, code: number | null, signal: string | null): PackerError {
  try {
    const e = JSON.parse(reported) as { code: ErrorCode, message: string, exitCode: number, subject?: string }
    return new PackerError(e.code, e.message, { exitCode: e.exitCode, subject: e.subject })
  } catch {
    const last = stderr.trim().split('\n').pop()?.replace(/^packer: /, '')
    return new PackerError('MOUNT', last || `the mount process ended before mounting (${signal ?? `exit code ${code}`})`)
  }
}

/**
 * `packer mount`: mounts a set read-only with FUSE, in a child process running packer's CLI (a FUSE file system
 * served by the caller's own thread would deadlock any synchronous fs call the caller made into it). Resolves once
 * the file system is ready; rejects with the mount's error (wrong key, mount point in use, no FUSE…) otherwise.
 */
export async function mount (carDir: string, mountpoint: string, options: MountOptions = {}): Promise<MountHandle> {
  const { args, env, stdin } = await mountCommand(carDir, mountpoint, options)
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] })
  running.add(child)
  if (!exitHook) {
    exitHook = true
    // A mount must not outlive the program that made it: the child unmounts on SIGTERM.
    process.on('exit', () => { for (const c of running) c.kill('SIGTERM') })
  }
  child.stdin!.on('error', () => {}) // the child may fail before reading its keys
  child.stdin!.end(stdin)
  let reported = ''
  let stderr = ''
  let ready = false
  child.stdio[ERROR_FD]!.on('data', (d: Buffer) => { reported += d.toString() })
  child.stderr!.setEncoding('utf8')
  let partial = ''
  child.stderr!.on('data', (d: string) => {
    const lines = (partial + d).split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      stderr += line + '\n'
      const log = /^packer(?: mount|: warning): (.*)$/.exec(line)
      if (log && !log[1].startsWith('unmounted ')) options.onWarning?.(log[1])
    }
  })
  const closed = new Promise<{ code: number | null, signal: string | null }>((resolve) => {
    child.on('close', (code, signal) => { running.delete(child); resolve({ code, signal }) })
  })
  await new Promise<void>((resolve, reject) => {
    let stdout = ''
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (d: string) => {
      stdout += d
      if (!ready && /^mounted set .*\n/.test(stdout)) { ready = true; resolve() }
    })
    child.on('error', (err) => reject(new PackerError('MOUNT', `cannot start the mount process: ${err.message}`, { cause: err })))
    void closed.then(({ code, signal }) => { if (!ready) reject(mountError(reported, stderr + partial, code, signal)) })
  })
  const abs = path.resolve(mountpoint)
  return {
    mountpoint: abs,
    closed: closed.then(() => {}),
    unmount: async () => {
      if (!running.has(child)) return
      child.kill('SIGTERM')
      const stuck = setTimeout(() => {
        execFile('fusermount', ['-uz', abs], () => child.kill('SIGKILL'))
      }, UNMOUNT_WAIT_MS)
      await closed
      clearTimeout(stuck)
    },
  }
}

/** `packer umount`: unmounts a mount point (fusermount -u); `lazy` detaches it even while programs use it. */
export async function unmount (mountpoint: string, options: { lazy?: boolean } = {}): Promise<void> {
  await unmountPath(mountpoint, !!options.lazy)
}
