import { Worker } from 'node:worker_threads'
import os from 'node:os'
import type { InitMessage, LeafJob, LeafResult } from './worker.js'
import { compiledModule, terminateWorkers } from '../worker-module.js'
import { isFrameJob, ownBytes, type FrameJob, type FrameResult } from './frame-job.js'

const WORKER_MODULE = compiledModule(new URL('./worker.js', import.meta.url), 'read/worker.js')

type Pending = {
  job: LeafJob | FrameJob
  resolve: (r: (LeafResult | FrameResult) & { slot: number }) => void
  reject: (e: Error) => void
  partial?: (r: LeafResult & { slot: number }) => void
}

/**
 * Worker threads that verify and decrypt leaves into slots of a shared slab, and decompress frames of compressed
 * files (src/read/frame-job.ts: no slot, a frame's plaintext comes back in a buffer of its own). Demand reads go
 * before read-ahead; each worker holds at most two jobs so it never waits for the main thread, and a read that
 * arrives later is not stuck behind a long queue. A job gets its slot only when it is handed to a worker (`acquire`, which may evict the least
 * recently used cached leaf); with no slot to be had, jobs wait for one to come back.
 */
export class WorkerPool {
  readonly size: number
  readonly #workers: Array<{ w: Worker, busy: number }> = []
  readonly #pending = new Map<number, Pending>()
  readonly #queues: [Pending[], Pending[]] = [[], []]
  readonly #acquire: () => number | undefined
  #nextId = 1
  #closed = false

  constructor (slab: Buffer, slotSize: number, acquire: () => number | undefined, size = defaultWorkers()) {
    this.size = size
    this.#acquire = acquire
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_MODULE)
      const slot = { w, busy: 0 }
      w.postMessage({ init: true, slab: slab.buffer as SharedArrayBuffer, slabAt: slab.byteOffset, slotSize } satisfies InitMessage)
      w.on('message', (r: LeafResult | FrameResult) => {
        const p = this.#pending.get(r.id)
        if (r.ok && 'partial' in r && r.partial !== undefined) { p?.partial?.({ ...r, slot: slotOf(p.job) }); return }
        slot.busy--
        if (slot.busy === 0) w.unref()
        this.#pending.delete(r.id)
        p?.resolve({ ...r, slot: p === undefined ? -1 : slotOf(p.job) })
        this.#pump()
      })
      w.on('error', (err) => {
        for (const p of this.#pending.values()) p.reject(err)
        this.#pending.clear()
      })
      w.unref()
      this.#workers.push(slot)
    }
  }

  /**
   * Runs a job; `urgent` for a read someone waits on, else read-ahead. `partial` hears of the wanted chunks
   * (dec.want) before the rest of the leaf is opened.
   */
  run (job: Omit<LeafJob, 'id' | 'slot'>, urgent: boolean, partial?: Pending['partial']): Promise<LeafResult & { slot: number }> {
    const full = job as LeafJob
    full.slot = -1
    return this.#enqueue(full, urgent, partial) as Promise<LeafResult & { slot: number }>
  }

  /** Decompresses a frame; `urgent` for a read someone waits on, else read-ahead. */
  runFrame (job: Omit<FrameJob, 'id'>, urgent: boolean): Promise<FrameResult> {
    job.frame = ownBytes(job.frame)
    return this.#enqueue(job as FrameJob, urgent) as Promise<FrameResult>
  }

  #enqueue (job: LeafJob | FrameJob, urgent: boolean, partial?: Pending['partial']): Promise<(LeafResult | FrameResult) & { slot: number }> {
    if (this.#closed) return Promise.reject(new Error('the reader is closing'))
    return new Promise((resolve, reject) => {
      job.id = this.#nextId++
      this.#queues[urgent ? 0 : 1].push({ job, resolve, reject, partial })
      this.#pump()
    })
  }

  /** A read now waits on this read-ahead job: it goes before the other read-ahead. */
  promote (job: Omit<LeafJob, 'id' | 'slot'> | Omit<FrameJob, 'id'>): void {
    const i = this.#queues[1].findIndex((p) => p.job === job)
    if (i < 0) return
    this.#queues[0].push(...this.#queues[1].splice(i, 1))
    this.#pump()
  }

  /** Read-ahead jobs waiting (not yet handed to a worker). */
  get queued (): number { return this.#queues[1].length }

  /** Hands out queued jobs; called again whenever a job ends or a slot comes back. */
  pump (): void { this.#pump() }

  #pump (): void {
    for (;;) {
      const q = this.#queues[0].length > 0 ? this.#queues[0] : this.#queues[1]
      if (q.length === 0) return
      let best: { w: Worker, busy: number } | undefined
      for (const s of this.#workers) if (s.busy < 2 && (best === undefined || s.busy < best.busy)) best = s
      if (best === undefined) return
      const p = q[0]!
      if (!isFrameJob(p.job)) {
        const slot = this.#acquire()
        if (slot === undefined) return
        p.job.slot = slot
      }
      q.shift()
      if (best.busy++ === 0) best.w.ref() // a job in flight keeps the process alive; an idle pool does not
      this.#pending.set(p.job.id, p)
      // A frame's bytes move to the worker (their buffer is the frame's own: runFrame).
      best.w.postMessage(p.job, isFrameJob(p.job) ? [p.job.frame.buffer as ArrayBuffer] : [])
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const q of this.#queues) for (const p of q.splice(0)) p.reject(new Error('the reader is closing'))
    await terminateWorkers(this.#workers.map((s) => s.w))
  }
}

function slotOf (job: LeafJob | FrameJob): number {
  return isFrameJob(job) ? -1 : job.slot
}

export function defaultWorkers (): number {
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  return Math.max(1, Math.min(4, n))
}
