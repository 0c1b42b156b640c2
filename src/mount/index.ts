import type { HttpTimeouts } from '../remote/http-get.js'
import type { S3Options } from '../s3/client.js'
import { execFile } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError } from '../errors.js'
import { collectWhenGrown, trimMallocInBackground } from '../memory.js'
import type { Identity } from '../crypto/index.js'
import { CarSet } from '../read/car-set.js'
import { missingCars, misnamedWarning } from '../read/availability.js'
import { SetReader } from '../read/reader.js'
import { checkFuse, checkMountpoint, mountPoints, type FuseEnvironment } from './preflight.js'
import { MountTree } from './tree.js'
import { fuseOperations } from './filesystem.js'

export { checkFuse, checkMountpoint, mountPoints } from './preflight.js'
export { DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE } from '../read/reader.js'
export type { TreeStats } from './tree.js'

export interface MountOptions {
  /** Directory (or URL, or s3://BUCKET/PREFIX) holding the CARs. */
  carDir: string
  /** Directory (or URL, or s3://BUCKET/PREFIX) holding manifest.json, the index and the table (default: carDir). */
  setDir?: string
  /** Fetch the CARs from these URL templates ({pieceCid}, {pieceCidV2}) instead of carDir. */
  pieceUrls?: string[]
  /** Timeouts of every HTTP request (a set or its CARs at URLs). */
  http?: HttpTimeouts
  /** How S3 is reached when the set or its CARs are at s3://BUCKET/PREFIX. */
  s3?: S3Options
  mountpoint: string
  /** Called before the set is opened (after the mount point and FUSE checks): e.g. asks for a passphrase. */
  identities?: () => Promise<Identity[]>
  expect?: string
  cacheSize?: number
  workers?: number
  /** Paths (entry and stat) kept in memory; default DEFAULT_NODE_CACHE. */
  nodeCache?: number
  /** Directory listings kept in memory, counted in entries; default DEFAULT_LISTING_CACHE. */
  listingCache?: number
  uid?: number
  gid?: number
  allowOther?: boolean
  allowRoot?: boolean
  log?: (line: string) => void
  env?: FuseEnvironment
}

export interface Mounted {
  mountpoint: string
  set: CarSet
  tree: MountTree
  reader: SetReader
  /** Files and entries in the set's table, and bytes of its CARs (what statfs shows). */
  files: number
  entries: number
  bytes: number
  /** CARs absent from carDir when mounting (files needing them give EIO until they are copied in). */
  missing: string[]
  /** Unmounts (lazily: programs still inside keep their view) and releases everything. */
  unmount: () => Promise<void>
  /** Resolves when the mount goes away, by unmount() or from outside (fusermount -u, packer umount). */
  closed: Promise<void>
}

/**
 * Mounts a CAR set read-only. Every check that can fail with a clear message runs before the mount: mount point,
 * FUSE on this machine, the set and its key.
 */
export async function mountSet (opts: MountOptions): Promise<Mounted> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`packer mount: ${l}\n`))
  const mountpoint = await checkMountpoint(opts.mountpoint)
  const Fuse = await checkFuse(opts.env)
  const identities = opts.identities ? await opts.identities() : []
  const set = await CarSet.open(opts.setDir ?? opts.carDir, { identities, expect: opts.expect, carDir: opts.carDir, pieceUrls: opts.pieceUrls, http: opts.http, s3: opts.s3 })
  let reader: SetReader | undefined
  try {
    const missing = (await missingCars(set)).map((i) => set.manifest.cars[i].file)
    const misnamed = await misnamedWarning(set)
    if (misnamed !== null) log(`warning: ${misnamed}`)
    reader = new SetReader(set, { cacheSize: opts.cacheSize, workers: opts.workers, readAhead: set.cars.readAhead })
    const throttled = throttle(log)
    // Nothing here reads the table: the tree looks entries up as they are asked for, so the time to mount does not
    // grow with the number of files. The root, which has no entry, shows the manifest's mtime (when the set was
    // written, or rebuilt).
    const rootMtimeMs = Math.floor(set.mtimeMs)
    const tree = new MountTree(set.files, {
      uid: opts.uid ?? process.getuid?.() ?? 0,
      gid: opts.gid ?? process.getgid?.() ?? 0,
      rootMtimeMs,
      nodeCache: opts.nodeCache,
      listingCache: opts.listingCache,
      log: throttled,
    })
    const bytes = set.manifest.cars.reduce((n, c) => n + c.size, 0)
    const ops = fuseOperations(Fuse, tree, reader, { log: throttled, entries: set.files.entryCount, bytes })
    const fuse = new Fuse(mountpoint, ops, {
      // "ro" and "use_ino" (stat shows the tree's inode numbers: entry number + 2) ride on fsname: fuse-native has
      // no option for them, and libfuse splits -o on commas.
      fsname: 'packer,ro,use_ino',
      subtype: 'packer',
      autoUnmount: true,
      allowOther: !!opts.allowOther,
      allowRoot: !!opts.allowRoot,
      kernelCache: true,
      attrTimeout: 3600,
      entryTimeout: 3600,
      acAttrTimeout: 3600,
      // A first read on a cold disk can be slow; reads still never wait on a missing CAR (that is EIO at once).
      timeout: { default: 15_000, read: 120_000 },
    })
    await new Promise<void>((resolve, reject) => {
      fuse.mount((err: Error | null) => {
        if (err) reject(new PackerError('MOUNT', `cannot mount on ${mountpoint}: ${err.message}`, { subject: mountpoint, cause: err }))
        else resolve()
      })
    })
    let done = false
    let resolveClosed!: () => void
    const closed = new Promise<void>((resolve) => { resolveClosed = resolve })
    const release = async (): Promise<void> => {
      if (done) return
      done = true
      clearInterval(watch)
      await reader!.close().catch(() => {})
      await set.close().catch(() => {})
      resolveClosed()
    }
    // Notice an unmount from outside (fusermount -u): fuse-native does not report it. Keep V8's heap near what is
    // live (collectWhenGrown). And give malloc's free pages back: the FUSE, libuv and worker threads each churn
    // buffers in their own arena, and glibc keeps what they freed (up to its trim threshold, which rises to 64 MiB):
    // after a cold diff -r of /usr/share the arenas held ~190 MB of the mount's ~430 MB, ~125 MB when trimmed once a
    // second (malloc_trim walks only the free chunks).
    const watch = setInterval(() => {
      mountPoints().then((m) => { if (!m.has(mountpoint)) void release() }, () => {})
      collectWhenGrown()
      trimMallocInBackground() // off this thread: a trim takes 10-50 ms
    }, 1000)
    const unmount = async (): Promise<void> => {
      if (done) return
      await new Promise<void>((resolve) => fuse.unmount(() => resolve()))
      await release()
    }
    return { mountpoint, set, tree, reader, files: set.files.fileCount, entries: set.files.entryCount, bytes, missing, unmount, closed }
  } catch (err) {
    await reader?.close().catch(() => {})
    await set.close().catch(() => {})
    throw err
  }
}

/** The same line at most once a minute (a failing read is retried by the kernel and by programs). */
function throttle (log: (l: string) => void): (l: string) => void {
  const last = new Map<string, number>()
  return (line) => {
    const now = Date.now()
    if ((last.get(line) ?? 0) > now - 60_000) return
    if (last.size > 10_000) last.clear()
    last.set(line, now)
    log(line)
  }
}

/** Unmounts a packer (or any FUSE) mount with fusermount; `lazy` detaches it even while in use. */
export async function unmountPath (mountpoint: string, lazy = false): Promise<void> {
  const path = await import('node:path')
  const abs = path.resolve(mountpoint)
  if (!(await mountPoints()).has(abs)) throw new PackerError('MOUNT', `${abs} is not a mount point`, { subject: abs })
  await new Promise<void>((resolve, reject) => {
    execFile('fusermount', [lazy ? '-uz' : '-u', abs], (err, _out, stderr) => {
      if (err === null) return resolve()
      const why = (stderr || err.message).trim().split('\n')[0]
      const hint = /busy/i.test(why) ? '; close the programs using it, or pass --lazy' : ''
      reject(new PackerError('MOUNT', `cannot unmount ${abs}: ${why}${hint}`, { subject: abs }))
    })
  })
}
