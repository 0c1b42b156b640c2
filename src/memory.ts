import { setFlagsFromString } from 'node:v8'
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
 * Collects garbage now. For threads whose work allocates fast and keeps nothing (the mount's workers: node:crypto
 * allocates every opened chunk), V8 lets such garbage grow to ~64 MiB per thread before collecting; a young-generation
 * collection every few jobs costs well under a millisecond and keeps it to a few MiB. (Tried between pack's stages
 * too: no measurable effect on its peak, so not used there.)
 */
export function collectGarbage (type: 'major' | 'minor'): void {
  gc?.({ type })
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

/**
 * glibc's malloc, once its mmap threshold has risen, keeps freed 1 MiB buffers resident (native/src/addon.c): the CLI
 * fixes the threshold first thing, for every command.
 */
export function limitMallocCache (): void {
  nativeAddon()?.limitMallocCache()
}

/**
 * V8 lets a heap grow to several times its live size between full collections: at the end of packing 20 000 files,
 * 150 MB of heap held 50 MB of live data. Growing by at most 20 % keeps pack's heap near its live size, for about
 * 5 % of its time (more full collections). Not for unpack: there it cost a quarter of the time (its garbage is
 * short-lived) and its peak was within bounds anyway. Process-wide: called by the pack command.
 */
export function boundHeapGrowth (): void {
  try { setFlagsFromString('--heap-growing-percent=20') } catch {}
}
