import fs from 'node:fs/promises'
import { constants } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'

/** What the checks look at; tests replace them to simulate a machine without FUSE. */
export interface FuseEnvironment {
  devFuse: string
  /** Directories searched for fusermount (libfuse 2 looks in /usr/bin, then PATH). */
  fusermountDirs: string[]
  /** Loads fuse-native (throws when libfuse.so.2 is absent). */
  loadFuse: () => unknown
}

export function defaultEnvironment (): FuseEnvironment {
  return {
    devFuse: '/dev/fuse',
    fusermountDirs: ['/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)],
    loadFuse: () => createRequire(import.meta.url)('fuse-native'),
  }
}

const fail = (msg: string, subject?: string): never => { throw new PackerError('MOUNT', msg, { subject }) }

/** Mount points in /proc/self/mountinfo (field 5, with octal escapes undone). */
export async function mountPoints (): Promise<Set<string>> {
  let text = ''
  try { text = await fs.readFile('/proc/self/mountinfo', 'utf8') } catch { return new Set() }
  const out = new Set<string>()
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    if (f.length > 4) out.add(f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
  }
  return out
}

/**
 * Checks the mount point, before anything is opened or mounted: it must exist, be a directory, be empty and not be a
 * mount point already. Returns its absolute path.
 */
export async function checkMountpoint (mnt: string): Promise<string> {
  const abs = path.resolve(mnt)
  let st
  try {
    st = await fs.stat(abs)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) fail(`mount point ${abs} does not exist; create it first (mkdir ${JSON.stringify(abs)})`, abs)
    if (isErrno(err, 'ENOTCONN')) fail(`${abs} is a stale FUSE mount (transport endpoint is not connected), probably from a packer mount that was killed; release it with 'packer umount ${abs}' (or 'fusermount -uz ${abs}')`, abs)
    if (isErrno(err, 'ENOTDIR')) fail(`mount point ${abs} is not a directory`, abs)
    fail(`cannot use mount point ${abs}: ${(err as Error).message}`, abs)
  }
  if (!st!.isDirectory()) fail(`mount point ${abs} is not a directory; give an empty directory`, abs)
  const real = await fs.realpath(abs)
  const parent = await fs.stat(path.dirname(real)).catch(() => null)
  if ((await mountPoints()).has(real) || (parent !== null && parent.dev !== st!.dev && real !== '/')) {
    fail(`${abs} is already a mount point; unmount it first ('packer umount ${abs}') or choose another directory`, abs)
  }
  const names = await fs.readdir(abs)
  if (names.length > 0) fail(`mount point ${abs} is not empty (${names.length} entries); mount on an empty directory`, abs)
  return abs
}

/** Checks that this machine can mount FUSE file systems, and loads fuse-native. */
export async function checkFuse (env: FuseEnvironment = defaultEnvironment()): Promise<any> {
  try {
    await fs.stat(env.devFuse)
  } catch {
    fail(`${env.devFuse} does not exist: FUSE is not available here. Load the kernel module ('modprobe fuse'), or in a container run with --device /dev/fuse --cap-add SYS_ADMIN`, env.devFuse)
  }
  try {
    await fs.access(env.devFuse, constants.R_OK | constants.W_OK)
  } catch {
    fail(`cannot open ${env.devFuse} (permission denied): add yourself to the group that owns it, or mount as root`, env.devFuse)
  }
  let found = false
  for (const dir of env.fusermountDirs) {
    try { await fs.access(path.join(dir, 'fusermount'), constants.X_OK); found = true; break } catch {}
  }
  if (!found) fail("fusermount not found: install the Debian package 'fuse' (apt-get install fuse), which mounting and unmounting need")
  try {
    return env.loadFuse()
  } catch (err) {
    const msg = (err as Error).message ?? String(err)
    if (/libfuse\.so\.2/.test(msg)) fail("libfuse.so.2 not found: install the Debian package 'libfuse2' (apt-get install libfuse2; 'libfuse2t64' on Debian 13 and Ubuntu 24.04)")
    fail(`cannot load fuse-native: ${msg}; reinstall packer's dependencies (npm ci)`)
  }
}
