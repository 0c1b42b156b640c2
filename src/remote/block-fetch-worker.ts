/**
 * A thread that fetches blocks from web servers (src/remote/block-fetcher.ts): for each run it is given, one GET of a
 * byte range of a CAR, each block gathered as its pieces come, its SHA-256 checked against its CID as soon as it is
 * in, and the block sent back at once. Receiving and hashing cost CPU (node:http took a core per ~300-500 MB/s;
 * src/net/http1-client.ts a third of that); on the mount's main thread they held up the FUSE handlers and capped a
 * remote mount at half a local one. The blocks come back in shared
 * memory they were read into: the main thread and the reader's workers use them where they are.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createHash } from 'node:crypto'
import { HttpGetError, httpGetRange, type HttpTimeouts } from './http-get.js'
import { collectGarbage, sharedMemory } from '../memory.js'
import { POOLED_FROM, SEGMENT, SegmentPool } from './segment-pool.js'

export interface FetchJob {
  id: number
  url: string
  /** Bytes [from, to) of the CAR at url: the blocks, and the few bytes between them (section heads). */
  from: number
  to: number
  /** In offset order, inside [from, to), not overlapping. */
  blocks: Array<{ offset: number, length: number, digest: Uint8Array }>
  timeouts: HttpTimeouts
}

export type FetchResult =
  /**
   * Block `block` of the job arrived and matches its CID (sent as each one completes, before the GET ends); in
   * segment `segment` of the thread's pool (its lease to be freed: src/remote/segment-pool.ts), or -1: in memory of
   * its own.
   */
  | { id: number, block: number, bytes: SharedArrayBuffer, offset: number, length: number, segment: number }
  /** The job is over: every block was sent. */
  | { id: number, ok: true }
  /** The GET failed (an HttpGetError's parts), or something else did (`status` and `transient` then absent). */
  | { id: number, ok: false, what: string, status?: number, transient?: boolean, retryAfter?: number }
  /** The server sent bytes that do not hash to block `bad`'s CID (the GET is given up). */
  | { id: number, ok: false, bad: number }

/** Stops a job's GET at once (its pieces must not be put anywhere). */
class WrongBytes extends Error { constructor (readonly block: number) { super('wrong bytes') } }

/** Where the few bytes between two blocks (a section's head) are read. */
const between = Buffer.allocUnsafe(64 << 10)

/**
 * Fetches a job's range, each block read straight into shared memory (a direct connection reads there: nothing is
 * copied; V8 copies into shared memory from JavaScript 4 times slower than into ordinary memory, and byte by byte,
 * 15-25 times slower, where the two offsets differ in alignment, as a body's pieces do): a segment of `pool`, or
 * memory of its own where none is free. Checks each block as soon as its last byte is in and sends it on at once (a
 * reader waiting for the first block of an 8 MiB run does not wait for the other 7 MiB).
 */
export async function fetchBlocks (job: FetchJob, send: (r: FetchResult) => void, pool?: SegmentPool): Promise<void> {
  const { id, from, blocks } = job
  const into: Array<Buffer | undefined> = new Array(blocks.length)
  const segmentOf: number[] = new Array(blocks.length)
  const taken: number[] = [] // segments of the pool this job fills
  let laidOut = 0 // blocks given memory so far
  const blockBuffer = (i: number): Buffer => {
    if (i >= laidOut) laidOut = layOut(blocks, laidOut, into, segmentOf, taken, pool)
    return into[i]!
  }
  let k = 0 // first block not yet complete: pieces come in order
  const check = (i: number): void => {
    const g = blockBuffer(i)
    into[i] = undefined
    if (!createHash('sha256').update(g).digest().equals(blocks[i]!.digest)) throw new WrongBytes(i)
    const segment = segmentOf[i]!
    if (segment >= 0) pool!.lend(segment)
    send({ id, block: i, bytes: g.buffer as SharedArrayBuffer, offset: g.byteOffset, length: g.length, segment })
  }
  /** The rest of block k from `start` on, or the gap before it. */
  const place = (at: number, max: number): Buffer | undefined => {
    const start = from + at
    const b = blocks[k]
    if (b === undefined || max === 0) return undefined
    if (start < b.offset) return between.subarray(0, Math.min(max, b.offset - start, between.length))
    return blockBuffer(k).subarray(start - b.offset, Math.min(b.length, start - b.offset + max))
  }
  try {
    await httpGetRange(job.url, from, job.to, (piece, at) => {
      const start = from + at
      const end = start + piece.length
      for (let i = k; i < blocks.length && blocks[i]!.offset < end; i++) {
        const b = blocks[i]!
        const lo = Math.max(start, b.offset)
        const hi = Math.min(end, b.offset + b.length)
        if (lo < hi) {
          const g = blockBuffer(i)
          // read there already (place), or from the connection's own memory
          if (piece.buffer !== g.buffer || piece.byteOffset + (lo - start) !== g.byteOffset + (lo - b.offset)) piece.copy(g, lo - b.offset, lo - start, hi - start)
        }
        if (hi === b.offset + b.length && i === k) { check(i); k++ }
      }
    }, job.timeouts, place)
    // blocks of no bytes, at the end
    for (; k < blocks.length; k++) check(k)
  } catch (err) {
    if (err instanceof WrongBytes) return send({ id, ok: false, bad: err.block })
    if (err instanceof HttpGetError) return send({ id, ok: false, what: err.what, status: err.status, transient: err.transient, retryAfter: err.retryAfter })
    return send({ id, ok: false, what: (err as Error).message })
  } finally {
    for (const segment of taken) pool!.filled(segment)
  }
  send({ id, ok: true })
}

/**
 * Gives blocks `first`… memory, side by side in one piece of at most SEGMENT bytes (one block at least): a free
 * segment of the pool (touched before: no page faults), else, for a small piece or with none free, fresh shared memory
 * (on huge pages where it holds whole ones: src/memory.ts). Returns the first block left without memory.
 */
function layOut (blocks: FetchJob['blocks'], first: number, into: Array<Buffer | undefined>, segmentOf: number[], taken: number[], pool: SegmentPool | undefined): number {
  let end = first
  let length = 0
  while (end < blocks.length && (end === first || length + blocks[end]!.length <= SEGMENT)) length += blocks[end++]!.length
  const segment = length >= POOLED_FROM && length <= SEGMENT ? pool?.take() ?? -1 : -1
  if (segment >= 0) taken.push(segment)
  else unpooled += length
  const memory = segment >= 0 ? pool!.memory(segment) : sharedMemory(length)
  for (let i = first, at = 0; i < end; at += blocks[i++]!.length) {
    into[i] = memory.subarray(at, at + blocks[i]!.length)
    segmentOf[i] = segment
  }
  return end
}

/**
 * A young-generation collection every this many bytes fetched into memory of their own. This thread makes little
 * garbage of its own, so V8 rarely collects here, and each dead handle to a block's shared memory kept that memory
 * from being freed (the other threads had long dropped theirs): the mount's RSS grew by ~100 MB over a 256 MiB read.
 */
const COLLECT_EVERY = 16 << 20
let unpooled = 0

if (parentPort !== null) {
  const port = parentPort
  const pool = new SegmentPool((workerData as { leases: Int32Array }).leases)
  port.on('message', (job: FetchJob) => {
    void fetchBlocks(job, (r) => { port.postMessage(r) }, pool).finally(() => {
      if (unpooled < COLLECT_EVERY) return
      unpooled = 0
      collectGarbage('minor')
    })
  })
}
