/**
 * A source file → its UnixFS leaves, in order, each with its SHA-256: cut exactly as the importer's fixed-size chunker
 * cuts (LEAF_SIZE bytes, the last one shorter, an empty content one empty leaf) the bytes stored for the file: its
 * own, or for an encrypted set its age v1 file (header ‖ 16-byte nonce ‖ 64 KiB chunks sealed with
 * ChaCha20-Poly1305, the last flagged), as encryptStream writes it. LeafWorkers read, seal and hash several leaves at
 * once; they are handed on in order.
 */
import { ciphertextSize, newAgeFile, parseRecipient, type AgeFileStart } from '../crypto/index.js'
import { nativeSealer } from '../crypto/native-seal.js'
import { nativeAddon } from '../native-addon.js'
import type { SourceProblem } from '../source/file-reader.js'
import type { ByteSource } from '../source/tree-source.js'
import { chunksOfLeaf, type FreshSeal, type LeafJobEnv, type LeafResult, type LeafSeal, type LeafWorkers, type SealChunks, type SealWhole } from './leaf-workers.js'
import { FRAME_SIZE, SeekTableWriter, compressBound, compressFrame, frameEntry, worthCompressing, zstdCodec } from '../compress/zstd-seekable.js'

/** The importer's chunk size in the unixfs-v1-2025 profile (docs/FORMAT.md). */
export const LEAF_SIZE = 1024 * 1024
const CHUNK = 65536
const SEALED = CHUNK + 16
const NONCE = 16 // a seal's prefix is header ‖ nonce

export interface Leaf { bytes: Uint8Array, digest: Uint8Array }

/**
 * Leaves in flight (being read, sealed or hashed, or waiting for their turn) per file: enough for the workers, or the
 * reads a source wants in flight (a store answering each request after a delay).
 */
export function windowFor (pool: LeafWorkers, readsInFlight = 0): number { return Math.max(4, 3 * pool.size, readsInFlight) }

/** What the leaf workers need to seal a file's leaves, as own buffers (not views of Buffer's pool): posted with every job. */
export function leafSeal (file: AgeFileStart): LeafSeal {
  return { key: new Uint8Array(file.payloadKey), prefix: new Uint8Array(Buffer.concat([file.header, file.nonce])) }
}

/** A new age file as a one-leaf file job needs it: its seal, and its key and header length for the file table. */
export function freshSeal (file: AgeFileStart): FreshSeal {
  return { seal: leafSeal(file), fileKey: new Uint8Array(file.fileKey), headerLength: file.header.length }
}

/** Makes fresh seals for recipients given as strings: what a leaf worker loads this module for. */
export function freshSealMaker (recipients: string[]): () => FreshSeal {
  const parsed = recipients.map((r) => parseRecipient(r))
  return () => freshSeal(newAgeFile(parsed))
}

/**
 * This process's zstd as leaf jobs use it (null without one): a frame of a large file (`auto`: none when the file's
 * first MiB does not shrink enough), or a whole small file as a seekable stream (null when it would not shrink: it
 * is then stored as it is).
 */
export function zstdCompressor (): LeafJobEnv['compress'] {
  const z = zstdCodec()
  if (z === null) return null
  return (bytes, how, frame) => {
    const dst = new Uint8Array(compressBound(Math.min(bytes.length, FRAME_SIZE)))
    const f = how.auto ? worthCompressing(z, bytes, dst) : compressFrame(z, bytes, how.level, dst)
    if (f === null) return null
    if (frame) return f.slice()
    const table = new SeekTableWriter()
    table.add(frameEntry(f, bytes.length))
    if (table.streamSize >= bytes.length) return null
    const out = new Uint8Array(table.streamSize)
    out.set(f)
    out.set(table.finish(), f.length)
    return out
  }
}

/** Reads whole small files natively (the workers load this module for it). */
export { nativeWholeFileReader } from '../source/file-reader.js'

/** Seals whole small files natively for recipients given as strings, or null where the native sealer cannot. */
export function wholeFileSealer (recipients: string[]): SealWhole | null {
  return nativeSealer(recipients.map((r) => parseRecipient(r)))
}

/** Seals a leaf's chunks natively, or null without the addon (node:crypto then seals them one by one). */
export function chunkSealer (): SealChunks | null {
  const addon = nativeAddon()
  return addon === null ? null : (key, first, count, lastIndex, lastPlain, plain, out) => { addon.ageSealChunks(key, first, count, lastIndex, lastPlain, plain, out) }
}

/** Plaintext bytes wholly before position `pos` of an age file of `plain` bytes after a prefix of `prefix` bytes. */
function plainBefore (prefix: number, plain: number, pos: number): number {
  if (pos <= prefix) return 0
  const chunks = Math.floor((pos - prefix) / SEALED)
  return Math.min(plain, chunks * CHUNK + Math.min(CHUNK, (pos - prefix) - chunks * SEALED))
}

/** The plaintext a leaf of ciphertext [start, end) of a file of `size` bytes is made from (all of it without a seal). */
function plainRange (seal: LeafSeal | null, size: number, start: number, end: number): [number, number] {
  if (seal === null) return [start, end]
  const prefix = seal.prefix.length
  if (end <= prefix) return [0, 0]
  const [first, last] = chunksOfLeaf(prefix, start, end)
  return [first * CHUNK, Math.min(size, (last + 1) * CHUNK)]
}

/**
 * The leaves of a source file (it must stay open until this ends), sealed with `seal` when given. A read that fails
 * or comes up short throws problem(…) (a fetch that fails, its own error); on an early return or an error, the reads
 * in flight are waited for, so the caller may close the file as soon as this ends. `onRead` gets plaintext byte
 * counts; `readsInFlight`, the source's wish (TreeSource).
 */
export async function * fileLeaves (file: ByteSource, seal: LeafSeal | null, pool: LeafWorkers,
  problem: (p: SourceProblem) => Error, onRead?: (bytes: number) => void, readsInFlight = 0): AsyncGenerator<Leaf> {
  const size = file.size
  const total = seal === null ? size : ciphertextSize(size, seal.prefix.length - NONCE)
  const count = Math.max(1, Math.ceil(total / LEAF_SIZE))
  const window = windowFor(pool, readsInFlight)
  const inflight: Array<Promise<LeafResult | { problem: SourceProblem }>> = []
  let next = 0
  let read = 0
  try {
    for (let k = 0; k < count; k++) {
      while (next < count && inflight.length < window) {
        const start = next * LEAF_SIZE
        const end = Math.min(total, start + LEAF_SIZE)
        const job = (async () => {
          const input = await file.input(...plainRange(seal, size, start, end))
          return await pool.run({ kind: 'range', input, size, start, end, seal })
        })()
        job.catch(() => {}) // seen when its turn comes
        inflight.push(job)
        next++
      }
      const r = await inflight.shift()!
      if ('problem' in r) throw problem(r.problem)
      const end = Math.min(total, (k + 1) * LEAF_SIZE)
      const now = seal === null ? end : plainBefore(seal.prefix.length, size, end)
      onRead?.(now - read)
      read = now
      yield { bytes: r.leaf, digest: r.digest }
    }
  } finally {
    await Promise.allSettled(inflight)
  }
}
