import { Worker } from 'node:worker_threads'
import os from 'node:os'
import type { LeafJob, LeafResult } from './worker.js'

type Pending = { job: LeafJob, resolve: (r: LeafResult) => void, reject: (e: Error) => void }

/**
 * Worker threads that verify and decrypt leaves. Demand reads go before read-ahead; each worker holds at most two
 * jobs so it never waits for the main thread, and a read that arrives later is not stuck behind a long queue.
 */
export class WorkerPool {
  readonly size: number
  readonly #workers: Array<{ w: Worker, busy: number }> = []
  readonly #pending = new Map<number, Pending>()
  readonly #queues: [Pending[], Pending[]] = [[], []]
  #nextId = 1
  #closed = false
  #recycle: ArrayBuffer[] = []

  constructor (size = defaultWorkers()) {
    this.size = size
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./worker.js', import.meta.url))
      const slot = { w, busy: 0 }
      w.on('message', (r: LeafResult) => {
        slot.busy--
        if (slot.busy === 0) w.unref()
        const p = this.#pending.get(r.id)
        this.#pending.delete(r.id)
        p?.resolve(r)
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

  /** Runs a job; `urgent` for a read someone waits on, else read-ahead. */
  run (job: Omit<LeafJob, 'id'>, urgent: boolean): Promise<LeafResult> {
    if (this.#closed) return Promise.reject(new Error('the mount is closing'))
    return new Promise((resolve, reject) => {
      const full = { ...job, id: this.#nextId++ } as LeafJob
      this.#queues[urgent ? 0 : 1].push({ job: full, resolve, reject })
      this.#pump()
    })
  }

  /** Hands a buffer the main thread is done with back to the workers (with the next job). */
  recycle (b: ArrayBuffer): void {
    if (this.#recycle.length < 4 * this.size && b.byteLength >= 1024 * 1024) this.#recycle.push(b)
  }

  /** Read-ahead jobs waiting (not yet handed to a worker). */
  get queued (): number { return this.#queues[1].length }

  #pump (): void {
    for (;;) {
      const q = this.#queues[0].length > 0 ? this.#queues[0] : this.#queues[1]
      if (q.length === 0) return
      let best: { w: Worker, busy: number } | undefined
      for (const s of this.#workers) if (s.busy < 2 && (best === undefined || s.busy < best.busy)) best = s
      if (best === undefined) return
      const p = q.shift()!
      if (best.busy++ === 0) best.w.ref() // a job in flight keeps the process alive; an idle pool does not
      this.#pending.set(p.job.id, p)
      const give = this.#recycle.splice(0, 4)
      if (give.length > 0) p.job.recycle = give
      best.w.postMessage(p.job, give)
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const q of this.#queues) for (const p of q.splice(0)) p.reject(new Error('the mount is closing'))
    await Promise.all(this.#workers.map(async (s) => await s.w.terminate()))
  }
}

export function defaultWorkers (): number {
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  return Math.max(1, Math.min(4, n))
}
