/**
 * A reader worker thread (src/read/pool.ts): preads one leaf block from its CAR (the descriptor is shared with the
 * main thread; a remote store hands over the bytes instead), checks its SHA-256 against the CID, and for encrypted files opens the age chunks inside it, plus the
 * chunk that starts in it and ends in the next leaf (its remaining bytes are pread from the next leaf's place; the
 * main thread serves that chunk only once the next leaf has passed its own hash check). Plaintext is written straight
 * into a slot of a SharedArrayBuffer shared with the main thread (the cache's memory): nothing is allocated,
 * transferred or collected per leaf. The main thread (the mount's FUSE handlers, unpack) only copies plaintext out;
 * hashing and decryption, the costly part, run here. Frames of compressed files are decompressed here too
 * (src/read/frame-job.ts).
 */
import { parentPort } from 'node:worker_threads'
import { createHash } from 'node:crypto'
import { read } from 'node:fs'
import { TAG, CHUNK, NONCE, openChunksInto, payloadKey } from './chunks.js'
import { collectGarbage } from '../memory.js'
import { nativeOpenFile } from '../crypto/native-open.js'
import type { Place } from '../store/car-store.js'
import { isFrameJob, runFrameJob, type FrameJob, type FrameResult } from './frame-job.js'

/** The slab's slots start at byte `slabAt` of its memory (aligned to a huge page: src/memory.ts). */
export interface InitMessage { init: true, slab: SharedArrayBuffer, slabAt: number, slotSize: number }

export interface LeafJob {
  id: number
  /** Slot of the slab that receives the plaintext (assigned when the job is handed to a worker). */
  slot: number
  at: Place
  length: number
  digest: Uint8Array
  dec?: {
    /** The payload key, or null to derive it from the file key and the nonce at `nonceAt` in this leaf. */
    key: Uint8Array | null
    fileKey?: Uint8Array
    nonceAt?: number
    /** Chunks wholly inside the leaf: [first, first + count), the first at byte firstAt of the leaf. */
    first: number
    count: number
    firstAt: number
    /** The chunk after them starts in this leaf and ends in the next: its remaining bytes are the first `length` at next. */
    next?: { at: Place, length: number }
    /** Chunks a reader waits for: opened first and reported at once (a `partial` result), then the rest. */
    want?: [number, number]
    /** Index of the file's final chunk and its plaintext length. */
    lastIndex: number
    lastPlain: number
  }
}

export type LeafResult =
  | { id: number, ok: true, partial?: [number, number], dataLength: number, count?: number, key?: ArrayBuffer }
  | { id: number, ok: false, kind: 'truncated' | 'hash' | 'auth' | 'io', chunk?: number, message: string }

/**
 * Decipher.update allocates each opened chunk's plaintext (node:crypto has no decrypt-into), 16 buffers per leaf, and
 * V8 collects them only once ~64 MiB of such garbage has piled up per thread; that pile (and the allocator's memory
 * kept after it) was most of the mount's memory above its cache. A young-generation collection every 8 MiB of
 * leaves (8 full leaves), where nearly everything is garbage, keeps it near 8 MiB per thread (every 4: 10% slower,
 * 8 MiB less). Counted in bytes, not leaves: a collection costs the same after 8 small files as after 8 MiB.
 */
const COLLECT_EVERY = 8 * 1024 * 1024
let sinceCollect = 0

/** Read buffers: one per job in flight (a worker holds two: one is read while the other is hashed and opened). */
const scratches: Buffer[] = []

/**
 * Puts the first `length` bytes of a place into `into` at `at`: bytes handed over are copied, a descriptor is pread (on
 * the libuv thread pool: this thread keeps computing meanwhile). Fewer only at a CAR's end.
 */
async function readPlace (place: Place, into: Buffer, at: number, length: number): Promise<number> {
  if ('bytes' in place) return Buffer.from(place.bytes.buffer, place.bytes.byteOffset, Math.min(length, place.bytes.length)).copy(into, at)
  const { fd, offset } = place
  let done = 0
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => {
      read(fd, into, at + done, length - done, offset + done, (err, k) => { if (err) reject(err); else resolve(k) })
    })
    if (n === 0) return done
    done += n
  }
  return done
}

/**
 * Runs one job, writing the leaf's plaintext into `out` (its slot of the slab) and its results through `post`: on a
 * worker thread, or on the main thread for a small leaf (src/read/reader.ts), where the hops to a worker and back
 * cost more than the work.
 */
export async function runJob (job: LeafJob, out: Buffer, post: (r: LeafResult) => void): Promise<void> {
  const d = job.dec
  const extra = d?.next?.length ?? 0
  let scratch: Buffer | undefined
  if (d !== undefined) {
    scratch = scratches.pop()
    if (scratch === undefined || scratch.length < job.length + extra) scratch = Buffer.allocUnsafeSlow(Math.max(job.length + extra, 1024 * 1024 + 2 * CHUNK))
  }
  try {
    await runWith(job, out, post, scratch)
  } finally {
    if (scratch !== undefined && scratches.length < 4) scratches.push(scratch)
  }
}

async function runWith (job: LeafJob, out: Buffer, post: (r: LeafResult) => void, scratch: Buffer | undefined): Promise<void> {
  const { id } = job
  const d = job.dec
  // Bytes a store handed over (shared memory a fetching thread filled) are opened where they are; a leaf in a CAR file
  // is read: a clear file's straight into its slot, an encrypted one's into a scratch buffer, followed by the
  // straddling chunk's remaining bytes from the next leaf (so that sealed chunk is contiguous).
  const handed = d !== undefined && 'bytes' in job.at ? job.at.bytes : undefined
  const leaf = d === undefined ? out.subarray(0, job.length) : handed !== undefined ? Buffer.from(handed.buffer, handed.byteOffset, Math.min(handed.length, job.length)) : scratch!.subarray(0, job.length)
  // where the straddler's bytes from the next leaf go: after the leaf, or after a copy of its part in a handed leaf
  const straddleAt = d?.next === undefined ? 0 : handed === undefined ? job.length : job.length - sealedStart(d, d.count)
  let nextGot = 0
  try {
    const [got, ng] = await Promise.all([
      handed !== undefined ? leaf.length : readPlace(job.at, leaf, 0, job.length),
      d?.next !== undefined ? readPlace(d.next.at, scratch!, straddleAt, d.next.length).catch(() => 0) : 0,
    ])
    nextGot = ng
    if (got < job.length) {
      return post({ id, ok: false, kind: 'truncated', message: 'the CAR ends before the block does' })
    }
  } catch (err) {
    return post({ id, ok: false, kind: 'io', message: (err as Error).message })
  }
  // Bytes handed over were checked by their store (it needs to know, to drop a source that sends wrong ones).
  if (!('bytes' in job.at) && !createHash('sha256').update(leaf).digest().equals(job.digest)) return post({ id, ok: false, kind: 'hash', message: 'does not match its hash' })
  if (d === undefined) return post({ id, ok: true, dataLength: job.length })
  const whole = d.key === null && d.first === 0 && d.count === d.lastIndex + 1 && d.next === undefined ? openWhole(leaf, d, out) : null
  if (whole !== null) return post({ id, ok: true, dataLength: whole, count: d.count })
  let key = d.key
  let keyOut: ArrayBuffer | undefined
  if (key === null) {
    key = payloadKey(d.fileKey!, leaf.subarray(d.nonceAt!, d.nonceAt! + NONCE))
    keyOut = new ArrayBuffer(key.length)
    new Uint8Array(keyOut).set(key)
  }
  let count = d.count
  let straddler: Buffer | undefined
  if (d.next !== undefined && nextGot === d.next.length) {
    count++
    if (handed !== undefined) leaf.copy(scratch!, 0, sealedStart(d, d.count))
    straddler = scratch!.subarray(handed === undefined ? sealedStart(d, d.count) : 0, straddleAt + nextGot)
  }
  const plainOf = (n: number): number => n === 0 ? 0 : (n - 1) * CHUNK + (d.first + n - 1 === d.lastIndex ? d.lastPlain : CHUNK)
  /** Opens chunks [i0, i1] of the leaf, the straddler last: false once a failure is posted. */
  const opened = (i0: number, i1: number): boolean => {
    if (i0 > i1) return true
    const inside = Math.max(0, Math.min(i1 + 1, d.count) - i0)
    const n = inside === 0 ? 0 : openChunksInto(key!, d.first + i0, inside, d.lastIndex, d.lastPlain, leaf.subarray(sealedStart(d, i0)), out, i0 * CHUNK)
    if (n < inside) {
      post({ id, ok: false, kind: 'auth', chunk: d.first + i0 + n, message: `age chunk ${d.first + i0 + n} failed authentication` })
      return false
    }
    // The straddling chunk's bytes in the next leaf are not hash-checked here: a failure there is left to that leaf's
    // own check (the reader then names its CAR); this leaf is served without that chunk.
    if (i1 >= d.count && straddler !== undefined && openChunksInto(key!, d.first + d.count, 1, d.lastIndex, d.lastPlain, straddler, out, d.count * CHUNK) !== 1) count = d.count
    return true
  }
  // Not the whole leaf wanted: the wanted chunks first, said at once (an empty range when none is in this leaf: the
  // reader then knows the leaf passed its check), then those before and after them.
  const w0 = d.want === undefined ? 0 : Math.max(d.want[0] - d.first, 0)
  const w1 = d.want === undefined ? count - 1 : Math.min(d.want[1] - d.first, count - 1)
  if (w0 > 0 || w1 < count - 1) {
    if (!opened(w0, w1)) return
    post({ id, ok: true, partial: [d.first + w0, d.first + Math.min(w1, count - 1)], dataLength: 0, key: keyOut })
    // (a want beyond this leaf leaves w0 past its chunks, one before it w1 below 0)
    const before = Math.min(w0, count)
    if (!opened(0, before - 1) || !opened(Math.max(w1 + 1, before), count - 1)) return
  } else if (!opened(0, count - 1)) return
  post({ id, ok: true, dataLength: plainOf(count), count, key: keyOut })
}

/** Where sealed chunk i of a leaf job (counted from its first chunk inside the leaf) starts in the leaf. */
function sealedStart (d: NonNullable<LeafJob['dec']>, i: number): number {
  return d.firstAt + i * (CHUNK + TAG)
}

/**
 * A leaf that is a whole age file (a small file's only block: header, nonce, every chunk) opened in one native call
 * (native/src/age.c), plaintext into `out`; its length. In JavaScript each file costs an HKDF and a decipher per chunk,
 * which in a tree of small files (diff -r) is most of the mount's time per file. Null when the addon is absent or the
 * file does not open there: the chunks are then opened one by one, which names the chunk that fails.
 */
function openWhole (leaf: Buffer, d: NonNullable<LeafJob['dec']>, out: Buffer): number | null {
  const plain = nativeOpenFile(d.fileKey!, leaf)
  if (plain === null || plain.length !== (d.count - 1) * CHUNK + d.lastPlain) return null
  return plain.copy(out, 0)
}

if (parentPort !== null) {
  const port = parentPort
  let slab: SharedArrayBuffer | undefined
  let slabAt = 0
  let slotSize = 0
  const post = (r: LeafResult): void => { port.postMessage(r) }
  port.on('message', (m: LeafJob | FrameJob | InitMessage) => {
    if ('init' in m) { slab = m.slab; slabAt = m.slabAt; slotSize = m.slotSize; return }
    if (isFrameJob(m)) {
      void runFrameJob(m).then(([r, transfer]: [FrameResult, ArrayBuffer[]]) => { port.postMessage(r, transfer) })
      return
    }
    const out = Buffer.from(slab!, slabAt + m.slot * slotSize, slotSize)
    runJob(m, out, post).catch((err: Error) => { post({ id: m.id, ok: false, kind: 'io', message: err.message }) }).finally(() => {
      sinceCollect += m.length
      if (sinceCollect >= COLLECT_EVERY) {
        sinceCollect = 0
        collectGarbage('minor')
      }
    })
  })
}
