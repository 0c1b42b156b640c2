import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { nativeAddon } from './native-addon.js'

type Gc = (opts?: { type: 'major' | 'minor' }) => void

/** V8's gc(), reached without --expose-gc on the command line; undefined if this V8 refuses. */
const gc: Gc | undefined = (() => {
  try {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as Gc
  } catch { return undefined }
})()

/**
 * Collects garbage now. 'minor': the young generation, for threads whose work allocates fast and keeps nothing (the
 * mount's and pack's workers: node:crypto allocates every sealed or opened chunk; V8 lets such garbage grow to
 * ~64 MiB per thread, a young-generation collection every few jobs costs well under a millisecond). 'major': the whole
 * heap, between pack's stages. (gc({ type: 'major' }) collects almost nothing in Node 20; gc() does a full collection.)
 */
export function collectGarbage (type: 'major' | 'minor'): void {
  if (type === 'major') gc?.()
  else gc?.({ type })
}

/**
 * Makes `s` a flat string, in place. Strings built piece by piece (multiformats' base32 encoding of a CID is ~47
 * concatenations) are ropes in V8: ~1.5 KB for a 59-character CID, kept by every holder of that string (the file
 * table and the CID's own cache of its text). Reading a character flattens the rope in place, so every holder
 * then shares the flat copy and the pieces become garbage. Measured: 30 MB of ropes for 20 000 files before.
 */
export function flatten (s: string): string {
  if (s.length > 0) s.charCodeAt(0)
  return s
}

/** Gives the free pages of every malloc arena back to the system (after a stage whose threads churned buffers). */
export function trimMalloc (): void {
  nativeAddon()?.trimMalloc()
}

/** The same on a thread of libuv's pool, for a process that must keep answering meanwhile (the mount). */
export function trimMallocInBackground (): void {
  nativeAddon()?.trimMallocInBackground()
}

const HUGE_PAGE = 2 * 1024 * 1024

/**
 * `length` bytes of fresh shared memory, on huge pages where there are whole ones to be had (native hugePagesAt): for
 * a thread that receives megabytes a second into new memory, first touches of 4 KiB pages were most of its CPU. The
 * SharedArrayBuffer is up to 2 MiB larger than asked for, to start on a boundary; that part is never touched, so it
 * costs address space only.
 */
export function sharedMemory (length: number): Buffer {
  const addon = nativeAddon()
  if (addon === null || length < HUGE_PAGE) return Buffer.from(new SharedArrayBuffer(length))
  const sab = new SharedArrayBuffer(length + HUGE_PAGE - 1)
  const at = addon.hugePagesAt(new Uint8Array(sab), length)
  return Buffer.from(sab, Math.max(at, 0), length)
}

/** Heap in use after this thread's last collection by collectWhenGrown. */
let usedAfterCollect = 0
const HEAP_COLLECT_FLOOR = 64 * 1024 * 1024

/**
 * A full collection when the heap in use has grown past max(64 MiB, twice what the last one left), for a process that
 * runs for days with little live data (the mount). V8 lets the old generation fill to its first limit (~130 MiB on
 * this machine) before its first full collection: a cold `diff -r` of /usr/share through the mount had ~37 MiB live
 * and ~140 MiB of heap, and peaked at 350-420 MB RSS; called once a second, two collections of ~37 ms each in the
 * 45 s run held the heap under 102 MiB and the peak at 283 MB, in the same time.
 */
export function collectWhenGrown (): void {
  const used = getHeapStatistics().used_heap_size
  if (used < Math.max(HEAP_COLLECT_FLOOR, 2 * usedAfterCollect)) return
  collectGarbage('major')
  usedAfterCollect = getHeapStatistics().used_heap_size
}

/** Shared memory taken (see sharedMemoryTaken) since this thread's last full collection. */
let sharedSinceCollect = 0
const SHARED_COLLECT_AFTER = 32 * 1024 * 1024

/**
 * Notes that this thread took handles to `bytes` of shared memory (blocks, GET buffers). V8 does not count shared
 * memory toward its next collection, and a thread that makes little other garbage let dead handles pile up, each
 * keeping its memory (pack from S3 peaked at 501 MB for 0.5 GB read; unpack of a 256 MiB file over HTTP at 443 MB,
 * 231-244 MB with this; time and CPU the same). So a full collection follows every max(32 MiB, half the heap in use):
 * minor ones do not do, a handle kept a while is promoted; what collecting costs per byte does not grow with the heap.
 */
export function sharedMemoryTaken (bytes: number): void {
  sharedSinceCollect += bytes
  if (sharedSinceCollect < Math.max(SHARED_COLLECT_AFTER, getHeapStatistics().used_heap_size / 2)) return
  sharedSinceCollect = 0
  collectGarbage('major')
}
