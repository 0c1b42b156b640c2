import type { Lease } from '../store/block-batcher.js'
import { sharedMemory } from '../memory.js'

/**
 * Most bytes of blocks laid out in one piece of shared memory, and the size of a pool's segment: one huge page (two of
 * packer's 1 MiB leaves).
 */
export const SEGMENT = 2 << 20
/** Segments of one fetching thread's pool (their memory is touched as they are first used). */
export const POOL_SEGMENTS = 32
/** Runs of fewer bytes get memory of their own: a few pages cost little, and a whole segment is not held for them. */
export const POOLED_FROM = SEGMENT / 4

/**
 * A fetching thread's segments of shared memory, reused: each block received into one is lent (the main thread and
 * the reader's workers read it where it is) and its lease counted in `leases`, shared with the main thread, which
 * frees it when nobody holds the block any more (segmentLease). A segment is taken again once the run filling it is
 * over and none of its leases is left. Fresh memory cost a page fault per 4 KiB first touched (~10-20 us on these VMs)
 * and a zeroing per request: over half the page faults of a read through a remote mount.
 */
export class SegmentPool {
  readonly #leases: Int32Array
  readonly #filling: boolean[] = []
  #memory: Buffer | undefined

  /** `leases`: from newLeases(), one count per segment. */
  constructor (leases: Int32Array) {
    this.#leases = leases
  }

  /** A segment to fill (until `filled`), or undefined when every one is being filled or lent. */
  take (): number | undefined {
    for (let i = 0; i < POOL_SEGMENTS; i++) {
      if (this.#filling[i] === true || Atomics.load(this.#leases, i) !== 0) continue
      this.#filling[i] = true
      return i
    }
    return undefined
  }

  /** The memory of segment `i` (on huge pages where the kernel has them). */
  memory (i: number): Buffer {
    this.#memory ??= sharedMemory(POOL_SEGMENTS * SEGMENT)
    return this.#memory.subarray(i * SEGMENT, (i + 1) * SEGMENT)
  }

  /** A block of segment `i` is sent on: counted until its lease is freed. */
  lend (i: number): void { Atomics.add(this.#leases, i, 1) }

  /** The run filling segment `i` is over. */
  filled (i: number): void { this.#filling[i] = false }
}

/** The lease counts of a pool, shared by its thread and the main thread. */
export function newLeases (): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * POOL_SEGMENTS))
}

/** The lease of a block received into segment `i` of the pool that counts in `leases`; freed once. */
export function segmentLease (leases: Int32Array, i: number): Lease {
  let held = true
  return {
    pins: SEGMENT,
    free: () => {
      if (!held) return
      held = false
      Atomics.sub(leases, i, 1)
    },
  }
}
