/**
 * Worker threads that produce UnixFS leaves: SHA-256 of a leaf, or the age ciphertext of a leaf (its ChaCha20-Poly1305
 * chunks, cut at the leaf's boundaries) and its SHA-256. The main thread keeps reading, writing CARs and building the
 * DAG; results come back in any order and are put in leaf order by the caller (src/pack/leaves.ts), so the set's
 * bytes do not depend on the number of workers.
 *
 * Few copies: a clear leaf that owns its ArrayBuffer (as 1 MiB reads do, src/source/file-reader.ts) is transferred to
 * the worker and back; the plaintext of a sealed leaf is gathered into one buffer, transferred; the sealed leaf is
 * written by the worker into a fresh ArrayBuffer, transferred back. (SharedArrayBuffers would avoid the gathering, but
 * V8 does not collect them soon enough: peak RSS went from ~200 MB to ~1 GB on a 1 GiB file.)
 *
 * The job code is one self-contained function, `runLeafJob`, run as is on the main thread (`--jobs 1`, and jobs too
 * small to be worth a round trip) and, as its source text, in the workers: one implementation, whatever runs it.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import { Worker } from 'node:worker_threads'
import { PackerError } from '../errors.js'
import { openProblem, readWholeFileSync, statMismatch, type SourceIdentity, type SourceProblem } from '../source/file-reader.js'

/** One age payload chunk, or its start: `need` ciphertext bytes from the chunk's start are wanted (all: its length + 16). */
export interface SealChunk { index: number, last: boolean, parts: Uint8Array[], need: number }

export type LeafJob =
  | { kind: 'hash', leaf: Uint8Array }
  | {
    kind: 'seal'
    /** Payload key (HKDF of the file key and nonce). */
    key: Uint8Array
    /** The leaf is ciphertext bytes [start, end) of the age file. */
    start: number
    end: number
    /** Length of header ‖ nonce, where chunk 0 starts. */
    prefixLength: number
    /** The bytes of header ‖ nonce that fall in [start, end), if any. */
    prefix: Uint8Array | null
    chunks: SealChunk[]
  }

export interface LeafJobResult { leaf: Uint8Array | null, digest: Uint8Array }

/**
 * A whole source file that fits in one leaf: read (with the checks of src/source/file-reader.ts), sealed as an age
 * file when `seal` is given (key: payload key; prefix: header ‖ nonce), hashed. Most files of a tree are this small,
 * and their per-file costs (open, stat, read, close, cipher set-up) then stay off the main thread.
 */
export interface FileJob { kind: 'file', path: Uint8Array, expect: SourceIdentity, seal: { key: Uint8Array, prefix: Uint8Array } | null }
export type FileJobResult = { leaf: Uint8Array, digest: Uint8Array } | { problem: SourceProblem }

type ReadWhole = (path: Uint8Array, expect: SourceIdentity) => ReturnType<typeof readWholeFileSync>

/**
 * Runs one job. Self-contained (its source text is the workers' code): uses only its arguments, `c` being
 * node:crypto and `readWhole` readWholeFileSync over node:fs. For 'hash' the leaf is not returned (the caller keeps
 * it); for 'seal' and 'file' the leaf is a fresh, unshared buffer.
 */
export function runLeafJob (c: typeof crypto, readWhole: ReadWhole, job: LeafJob | FileJob): LeafJobResult | FileJobResult {
  const CHUNK = 65536
  const SEALED = CHUNK + 16
  if (job.kind === 'file') {
    const read = readWhole(job.path, job.expect)
    if (!('bytes' in read)) return read
    const plain = read.bytes
    if (job.seal === null) return { leaf: plain, digest: new Uint8Array(c.createHash('sha256').update(plain).digest()) }
    const count = Math.max(1, Math.ceil(plain.length / CHUNK))
    const chunks: SealChunk[] = []
    for (let j = 0; j < count; j++) {
      const part = plain.subarray(j * CHUNK, Math.min(plain.length, (j + 1) * CHUNK))
      chunks.push({ index: j, last: j === count - 1, parts: [part], need: part.length + 16 })
    }
    const P = job.seal.prefix.length
    return runLeafJob(c, readWhole, { kind: 'seal', key: job.seal.key, start: 0, end: P + plain.length + 16 * count, prefixLength: P, prefix: job.seal.prefix, chunks }) as LeafJobResult
  }
  if (job.kind === 'hash') return { leaf: null, digest: new Uint8Array(c.createHash('sha256').update(job.leaf).digest()) }
  const out = new Uint8Array(job.end - job.start)
  if (job.prefix !== null) out.set(job.prefix, 0)
  const nonce = new Uint8Array(12)
  for (const ch of job.chunks) {
    let pos = job.prefixLength + ch.index * SEALED // absolute ciphertext position of the next byte
    // 11-byte big-endian counter, then the last-chunk flag. Indexes below 2^53.
    let n = ch.index
    for (let i = 10; i >= 0; i--) { nonce[i] = n % 256; n = Math.floor(n / 256) }
    nonce[11] = ch.last ? 1 : 0
    const cipher = c.createCipheriv('chacha20-poly1305', job.key, nonce, { authTagLength: 16 })
    const put = (b: Uint8Array): void => {
      const from = Math.max(pos, job.start)
      const to = Math.min(pos + b.length, job.end)
      if (to > from) out.set(to - from === b.length ? b : b.subarray(from - pos, to - pos), from - job.start)
      pos += b.length
    }
    let left = ch.need // ChaCha20 is a stream cipher: a chunk cut by the leaf's end needs only its first bytes
    for (const p of ch.parts) {
      if (left <= 0) break
      put(cipher.update(left >= p.length ? p : p.subarray(0, left)))
      left -= p.length
    }
    if (left > 0) { // the whole chunk: its tag too
      put(cipher.final())
      put(cipher.getAuthTag())
    }
  }
  return { leaf: out, digest: new Uint8Array(c.createHash('sha256').update(out).digest()) }
}

// Cipher.update allocates every sealed chunk (node:crypto has no encrypt-into) and V8 collects such garbage only after
// ~64 MiB of it per thread; a young-generation collection every few jobs, where nearly all is garbage, keeps peak
// memory down for well under a millisecond (the mount's workers do the same: src/mount/worker.ts).
const WORKER_SOURCE = `
const crypto = require('node:crypto')
const fs = require('node:fs')
const { parentPort } = require('node:worker_threads')
let collect
try { require('node:v8').setFlagsFromString('--expose-gc'); collect = require('node:vm').runInNewContext('gc') } catch {}
let sinceCollect = 0
const openProblem = ${openProblem.toString()}
const statMismatch = ${statMismatch.toString()}
const readWholeFileSync = ${readWholeFileSync.toString()}
const runLeafJob = ${runLeafJob.toString()}
const readWhole = (path, expect) => readWholeFileSync(fs, path, expect)
parentPort.on('message', (m) => {
  let r
  try {
    r = runLeafJob(crypto, readWhole, m.job)
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: { message: String(err && err.message), code: err && err.code } })
    return
  }
  if (r.problem) { parentPort.postMessage({ id: m.id, problem: r.problem }); return }
  const leaf = r.leaf || (m.job.kind === 'hash' ? m.job.leaf : null) // a hashed leaf goes back to its owner
  parentPort.postMessage({ id: m.id, leaf, digest: r.digest }, leaf ? [leaf.buffer] : [])
  if (collect && ++sinceCollect >= 4) { sinceCollect = 0; collect({ type: 'minor' }) }
})
`

const readWholeHere: ReadWhole = (path, expect) => readWholeFileSync(fs, path, expect)

/** Jobs whose bytes are below this run on the main thread: a round trip to a worker would cost more. */
export const INLINE_BELOW = 128 * 1024
/**
 * Clear leaves are hashed in workers only from this many workers on. With 2 (2 cores: the main thread, the CommP
 * thread and the workers share them) hashing on the main thread was as fast or faster on a 1 GiB file (2.34 vs
 * 2.48 s, medians of 3) and kept peak RSS ~70 MB lower (leaves transferred to a worker and back are collected late).
 */
export const HASH_IN_WORKERS_FROM = 3

interface Slot { w: Worker, busy: number, dead: Error | null }
interface Pending { slot: Slot, resolve: (r: LeafJobResult | FileJobResult) => void, reject: (e: Error) => void }

/** The default for `--jobs`: the cores this process may use. */
export function defaultJobs (): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
}

/** True when `b` is the whole of an unshared ArrayBuffer: it can be transferred without taking anything else along. */
function ownsBuffer (b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer
}

/**
 * `workers` threads (0: every job runs on the calling thread). Idle workers do not keep the process alive; close()
 * terminates them. A worker that dies fails its jobs and every later one with a PackerError.
 */
export class LeafWorkers {
  readonly size: number
  readonly #slots: Slot[] = []
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #closed = false

  constructor (workers: number) {
    this.size = Math.max(0, Math.floor(workers))
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true })
      const slot: Slot = { w, busy: 0, dead: null }
      w.on('message', (m: { id: number, leaf?: Uint8Array | null, digest?: Uint8Array, problem?: SourceProblem, error?: { message: string, code?: string } }) => {
        const p = this.#pending.get(m.id)
        if (p === undefined) return
        this.#pending.delete(m.id)
        if (--slot.busy === 0) w.unref()
        if (m.error !== undefined) p.reject(workerError(m.error.message, m.error.code))
        else if (m.problem !== undefined) p.resolve({ problem: m.problem })
        else p.resolve({ leaf: m.leaf ?? null, digest: m.digest! })
      })
      const die = (err: Error): void => {
        if (slot.dead !== null) return
        slot.dead = err
        for (const [id, p] of this.#pending) {
          if (p.slot !== slot) continue
          this.#pending.delete(id)
          p.reject(err)
        }
      }
      w.on('error', (err) => die(workerError(err.message, (err as NodeJS.ErrnoException).code)))
      w.on('exit', (code) => die(workerError(this.#closed ? 'the leaf workers were closed' : `a leaf worker exited (code ${code})`)))
      w.unref()
      this.#slots.push(slot)
    }
  }

  /** Jobs running in workers now. */
  get busy (): number { return this.#pending.size }

  /** Runs a job on the least busy worker, or here when there is none or the job is small. */
  run (job: LeafJob): Promise<LeafJobResult> {
    const bytes = job.kind === 'hash' ? job.leaf.length : job.end - job.start
    return this.#dispatch(job, bytes >= INLINE_BELOW && (job.kind === 'seal' || this.size >= HASH_IN_WORKERS_FROM)) as Promise<LeafJobResult>
  }

  /** Reads (seals) and hashes a file of one leaf, on the least busy worker (here when there is none). */
  readFile (job: FileJob): Promise<FileJobResult> {
    return this.#dispatch(job, true) as Promise<FileJobResult>
  }

  #dispatch (job: LeafJob | FileJob, offload: boolean): Promise<LeafJobResult | FileJobResult> {
    if (this.#closed) return Promise.reject(workerError('the leaf workers were closed'))
    let best: Slot | undefined
    if (offload) for (const s of this.#slots) if (s.dead === null && (best === undefined || s.busy < best.busy)) best = s
    if (best === undefined) {
      if (offload && this.size > 0) return Promise.reject(this.#slots[0]!.dead ?? workerError('no leaf worker is running'))
      try {
        return Promise.resolve(runLeafJob(crypto, readWholeHere, job))
      } catch (err) {
        return Promise.reject(err)
      }
    }
    const slot = best
    const id = this.#nextId++
    return new Promise<LeafJobResult | FileJobResult>((resolve, reject) => {
      this.#pending.set(id, { slot, resolve, reject })
      if (slot.busy++ === 0) slot.w.ref() // a job in flight keeps the process alive
      const { job: posted, transfer } = postable(job)
      slot.w.postMessage({ id, job: posted }, transfer)
    })
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all(this.#slots.map(async (s) => { await s.w.terminate() }))
  }
}

function workerError (message: string, code?: string): Error {
  const err = new PackerError('FORMAT', `packing failed in a leaf worker: ${message}`)
  if (code !== undefined) Object.assign(err, { cause: { code } })
  return err
}

/**
 * A job as posted, with what to transfer. A clear leaf that owns its ArrayBuffer is transferred (it is detached
 * here and comes back with the result), else copied; the plaintext of a sealed leaf is gathered into one buffer. A
 * posted view would otherwise clone its whole underlying buffer (a pool slab, a neighbour's bytes).
 */
function postable (job: LeafJob | FileJob): { job: LeafJob | FileJob, transfer: ArrayBuffer[] } {
  if (job.kind === 'file') return { job, transfer: [] } // small, and made for the post (src/pack/one-leaf-files.ts)
  if (job.kind === 'hash') {
    const leaf = ownsBuffer(job.leaf) ? job.leaf : new Uint8Array(job.leaf)
    return { job: { kind: 'hash', leaf }, transfer: [leaf.buffer as ArrayBuffer] }
  }
  let n = 0
  for (const ch of job.chunks) for (const p of ch.parts) n += p.length
  const all = new Uint8Array(n)
  let at = 0
  const chunks = job.chunks.map((ch) => {
    const from = at
    for (const p of ch.parts) { all.set(p, at); at += p.length }
    return { ...ch, parts: [all.subarray(from, at)] }
  })
  return {
    job: { ...job, key: new Uint8Array(job.key), prefix: job.prefix === null ? null : new Uint8Array(job.prefix), chunks },
    transfer: [all.buffer],
  }
}
