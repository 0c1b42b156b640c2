/**
 * A file's content → its UnixFS leaves, in order, each with its SHA-256: cut exactly as the importer's fixed-size
 * chunker cuts (LEAF_SIZE bytes, the last one shorter, an empty content one empty leaf), hashed (and, for an
 * encrypted set, sealed as an age v1 file) by LeafWorkers, several leaves at once, handed on in order.
 *
 * The age file is the one encryptStream writes (header ‖ 16-byte nonce ‖ 64 KiB chunks sealed with ChaCha20-Poly1305,
 * the last flagged), but each worker seals directly the ciphertext of one leaf: no stream of 64 KiB buffers to be
 * gathered into leaves again.
 */
import { randomBytes } from 'node:crypto'
import { payloadKey } from '../crypto/payload.js'
import { type LeafJob, type LeafJobResult, type LeafWorkers, type SealChunk } from './leaf-workers.js'

/** The importer's chunk size in the unixfs-v1-2025 profile (docs/FORMAT.md). */
export const LEAF_SIZE = 1024 * 1024
const CHUNK = 65536
const SEALED = CHUNK + 16
const NONCE = 16

export interface Leaf { bytes: Uint8Array, digest: Uint8Array }

/** Leaves in flight (being hashed or sealed, or waiting for their turn) per file. */
export function windowFor (pool: LeafWorkers): number { return Math.max(4, 3 * pool.size) }

/** A byte FIFO of the caller's buffers, by reference, addressed by absolute position. */
class Pieces {
  readonly #parts: Uint8Array[] = []
  #base = 0 // absolute position of #parts[0][0]
  length = 0 // absolute position of the end

  push (b: Uint8Array): void {
    if (b.length === 0) return
    this.#parts.push(b)
    this.length += b.length
  }

  /** Views of [from, to) (which must still be held). */
  views (from: number, to: number): Uint8Array[] {
    const out: Uint8Array[] = []
    let at = this.#base
    for (const p of this.#parts) {
      if (at >= to) break
      const end = at + p.length
      if (end > from) out.push(from <= at && end <= to ? p : p.subarray(Math.max(from - at, 0), Math.min(to, end) - at))
      at = end
    }
    return out
  }

  /** Lets go of the bytes before `pos`. */
  drop (pos: number): void {
    while (this.#parts.length > 0 && this.#base + this.#parts[0]!.length <= pos) this.#base += this.#parts.shift()!.length
  }
}

function concat (parts: Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(n) // its own ArrayBuffer: transferable to a worker
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/**
 * Runs the jobs `cut` makes as the content arrives, at most `window` at once, and yields their leaves in order.
 * Errors (the content's, a job's) are thrown in order too; on an early return the content is closed.
 */
async function * pipeline (content: AsyncIterable<Uint8Array>, pool: LeafWorkers,
  cut: { push: (b: Uint8Array) => void, end: () => void, jobs: Array<{ job: LeafJob, leaf: Uint8Array | null }> }): AsyncGenerator<Leaf> {
  const window = windowFor(pool)
  const inflight: Array<{ result: Promise<LeafJobResult>, leaf: Uint8Array | null, settled: boolean }> = []
  const start = (): void => {
    for (const { job, leaf } of cut.jobs.splice(0)) {
      const result = pool.run(job)
      const slot = { result, leaf, settled: false }
      result.then(() => { slot.settled = true }, () => { slot.settled = true }) // an error is seen when its turn comes
      inflight.push(slot)
    }
  }
  const next = async (): Promise<Leaf> => {
    const { result, leaf } = inflight.shift()!
    const r = await result
    return { bytes: r.leaf ?? leaf!, digest: r.digest }
  }
  for await (const piece of content) {
    cut.push(piece)
    start()
    // Hand on what is ready (the CAR writes overlap the reads), and wait when the window is full.
    while (inflight.length > 0 && (inflight.length >= window || inflight[0]!.settled)) yield await next()
  }
  cut.end()
  start()
  while (inflight.length > 0) yield await next()
}

/** Clear leaves: cut (no copy when a piece is exactly a leaf, as reads of 1 MiB from offset 0 are) and hashed. */
export function clearLeaves (content: AsyncIterable<Uint8Array>, pool: LeafWorkers): AsyncGenerator<Leaf> {
  const q = new Pieces()
  let done = 0 // bytes already cut into leaves
  let emitted = false
  const jobs: Array<{ job: LeafJob, leaf: Uint8Array | null }> = []
  const emit = (to: number): void => {
    const leaf = concat(q.views(done, to), to - done)
    jobs.push({ job: { kind: 'hash', leaf }, leaf })
    done = to
    q.drop(done)
    emitted = true
  }
  return pipeline(content, pool, {
    jobs,
    push: (b) => {
      q.push(b)
      while (q.length - done >= LEAF_SIZE) emit(done + LEAF_SIZE)
    },
    end: () => { if (q.length > done || !emitted) emit(q.length) },
  })
}

export interface SealedFile { fileKey: Buffer, header: Buffer }

/** The payload key of a new age file and what precedes its first chunk (header ‖ a fresh random nonce). */
export function payloadStart (file: SealedFile): { key: Buffer, prefix: Buffer } {
  const nonce = randomBytes(NONCE)
  return { key: payloadKey(file.fileKey, nonce), prefix: Buffer.concat([file.header, nonce]) }
}

/** Bytes of the age file of `plain` bytes whose header ‖ nonce is `prefix` bytes long. */
export function sealedLength (prefix: number, plain: number): number {
  return prefix + plain + 16 * Math.max(1, Math.ceil(plain / CHUNK))
}

/**
 * Leaves of the age file of `content` under `file` (its key and encoded header): the bytes encryptStream would yield,
 * cut into leaves. One chunk of lookahead decides the last-chunk flag, as there.
 */
export function sealedLeaves (content: AsyncIterable<Uint8Array>, file: SealedFile, pool: LeafWorkers): AsyncGenerator<Leaf> {
  const { key, prefix } = payloadStart(file)
  const P = prefix.length
  const q = new Pieces()
  let k = 0 // next leaf
  const jobs: Array<{ job: LeafJob, leaf: Uint8Array | null }> = []
  const dispatch = (eof: boolean): void => {
    const T = q.length
    const chunkTotal = T === 0 ? 1 : Math.ceil(T / CHUNK)
    const total = sealedLength(P, T)
    // Before the end, a chunk is known (full, not the last) once a byte after it has arrived.
    const known = eof ? total : P + (T > 0 ? Math.floor((T - 1) / CHUNK) : 0) * SEALED
    for (;;) {
      const start = k * LEAF_SIZE
      const end = Math.min(start + LEAF_SIZE, total)
      if (eof ? start >= total : start + LEAF_SIZE > known) break
      const chunks: SealChunk[] = []
      if (end > P) {
        const j0 = start < P ? 0 : Math.floor((start - P) / SEALED)
        const j1 = Math.floor((end - 1 - P) / SEALED)
        for (let j = j0; j <= j1; j++) {
          const from = j * CHUNK
          const to = Math.min(from + CHUNK, T)
          chunks.push({ index: j, last: eof && j === chunkTotal - 1, parts: q.views(from, to), need: end - (P + j * SEALED) })
        }
      }
      const job: LeafJob = { kind: 'seal', key, start, end, prefixLength: P, prefix: start < P ? prefix.subarray(start, Math.min(end, P)) : null, chunks }
      jobs.push({ job, leaf: null })
      k++
      // Plaintext before the next leaf's first chunk is no longer needed.
      const next = k * LEAF_SIZE
      if (next > P) q.drop(Math.floor((next - P) / SEALED) * CHUNK)
    }
  }
  return pipeline(content, pool, {
    jobs,
    push: (b) => { q.push(b); dispatch(false) },
    end: () => dispatch(true),
  })
}
