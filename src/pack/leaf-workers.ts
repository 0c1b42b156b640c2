/**
 * Worker threads that produce UnixFS leaves. A job names bytes of a source file (the worker reads them: pread on a
 * descriptor the main thread opened, or a whole small file by path) or carries them (fetched by the main thread from a
 * source that is not a local file, src/source/tree-source.ts; transferred, not copied), seals them as their part
 * of the file's age ciphertext (ChaCha20-Poly1305 chunks cut at the leaf's boundaries) when the set is encrypted, and
 * hashes the leaf. The main thread only orders results (src/pack/leaves.ts), writes CARs and builds the DAG; results
 * come back in any order and are put in leaf order, so the set's bytes do not depend on the number of workers.
 *
 * Reading in the workers keeps the main thread free of 1 MiB reads, of gathering plaintext into leaves and of the
 * garbage both made (a quarter of the main thread went to the collector); a leaf crosses threads once, transferred.
 *
 * The job code is one self-contained function, `runLeafJob`, run as is on the main thread (`--jobs 1`) and, as its
 * source text, in the workers: one implementation, whatever runs it.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { PackerError } from '../errors.js'
import { terminateWorkers } from '../worker-module.js'
import { nativeWholeFileReader, openProblem, readWholeFileSync, statMismatch, type ReadWhole, type SourceProblem } from '../source/file-reader.js'
import type { PlainInput, WholeFileInput } from '../source/tree-source.js'

/** What makes a leaf an age file's: the payload key (HKDF of the file key and nonce) and header ‖ nonce. */
export interface LeafSeal { key: Uint8Array, prefix: Uint8Array }

export type LeafJob =
  /**
   * Bytes [start, end) of what a file of `size` bytes, read from `input`, is stored as: its bytes, or with `seal` its
   * age file (the leaf is then that range of header ‖ nonce ‖ sealed chunks; `input` holds the plaintext of the
   * chunks it cuts, plainRange in src/pack/leaves.ts).
   */
  | { kind: 'range', input: PlainInput, size: number, start: number, end: number, seal: LeafSeal | null }
  /**
   * A whole source file that fits in one leaf: its bytes, or read by path with the checks of
   * src/source/file-reader.ts (most files of a tree are this small: their open, stat, read and close then stay off
   * the main thread too). `seal: 'fresh'`: the age file is started where the job runs (its header's X25519 or RSA
   * work is most of a small file's cost).
   */
  | { kind: 'file', input: WholeFileInput, seal: LeafSeal | 'fresh' | null, compress?: Compress }
  /**
   * One zstd frame of plaintext [start, end) of a file read from `input` (a large file compressed before it is
   * sealed: src/pack/compress.ts); with `auto`, none when it does not shrink enough (`--compress auto`'s sample).
   */
  | { kind: 'frame', input: PlainInput, start: number, end: number, compress: Compress }

/** How to compress: zstd at `level`, or with `auto` only when the first MiB shrinks enough. */
export interface Compress { level: number, auto: boolean }

/** A new age file's seal, and what the file table keeps of it. */
export interface FreshSeal { seal: LeafSeal, fileKey: Uint8Array, headerLength: number }

/**
 * A leaf (a fresh, unshared buffer) and its SHA-256 (and for a 'fresh' job the age file started), or what went
 * wrong reading the source.
 */
export type LeafJobResult = LeafResult | FrameResult | { problem: SourceProblem }
export interface LeafResult { leaf: Uint8Array, digest: Uint8Array, fresh?: { fileKey: Uint8Array, headerLength: number }, compressed?: boolean }
export interface FrameResult { frame: Uint8Array | null }

/** A whole file sealed as a new age file in one call (the native sealer, src/crypto/native-seal.ts). */
export type SealWhole = (plain: Uint8Array) => { file: Uint8Array, digest: Uint8Array, fileKey: Uint8Array, headerLength: number }

/**
 * Seals `count` chunks of one file's plaintext, the first being chunk `first`, into `out` (native ageSealChunks: one
 * call for a leaf's chunks, where node:crypto made a cipher and a buffer per chunk).
 */
export type SealChunks = (key: Uint8Array, first: number, count: number, lastIndex: number, lastPlain: number, plain: Uint8Array, out: Uint8Array) => void

/** Compresses bytes as a whole zstd seekable stream (`auto`: null when they do not shrink enough). */
export type CompressWhole = (bytes: Uint8Array, how: Compress) => Uint8Array | null

/** What a job runs with: node:crypto, node:fs, and the makers the compiled modules give (null where there are none). */
export interface LeafJobEnv {
  c: typeof crypto
  f: typeof fs
  /** readWholeFileSync over node:fs, or the addon's (nativeWholeFileReader). */
  readWhole: ReadWhole
  /** Starts new age files. */
  fresh: (() => FreshSeal) | null
  /** Seals whole files natively. */
  sealWhole: SealWhole | null
  /** Seals a leaf's chunks natively. */
  sealChunks: SealChunks | null
  /** Where a sealed leaf's plaintext is read (reused job after job on one thread), or null for a new buffer each time. */
  scratch: Uint8Array | null
  /** Compresses a whole small file, or one frame of a large one (`frame`: true). */
  compress: ((bytes: Uint8Array, how: Compress, frame: boolean) => Uint8Array | null) | null
  /** 1 MiB leaf buffers the main thread handed back once written (LeafWorkers.recycle), for the next leaves. */
  spares: ArrayBuffer[]
}

/** Reads plaintext [from, from + b.length) of `fd` into b; a problem when it fails or comes up short. */
function preadAll (f: typeof fs, fd: number, b: Uint8Array, from: number, size: number): SourceProblem | null {
  for (let pos = 0; pos < b.length;) {
    let n: number
    try {
      n = f.readSync(fd, b, pos, b.length - pos, from + pos)
    } catch (err) {
      return { kind: 'read', at: from + pos, code: String((err as NodeJS.ErrnoException).code ?? (err as Error).message) }
    }
    if (n === 0) return { kind: 'changed', what: `only ${from + pos} of ${size} bytes could be read` }
    pos += n
  }
  return null
}

/**
 * The age chunks, first and last, whose sealed bytes fall in ciphertext [start, end) of an age file whose payload
 * starts after `prefix` bytes (end > prefix). Self-contained.
 */
export function chunksOfLeaf (prefix: number, start: number, end: number): [number, number] {
  const SEALED = 65536 + 16
  return [start < prefix ? 0 : Math.floor((start - prefix) / SEALED), Math.floor((end - 1 - prefix) / SEALED)]
}

/**
 * Plaintext [from, to) of a file of `size` bytes as a job's input gives it: read from its descriptor (a problem when
 * that fails), or a view of the bytes it carries (the whole of them, not a copy, when they are exactly that range).
 */
function plainOf (f: typeof fs, input: PlainInput, from: number, to: number, size: number, scratch: Uint8Array | null = null): Uint8Array | SourceProblem {
  if ('fd' in input) {
    // its own ArrayBuffer (transferable), or the caller's buffer (scratch when the bytes are not passed on, else a leaf's)
    const b = scratch !== null && scratch.length >= to - from ? scratch.subarray(0, to - from) : new Uint8Array(to - from)
    return preadAll(f, input.fd, b, from, size) ?? b
  }
  const { bytes, at } = input
  if (from < at || to > at + bytes.length) throw new Error(`a leaf job was given bytes ${at}-${at + bytes.length} and needs ${from}-${to}`)
  return from === at && to - from === bytes.length ? bytes : bytes.subarray(from - at, to - at)
}

/**
 * Runs one job. Self-contained (its source text is the workers' code): uses only its arguments, `preadAll`,
 * `plainOf` and `chunksOfLeaf`.
 */
export function runLeafJob (env: LeafJobEnv, job: LeafJob): LeafJobResult {
  const { c, f, readWhole, fresh, sealWhole, sealChunks } = env
  const CHUNK = 65536
  const SEALED = CHUNK + 16
  const LEAF = 1024 * 1024 // LEAF_SIZE (src/pack/leaves.ts)
  // A whole leaf goes into a buffer handed back (fresh memory faults in 4 KiB at a time: ~10 us a page here).
  const leafBuffer = (n: number): Uint8Array => n === LEAF && env.spares.length > 0 ? new Uint8Array(env.spares.pop()!) : new Uint8Array(n)
  if (job.kind === 'frame') {
    if (env.compress === null) throw new Error('no zstd here')
    const plain = plainOf(f, job.input, job.start, job.end, job.end)
    if (!(plain instanceof Uint8Array)) return { problem: plain }
    return { frame: env.compress(plain, job.compress, true) }
  }
  let compressed = false
  let whole: Uint8Array | null = null
  if (job.kind === 'file') {
    // Sealed, the plaintext is not passed on: it is read into this thread's scratch buffer (see plainOf below).
    const read = 'path' in job.input ? readWhole(job.input.path, job.input.expect, job.seal === null ? null : env.scratch) : job.input
    if (!('bytes' in read)) return read
    whole = read.bytes
    if (job.compress !== undefined && whole.length > 0) {
      if (env.compress === null) throw new Error('no zstd here')
      const stream = env.compress(whole, job.compress, false)
      if (stream !== null) { whole = stream; compressed = true }
    }
  }
  if (whole !== null && job.seal === 'fresh' && sealWhole !== null) {
    const s = sealWhole(whole)
    if (s.file.length > LEAF) throw new Error(`a one-leaf file job made ${s.file.length} bytes`)
    return { leaf: s.file, digest: s.digest, fresh: { fileKey: s.fileKey, headerLength: s.headerLength }, compressed }
  }
  let seal: LeafSeal | null
  let started: FreshSeal | null = null
  if (job.seal === 'fresh') {
    if (fresh === null) throw new Error('no age header maker here')
    started = fresh()
    seal = started.seal
  } else {
    seal = job.seal
  }
  let size: number
  let plainAt: (from: number, to: number) => Uint8Array | SourceProblem // plaintext [from, to)
  if (whole !== null) {
    const all = whole
    size = all.length
    plainAt = (from, to) => all.subarray(from, to)
  } else {
    const r = job as Extract<LeafJob, { kind: 'range' }>
    size = r.size
    // sealed, the plaintext is not passed on: read into this thread's scratch buffer (fresh memory faults in 4 KiB
    // at a time, ~10 us a page on these VMs: a new 1 MiB buffer per leaf cost more than sealing it natively)
    plainAt = (from, to) => plainOf(f, r.input, from, to, size, seal !== null ? env.scratch : 'fd' in r.input && to - from === LEAF ? leafBuffer(LEAF) : null)
  }
  const count = Math.max(1, Math.ceil(size / CHUNK)) // age chunks (an empty file has one, empty)
  const P = seal === null ? 0 : seal.prefix.length
  const start = job.kind === 'range' ? job.start : 0
  const end = job.kind === 'range' ? job.end : seal === null ? size : P + size + 16 * count
  if (job.kind === 'file' && end > LEAF) throw new Error(`a one-leaf file job made ${end} bytes`) // header longer than foreseen
  const hashed = (leaf: Uint8Array): LeafJobResult => ({
    leaf,
    digest: new Uint8Array(c.createHash('sha256').update(leaf).digest()),
    ...(started === null ? {} : { fresh: { fileKey: started.fileKey, headerLength: started.headerLength } }),
    ...(compressed ? { compressed } : {}),
  })
  if (seal === null) {
    const leaf = plainAt(start, end)
    return leaf instanceof Uint8Array ? hashed(leaf) : { problem: leaf }
  }
  const out = leafBuffer(end - start) // every byte of it is written below
  if (start < P) out.set(seal.prefix.subarray(start, Math.min(end, P)), 0)
  if (end > P) {
    const [j0, j1] = chunksOfLeaf(P, start, end)
    const base = j0 * CHUNK
    const plain = plainAt(base, Math.min(size, (j1 + 1) * CHUNK))
    if (!(plain instanceof Uint8Array)) return { problem: plain }
    const lastPlain = size - (count - 1) * CHUNK
    const sealedEnd = (j: number): number => P + j * SEALED + (j === count - 1 ? lastPlain : CHUNK) + 16
    // Chunks wholly inside the leaf are sealed where they go in it; one cut by the leaf's start or end is sealed
    // aside and its part copied (ChaCha20 being a stream cipher, a chunk cut by the end needs only its first bytes).
    const k0 = sealChunks === null ? j1 + 1 : P + j0 * SEALED < start ? j0 + 1 : j0 // [k0, k1]: sealed natively
    const k1 = sealChunks === null ? j1 : sealedEnd(j1) > end ? j1 - 1 : j1
    if (k0 <= k1) sealChunks!(seal.key, k0, k1 - k0 + 1, count - 1, lastPlain, plain.subarray((k0 - j0) * CHUNK), out.subarray(P + k0 * SEALED - start))
    const nonce = new Uint8Array(12)
    for (let j = j0; j <= j1; j++) {
      if (j >= k0 && j <= k1) continue
      let pos = P + j * SEALED // absolute ciphertext position of the next byte
      const put = (b: Uint8Array): void => {
        const from = Math.max(pos, start)
        const to = Math.min(pos + b.length, end)
        if (to > from) out.set(to - from === b.length ? b : b.subarray(from - pos, to - pos), from - start)
        pos += b.length
      }
      // 11-byte big-endian counter, then the last-chunk flag. Indexes below 2^53.
      let n = j
      for (let i = 10; i >= 0; i--) { nonce[i] = n % 256; n = Math.floor(n / 256) }
      nonce[11] = j === count - 1 ? 1 : 0
      const cipher = c.createCipheriv('chacha20-poly1305', seal.key, nonce, { authTagLength: 16 })
      const chunk = plain.subarray(j * CHUNK - base, Math.min(size, (j + 1) * CHUNK) - base)
      const need = end - pos
      put(cipher.update(need >= chunk.length ? chunk : chunk.subarray(0, need)))
      if (need > chunk.length) { // the whole chunk: its tag too
        put(cipher.final())
        put(cipher.getAuthTag())
      }
    }
  }
  return hashed(out)
}

// Cipher.update allocates every sealed chunk (node:crypto has no encrypt-into) and V8 collects such garbage only after
// ~64 MiB of it per thread; a young-generation collection every 4 MiB of leaves, where nearly all is garbage, keeps
// peak memory down (the mount's workers do the same: src/read/worker.ts). Counted mostly in bytes, not jobs: a
// collection costs the same after 4 tiny files as after 4 MiB, and one every 4 jobs was a quarter of a worker's time
// on a tree of small files. A job counts JOB_GARBAGE besides its leaf for the objects and buffers it leaves.
const COLLECT_EVERY = 4 * 1024 * 1024
/** Most plaintext one sealed leaf is made from: the 17 age chunks a 1 MiB leaf can cut. */
const LEAF_PLAIN_MAX = 17 * 65536
const JOB_GARBAGE = 16 * 1024
/** LEAF_SIZE (src/pack/leaves.ts, which imports this module): the leaves whose buffers are reused. */
const LEAF_BYTES = 1024 * 1024
/** Leaf buffers a worker keeps for reuse (what is in flight between it and the CAR writer is about as many). */
const SPARES_KEPT = 8
/** Leaf buffers handed back to a worker in one message. */
const SPARES_A_MESSAGE = 4
const WORKER_SOURCE = `
const crypto = require('node:crypto')
const fs = require('node:fs')
const { parentPort, workerData } = require('node:worker_threads')
let collect
try { require('node:v8').setFlagsFromString('--expose-gc'); collect = require('node:vm').runInNewContext('gc') } catch {}
let sinceCollect = 0
const openProblem = ${openProblem.toString()}
const statMismatch = ${statMismatch.toString()}
const readWholeFileSync = ${readWholeFileSync.toString()}
const preadAll = ${preadAll.toString()}
const plainOf = ${plainOf.toString()}
const chunksOfLeaf = ${chunksOfLeaf.toString()}
const runLeafJob = ${runLeafJob.toString()}
const env = { c: crypto, f: fs, readWhole: (path, expect, into) => readWholeFileSync(fs, path, expect, into), fresh: null, sealWhole: null, sealChunks: null, scratch: new Uint8Array(${LEAF_PLAIN_MAX}), compress: null, spares: [] }
const ready = workerData.module === null ? Promise.resolve() : import(workerData.module).then((m) => {
  if (workerData.recipients !== null) {
    env.fresh = m.freshSealMaker(workerData.recipients)
    env.sealWhole = m.wholeFileSealer(workerData.recipients)
    env.sealChunks = m.chunkSealer()
  }
  env.compress = m.zstdCompressor()
  env.readWhole = m.nativeWholeFileReader(fs) ?? env.readWhole
}, () => {}) // then 'fresh' and compressing jobs fail, naming why
// A message carries several jobs and its answer all their results: a message costs both threads more than a tiny
// file's reading and hashing.
parentPort.on('message', (jobs) => {
  if (!Array.isArray(jobs)) { for (const b of jobs.spares) if (env.spares.length < ${SPARES_KEPT}) env.spares.push(b); return }
  ready.then(() => {
  const results = []
  const transfer = []
  for (const { id, job } of jobs) {
    let r
    try {
      r = runLeafJob(env, job)
    } catch (err) {
      results.push({ id, error: { message: String(err && err.message), code: err && err.code } })
      continue
    }
    sinceCollect += ${JOB_GARBAGE} + (r.leaf ? r.leaf.length : r.frame ? r.frame.length : 0)
    if (r.problem) results.push({ id, problem: r.problem })
    else if ('frame' in r) { results.push({ id, frame: r.frame }); if (r.frame !== null) transfer.push(r.frame.buffer) }
    else {
      results.push({ id, leaf: r.leaf, digest: r.digest, fresh: r.fresh, compressed: r.compressed })
      if (!(r.leaf.buffer instanceof SharedArrayBuffer)) transfer.push(r.leaf.buffer) // a shared one (its input, as it came) is posted shared
    }
  }
  parentPort.postMessage(results, transfer)
  if (collect && sinceCollect >= ${COLLECT_EVERY}) { sinceCollect = 0; collect({ type: 'minor' }) }
})})
`

/**
 * The module workers load to start age files and compress: compiled JavaScript beside this one. Absent when this runs
 * from the TypeScript sources (the test runner): then headers are made on the main thread and posted with the job, and
 * jobs that compress run on the calling thread.
 */
const SEALS_MODULE = new URL('./leaves.js', import.meta.url)
const canLoadSeals = ((): boolean => { try { return fs.statSync(fileURLToPath(SEALS_MODULE)).isFile() } catch { return false } })()

interface Slot { w: Worker, busy: number, dead: Error | null }
/** What a worker answers for each job of a message. */
interface Reply { id: number, leaf?: Uint8Array, digest?: Uint8Array, fresh?: { fileKey: Uint8Array, headerLength: number }, compressed?: boolean, frame?: Uint8Array | null, problem?: SourceProblem, error?: { message: string, code?: string } }
/** Jobs posted to a worker in one message at most. */
const BATCH = 8
interface Pending { slot: Slot, resolve: (r: LeafJobResult) => void, reject: (e: Error) => void }

/** The default for `--jobs`: the cores this process may use. */
export function defaultJobs (): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
}

/**
 * `workers` threads (0: every job runs on the calling thread). Idle workers do not keep the process alive; close()
 * terminates them. A worker that dies fails its jobs and every later one with a PackerError. `fresh` starts new age
 * files on this thread; `recipients` (as parseRecipient reads them) let the workers start them too.
 */
export class LeafWorkers {
  readonly size: number
  /** Whether 'fresh' file jobs can be given: the workers start age files, or there are none and `fresh` does. */
  readonly startsFiles: boolean
  /** What jobs run with on the calling thread. */
  readonly #here: LeafJobEnv
  readonly #slots: Slot[] = []
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #closed = false
  /** Leaves the workers handed over in 1 MiB buffers of their own: recycle() may give those back. */
  readonly #recyclable = new WeakSet<Uint8Array>()
  #handingBack: ArrayBuffer[] = []
  #handBackTo = 0
  /** Leaf buffers handed back to the workers so far. */
  recycled = 0

  constructor (workers: number, seals: { fresh: () => FreshSeal, recipients: string[], whole?: SealWhole | null, chunks?: SealChunks | null } | null = null,
    compress: LeafJobEnv['compress'] = null) {
    this.size = Math.max(0, Math.floor(workers))
    this.#here = { c: crypto, f: fs, readWhole: nativeWholeFileReader(fs) ?? ((path, expect, into) => readWholeFileSync(fs, path, expect, into)), fresh: seals?.fresh ?? null, sealWhole: seals?.whole ?? null, sealChunks: seals?.chunks ?? null, scratch: new Uint8Array(LEAF_PLAIN_MAX), compress, spares: [] }
    this.startsFiles = seals !== null && (this.size === 0 || canLoadSeals)
    const module = (seals !== null || compress !== null) && canLoadSeals ? SEALS_MODULE.href : null
    const workerData = { module, recipients: seals?.recipients ?? null }
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData })
      const slot: Slot = { w, busy: 0, dead: null }
      w.on('message', (results: Reply[]) => {
        for (const m of results) {
          const p = this.#pending.get(m.id)
          if (p === undefined) continue
          this.#pending.delete(m.id)
          if (--slot.busy === 0) w.unref()
          if (m.error !== undefined) p.reject(workerError(m.error.message, m.error.code))
          else if (m.problem !== undefined) p.resolve({ problem: m.problem })
          else if (m.frame !== undefined) p.resolve({ frame: m.frame })
          else {
            const leaf = m.leaf!
            if (leaf.byteLength === LEAF_BYTES && leaf.buffer.byteLength === LEAF_BYTES && leaf.buffer instanceof ArrayBuffer) this.#recyclable.add(leaf)
            p.resolve({ leaf, digest: m.digest!, ...(m.fresh === undefined ? {} : { fresh: m.fresh }), ...(m.compressed ? { compressed: true } : {}) })
          }
        }
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

  /**
   * Takes back a leaf a worker made, once nothing reads it any more (CarSetWriter.put's `done`): its buffer goes back
   * to the workers (transferred: the leaf reads as empty from then on) for the next leaves. Anything else is ignored.
   */
  recycle (leaf: Uint8Array): void {
    if (!this.#recyclable.delete(leaf)) return
    this.#handingBack.push(leaf.buffer as ArrayBuffer)
    if (this.#handingBack.length < SPARES_A_MESSAGE) return
    const spares = this.#handingBack
    this.#handingBack = []
    const live = this.#slots.filter((s) => s.dead === null)
    if (this.#closed || live.length === 0) return
    live[this.#handBackTo++ % live.length]!.w.postMessage({ spares }, spares)
    this.recycled += spares.length
  }

  /** Runs a job on the least busy worker, or here when there is none. */
  run (job: Extract<LeafJob, { kind: 'frame' }>): Promise<FrameResult | { problem: SourceProblem }>
  run (job: Exclude<LeafJob, { kind: 'frame' }>): Promise<LeafResult | { problem: SourceProblem }>
  run (job: LeafJob): Promise<LeafJobResult> {
    return this.#post([job])[0]!
  }

  /**
   * Runs jobs (of whole files, the many small ones of a tree), several to a message: BATCH to a worker, the least busy
   * first. Their results, in the jobs' order.
   */
  runAll (jobs: Array<Exclude<LeafJob, { kind: 'frame' }>>): Array<Promise<LeafResult | { problem: SourceProblem }>> {
    const out: Array<Promise<LeafJobResult>> = []
    for (let i = 0; i < jobs.length; i += BATCH) out.push(...this.#post(jobs.slice(i, i + BATCH)))
    return out as Array<Promise<LeafResult | { problem: SourceProblem }>>
  }

  /** Posts `jobs` to the least busy worker in one message (or runs them here when there is none). */
  #post (jobs: LeafJob[]): Array<Promise<LeafJobResult>> {
    if (this.#closed) return jobs.map(async () => await Promise.reject(workerError('the leaf workers were closed')))
    let best: Slot | undefined
    for (const s of this.#slots) if (s.dead === null && (best === undefined || s.busy < best.busy)) best = s
    // Compressing needs the compiled module in the workers: from the sources, such jobs run here.
    const here = jobs.some((job) => 'compress' in job && job.compress !== undefined) && !canLoadSeals
    if (best === undefined || here) {
      if (this.size > 0 && !here) return jobs.map(async () => await Promise.reject(this.#slots[0]!.dead ?? workerError('no leaf worker is running')))
      return jobs.map(async (job) => runLeafJob(this.#here, job))
    }
    const slot = best
    if (slot.busy === 0) slot.w.ref() // a job in flight keeps the process alive
    const ids: number[] = []
    const results = jobs.map(async () => await new Promise<LeafJobResult>((resolve, reject) => {
      const id = this.#nextId++
      this.#pending.set(id, { slot, resolve, reject })
      slot.busy++
      ids.push(id)
    }))
    const { message, transfer } = messageOf(jobs, ids)
    slot.w.postMessage(message, transfer)
    return results
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await terminateWorkers(this.#slots.map((s) => s.w))
  }
}

/**
 * Jobs as posted in one message, and the buffers handed over with it rather than copied. The paths of whole-file jobs
 * travel in one buffer (cloning a buffer per job cost more than reading and hashing a tiny file); bytes a job carries
 * go as they are when they are a whole buffer or a view of a shared one (src/s3/grouped-reads.ts), else as a copy
 * (never a whole pooled buffer they are a view of).
 */
function messageOf (jobs: LeafJob[], ids: number[]): { message: Array<{ id: number, job: LeafJob }>, transfer: ArrayBuffer[] } {
  let pathBytes = 0
  for (const job of jobs) if (job.kind === 'file' && 'path' in job.input) pathBytes += job.input.path.length
  const paths = new Uint8Array(pathBytes)
  const transfer: ArrayBuffer[] = pathBytes > 0 ? [paths.buffer] : []
  let at = 0
  const message = jobs.map((job, i) => {
    const id = ids[i]!
    if (job.kind === 'file' && 'path' in job.input) {
      paths.set(job.input.path, at)
      const path = paths.subarray(at, at += job.input.path.length)
      return { id, job: { ...job, input: { ...job.input, path } } }
    }
    const b = 'bytes' in job.input ? job.input.bytes : undefined
    if (b === undefined) return { id, job }
    if (b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) {
      transfer.push(b.buffer)
      return { id, job }
    }
    if (b.buffer instanceof SharedArrayBuffer) return { id, job }
    return { id, job: { ...job, input: { ...job.input, bytes: b.slice() } } as LeafJob }
  })
  return { message, transfer }
}

function workerError (message: string, code?: string): Error {
  const err = new PackerError('FORMAT', `packing failed in a leaf worker: ${message}`)
  if (code !== undefined) Object.assign(err, { cause: { code } })
  return err
}
