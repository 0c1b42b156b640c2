import { SHARE_ENV, Worker } from 'node:worker_threads'
import { PackerError } from '../errors.js'
import type { BlockAt } from '../store/car-store.js'
import { compiledModule } from '../worker-module.js'
import { HttpGetError, type HttpTimeouts } from './http-get.js'
import type { FetchJob, FetchResult } from './block-fetch-worker.js'

const WORKER_MODULE = compiledModule(new URL('./block-fetch-worker.js', import.meta.url), 'remote/block-fetch-worker.js')

/** How one GET of a run of blocks ended: every block given, or the index of the block that hashed wrong. */
export type Fetched = { bad?: number }

interface Pending { url: string, got: (block: number, bytes: Buffer) => void, resolve: (r: Fetched) => void, reject: (e: Error) => void }

/**
 * Fetches runs of blocks on a thread of their own (src/remote/block-fetch-worker.ts): the HTTP, the copying and the
 * hashing happen there, the caller (HttpCars, on the mount's main thread) hears only of whole runs. Started on first
 * use (a worker costs ~30 ms); an idle one does not keep the process alive. It shares the process's environment, so
 * proxy variables read at each request are the process's own. A worker that dies fails its runs with a PackerError
 * and the next run starts a new one.
 */
export class BlockFetcher {
  #worker: Worker | undefined
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #closed = false

  /**
   * Bytes [from, to) of `url`, as the blocks `blocks` (in offset order, inside the range): each checked block is given
   * to `got` as soon as it is in (by its index in `blocks`, in order). Throws an HttpGetError when the GET fails (the
   * blocks given so far are good); wrong bytes are an answer ({ bad }), for the caller to drop the source.
   */
  async blocks (url: string, from: number, to: number, blocks: BlockAt[], timeouts: HttpTimeouts, got: Pending['got']): Promise<Fetched> {
    if (this.#closed) throw new PackerError('REMOTE', 'the reader is closing')
    const id = this.#nextId++
    // Each digest copied: a CID's multihash is a view into a larger buffer, all of which a post would copy.
    const job: FetchJob = { id, url, from, to, timeouts, blocks: blocks.map((b) => ({ offset: b.offset, length: b.length, digest: b.cid.multihash.digest.slice() })) }
    const w = this.#started()
    return await new Promise<Fetched>((resolve, reject) => {
      if (this.#pending.size === 0) w.ref() // a run in flight keeps the process alive
      this.#pending.set(id, { url, got, resolve, reject })
      w.postMessage(job)
    })
  }

  #started (): Worker {
    if (this.#worker !== undefined) return this.#worker
    const w = new Worker(WORKER_MODULE, { env: SHARE_ENV })
    w.unref()
    w.on('message', (r: FetchResult) => {
      const p = this.#pending.get(r.id)
      if (p === undefined) return
      if ('block' in r) { p.got(r.block, Buffer.from(r.bytes)); return }
      this.#pending.delete(r.id)
      if (this.#pending.size === 0) w.unref()
      if (r.ok) p.resolve({})
      else if ('bad' in r) p.resolve({ bad: r.bad })
      else if (r.transient === undefined) p.reject(new PackerError('REMOTE', `fetching blocks: ${r.what}`))
      else p.reject(new HttpGetError(p.url, r.what, { status: r.status, transient: r.transient, retryAfter: r.retryAfter }))
    })
    const die = (err: Error): void => {
      if (this.#worker === w) this.#worker = undefined
      for (const p of this.#pending.values()) p.reject(new PackerError('REMOTE', `the thread fetching blocks stopped: ${err.message}`))
      this.#pending.clear()
    }
    w.on('error', die)
    w.on('exit', (code) => { if (!this.#closed) die(new Error(`exit code ${code}`)) })
    this.#worker = w
    return w
  }

  async close (): Promise<void> {
    this.#closed = true
    const w = this.#worker
    this.#worker = undefined
    if (w !== undefined) await w.terminate()
  }
}
