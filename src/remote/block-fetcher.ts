import { SHARE_ENV, Worker } from 'node:worker_threads'
import { PackerError } from '../errors.js'
import type { BlockAt } from '../store/car-store.js'
import type { Lease } from '../store/block-batcher.js'
import { sharedMemoryTaken } from '../memory.js'
import { compiledModule, terminateWorkers } from '../worker-module.js'
import { HttpGetError, type HttpTimeouts } from './http-get.js'
import type { FetchJob, FetchResult } from './block-fetch-worker.js'
import { newLeases, segmentLease } from './segment-pool.js'

const WORKER_MODULE = compiledModule(new URL('./block-fetch-worker.js', import.meta.url), 'remote/block-fetch-worker.js')

/** How one GET of a run of blocks ended: every block given, or the index of the block that hashed wrong. */
export type Fetched = { bad?: number }

/** `got`: a block in (leased: in the thread's pool of memory, until the lease is freed). */
interface Pending { url: string, got: (block: number, bytes: Buffer, lease?: Lease) => void, resolve: (r: Fetched) => void, reject: (e: Error) => void }

/** A fetching thread and the runs it has in hand. */
interface Thread { w: Worker, pending: Map<number, Pending> }

/**
 * Fetches runs of blocks on threads of their own (src/remote/block-fetch-worker.ts): the HTTP, the copying and the
 * hashing happen there; the caller (HttpCars, on the mount's main thread) hears only of checked blocks. A run goes to
 * the thread with the fewest in hand (one thread receives ~300 MB/s at most). The threads start together on first
 * use; idle ones do not keep the process alive. They share the process's environment, so proxy variables read at
 * each request are the process's own. A thread that dies fails its runs with a PackerError; the next run starts a
 * new one.
 */
export class BlockFetcher {
  readonly #threads: Array<Thread | undefined>
  #nextId = 1
  #closed = false

  constructor (threads = 2) {
    this.#threads = new Array<Thread | undefined>(Math.max(1, threads)).fill(undefined)
  }

  /**
   * Bytes [from, to) of `url`, as the blocks `blocks` (in offset order, inside the range): each checked block is given
   * to `got` as soon as it is in (by its index in `blocks`, in order), with its lease when it lies in the thread's
   * pool (src/remote/segment-pool.ts: the memory is reused once the lease is freed). Throws an HttpGetError when the
   * GET fails (the blocks given so far are good); wrong bytes are an answer ({ bad }), for the caller to drop the
   * source.
   */
  async blocks (url: string, from: number, to: number, blocks: BlockAt[], timeouts: HttpTimeouts, got: Pending['got']): Promise<Fetched> {
    if (this.#closed) throw new PackerError('REMOTE', 'the reader is closing')
    const id = this.#nextId++
    // Each digest copied: a CID's multihash is a view into a larger buffer, all of which a post would copy.
    const job: FetchJob = { id, url, from, to, timeouts, blocks: blocks.map((b) => ({ offset: b.offset, length: b.length, digest: b.cid.multihash.digest.slice() })) }
    const t = this.#least()
    return await new Promise<Fetched>((resolve, reject) => {
      if (t.pending.size === 0) t.w.ref() // a run in flight keeps the process alive
      t.pending.set(id, { url, got, resolve, reject })
      t.w.postMessage(job)
    })
  }

  /**
   * The thread with the fewest runs in hand: an idle one not started yet is started. At first use every thread starts:
   * a thread takes ~200 ms to start while a mount reads, and runs handed to the second one, started only once the
   * first was busy, held a sequential reader up that long (4 MiB read in 320 ms against 190 locally).
   */
  #least (): Thread {
    if (this.#threads.every((t) => t === undefined)) for (let i = 1; i < this.#threads.length; i++) this.#start(i)
    let best: Thread | undefined
    for (const [i, t] of this.#threads.entries()) {
      if (t === undefined) {
        if (best === undefined || best.pending.size > 0) return this.#start(i)
        continue
      }
      if (best === undefined || t.pending.size < best.pending.size) best = t
    }
    return best!
  }

  #start (i: number): Thread {
    const leases = newLeases()
    const w = new Worker(WORKER_MODULE, { env: SHARE_ENV, workerData: { leases } })
    const t: Thread = { w, pending: new Map() }
    w.unref()
    w.on('message', (r: FetchResult) => {
      const p = t.pending.get(r.id)
      if ('block' in r) {
        const lease = r.segment >= 0 ? segmentLease(leases, r.segment) : undefined
        if (p === undefined) { lease?.free(); return }
        if (lease === undefined) sharedMemoryTaken(r.length) // its handle here pins the block's memory until collected
        p.got(r.block, Buffer.from(r.bytes, r.offset, r.length), lease)
        return
      }
      if (p === undefined) return
      t.pending.delete(r.id)
      if (t.pending.size === 0) w.unref()
      if (r.ok) p.resolve({})
      else if ('bad' in r) p.resolve({ bad: r.bad })
      else if (r.transient === undefined) p.reject(new PackerError('REMOTE', `fetching blocks: ${r.what}`))
      else p.reject(new HttpGetError(p.url, r.what, { status: r.status, transient: r.transient, retryAfter: r.retryAfter }))
    })
    const die = (err: Error): void => {
      if (this.#threads[i] === t) this.#threads[i] = undefined
      for (const p of t.pending.values()) p.reject(new PackerError('REMOTE', `the thread fetching blocks stopped: ${err.message}`))
      t.pending.clear()
    }
    w.on('error', die)
    w.on('exit', (code) => { if (!this.#closed) die(new Error(`exit code ${code}`)) })
    this.#threads[i] = t
    return t
  }

  async close (): Promise<void> {
    this.#closed = true
    const threads = this.#threads.splice(0)
    // a run still in flight fails rather than waits forever
    for (const t of threads) {
      for (const p of t?.pending.values() ?? []) p.reject(new PackerError('REMOTE', 'the reader is closing'))
      t?.pending.clear()
    }
    await terminateWorkers(threads.flatMap((t) => t === undefined ? [] : [t.w]))
  }
}
