/**
 * Piece CID (CommP) of a CAR, computed while the CAR is written.
 *
 * CommP: the payload is Fr32-padded (each 127 bytes become 128: every 254 bits are followed by two zero bits),
 * zero-padded up to the padded piece size (a power of two, at least 128 bytes), and reduced by a binary merkle
 * tree whose nodes are SHA-256(left ‖ right) with the top two bits of the last byte cleared.
 *
 * Two backends:
 *  - 'native': the addon in native/ (SHA-NI where the CPU has it), on worker threads of its own, so the JS thread
 *    only hands over references to the bytes; about 0.8–0.9 GB/s per worker thread here;
 *  - 'data-segment': @web3-storage/data-segment on the JS thread, 5–8 MiB/s.
 * Both give the same digests. PACKER_NO_NATIVE=1 forces 'data-segment'.
 */
import os from 'node:os'

import { Piece } from '@web3-storage/data-segment'
import * as PieceMultihash from '@web3-storage/data-segment/multihash'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'

import { loadNativeAddon, type NativeAddon, type NativeCommP, type NativeCommPHandle } from '../native-addon.js'

export interface PieceDigest {
  /** Piece CID v1: fil-commitment-unsealed + sha2-256-trunc254-padded (`baga6ea4sea…`). */
  pieceCid: string
  /** Piece CID v2 (FRC-0069): raw + fr32-sha2-256-trunc254-padded-binary-tree, with padding and height (`bafkzcib…`). */
  pieceCidV2: string
  /** Padded piece size in bytes (a power of two ≥ 128). */
  paddedSize: number
  /** Bytes fed to the hasher. */
  payloadSize: number
}

export interface PieceHasher {
  /**
   * Feed CAR bytes in order. May hand the work to a native thread; resolves when the caller may send more
   * (at most {@link MAX_IN_FLIGHT} bytes are held at once). The caller does not change `bytes` until `release`, when
   * given, is called: once the hasher no longer reads them (never after destroy()).
   */
  update(bytes: Uint8Array, release?: () => void): Promise<void>
  digest(): Promise<PieceDigest>
  /** Abandons the hasher (after an error): stops its threads and lets go of the bytes it holds. Idempotent. */
  destroy?(): void
}

export type PieceHasherBackend = 'native' | 'data-segment'

export interface PieceHasherOptions {
  /** Native worker threads for one piece (default PACKER_COMMP_THREADS, else 1 on ≤ 2 cores, 2 above). */
  threads?: number
  /** Native SHA-256 implementation (benchmarks, tests): see NativeAddon.commpImpls(). */
  impl?: string
}

/**
 * Bytes handed to the native hasher and not yet hashed, above which `update` waits. (A chunk is referenced until
 * it is entirely hashed, so with chunks of size C at most MAX_IN_FLIGHT + C bytes are held.)
 */
export const MAX_IN_FLIGHT = 16 * 1024 * 1024
/** Updates smaller than this are copied into a staging buffer instead of being referenced one by one. */
const SMALL_UPDATE = 64 * 1024
const STAGING_SIZE = 1024 * 1024

const FIL_COMMITMENT_UNSEALED = 0xf101
const SHA2_256_TRUNC254_PADDED = 0x1012
const FR32_SHA2_256_TRUNC254_PADDED_BINARY_TREE = 0x1011
const RAW = 0x55

let warned = false

/**
 * Hands bytes to a piece hasher and to a writer at once (their queues overlap; both are bounded: the backpressure).
 * `done`, when given, is called once both have let go of the bytes, so their buffer can be reused.
 */
export async function hashAndWrite (hasher: PieceHasher, write: (bytes: Uint8Array, release?: () => void) => Promise<void>,
  bytes: Uint8Array, done?: () => void): Promise<void> {
  let holders = 2
  const release = done === undefined ? undefined : () => { if (--holders === 0) done() }
  const hashed = hasher.update(bytes, release)
  await write(bytes, release)
  await hashed
}

/** The backend `createPieceHasher()` uses by default. */
export function pieceHasherBackend (): PieceHasherBackend {
  return loadNativeAddon().addon !== null ? 'native' : 'data-segment'
}

/**
 * A hasher for one piece. Without `backend`: native if the addon loads, else data-segment, with one warning on
 * stderr per process. Asking for 'native' when the addon is not available throws.
 */
export function createPieceHasher (backend?: PieceHasherBackend, options: PieceHasherOptions = {}): PieceHasher {
  const load = loadNativeAddon()
  if (backend === 'data-segment') return new DataSegmentPieceHasher()
  if (load.addon !== null) return new NativePieceHasher(load.addon, options)
  if (backend === 'native') throw new Error(`packer: native CommP addon not available (${load.reason ?? 'unknown'})`)
  if (!warned) {
    warned = true
    process.stderr.write(`packer: native CommP addon not available (${load.reason ?? 'unknown'}); ` +
      'using @web3-storage/data-segment, which is much slower\n')
  }
  return new DataSegmentPieceHasher()
}

/** Padded piece size of a payload: 128 × the next power of two ≥ ceil(size / 127), at least 128. */
export function pieceSizeFor (payloadSize: number): number {
  if (!Number.isSafeInteger(payloadSize) || payloadSize < 0) throw new RangeError(`bad payload size ${payloadSize}`)
  const quads = Math.max(1, Math.ceil(payloadSize / 127))
  let q = 1
  while (q < quads) q *= 2
  return q * 128
}

/** Both piece CIDs from the root, the tree height and the payload size. */
export function pieceDigestFrom (root: Uint8Array, height: number, payloadSize: number): PieceDigest {
  const paddedSize = 32 * 2 ** height
  const padding = (paddedSize / 128) * 127 - payloadSize
  const v1 = CID.create(1, FIL_COMMITMENT_UNSEALED, Digest.create(SHA2_256_TRUNC254_PADDED, root))
  const paddingLength = varint.encodingLength(padding)
  const bytes = new Uint8Array(paddingLength + 1 + 32)
  varint.encodeTo(padding, bytes, 0)
  bytes[paddingLength] = height
  bytes.set(root, paddingLength + 1)
  const v2 = CID.create(1, RAW, Digest.create(FR32_SHA2_256_TRUNC254_PADDED_BINARY_TREE, bytes))
  return { pieceCid: v1.toString(), pieceCidV2: v2.toString(), paddedSize, payloadSize }
}

function defaultThreads (options: PieceHasherOptions): number {
  if (options.threads !== undefined) return options.threads
  const env = Number.parseInt(process.env.PACKER_COMMP_THREADS ?? '', 10)
  if (Number.isInteger(env) && env > 0) return env
  // One worker keeps up with the JS pipeline (~0.7–0.8 GB/s per thread here); a second one only when a core
  // is left beside the JS thread and that worker.
  return Math.min(2, Math.max(1, os.availableParallelism() - 1))
}

class NativePieceHasher implements PieceHasher {
  readonly #addon: NativeAddon
  readonly #handle: NativeCommPHandle
  #written = 0
  #hashed = 0
  #staging: Uint8Array | undefined
  #stagingUsed = 0
  #waiters: Array<() => void> = []
  /** Callers' releases of bytes still referenced, with the payload offset where each one's bytes end. */
  #releases: Array<{ end: number, release: () => void }> = []
  #finishing = false
  #destroyed = false
  #result: Promise<NativeCommP>
  #resolveResult!: (r: NativeCommP) => void
  #rejectResult!: (err: Error) => void

  constructor (addon: NativeAddon, options: PieceHasherOptions) {
    this.#addon = addon
    this.#result = new Promise((resolve, reject) => {
      this.#resolveResult = resolve
      this.#rejectResult = reject
    })
    this.#result.catch(() => {}) // only digest() reports it
    this.#handle = addon.commpCreate(defaultThreads(options), options.impl, (hashed, done, result) => {
      this.#hashed = hashed
      while (this.#releases.length > 0 && this.#releases[0]!.end <= hashed) this.#releases.shift()!.release()
      if (this.#written - this.#hashed <= MAX_IN_FLIGHT && this.#waiters.length > 0) {
        const waiters = this.#waiters
        this.#waiters = []
        for (const w of waiters) w()
      }
      if (done && result !== undefined) this.#resolveResult(result)
    })
  }

  update (bytes: Uint8Array, release?: () => void): Promise<void> {
    if (this.#finishing || this.#destroyed) return Promise.reject(new Error('PieceHasher.update after digest()/destroy()'))
    const n = bytes.byteLength
    if (n === 0) {
      release?.()
      return Promise.resolve()
    }
    if (n < SMALL_UPDATE) {
      let room = STAGING_SIZE - this.#stagingUsed
      if (this.#staging === undefined) {
        this.#staging = new Uint8Array(STAGING_SIZE)
        this.#stagingUsed = 0
        room = STAGING_SIZE
      }
      if (n <= room) {
        this.#staging.set(bytes, this.#stagingUsed)
        this.#stagingUsed += n
        if (this.#stagingUsed === STAGING_SIZE) this.#flushStaging()
      } else {
        this.#staging.set(bytes.subarray(0, room), this.#stagingUsed)
        this.#stagingUsed += room
        this.#flushStaging()
        this.#staging = new Uint8Array(STAGING_SIZE)
        this.#staging.set(bytes.subarray(room), 0)
        this.#stagingUsed = n - room
      }
      release?.() // copied
    } else {
      this.#flushStaging()
      this.#write(bytes)
      if (release !== undefined) this.#releases.push({ end: this.#written, release })
    }
    if (this.#written - this.#hashed <= MAX_IN_FLIGHT) return Promise.resolve()
    return new Promise((resolve) => { this.#waiters.push(resolve) })
  }

  async digest (): Promise<PieceDigest> {
    if (this.#destroyed) throw new Error('PieceHasher.digest after destroy()')
    if (!this.#finishing) {
      this.#flushStaging()
      this.#finishing = true
      this.#addon.commpFinish(this.#handle)
    }
    const r = await this.#result
    return pieceDigestFrom(r.root, r.height, r.payloadSize)
  }

  destroy (): void {
    if (this.#destroyed) return
    this.#destroyed = true
    this.#staging = undefined
    this.#releases = []
    this.#addon.commpDestroy(this.#handle)
    this.#rejectResult(new Error('PieceHasher destroyed before its digest was known'))
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w()
  }

  #flushStaging (): void {
    if (this.#staging === undefined || this.#stagingUsed === 0) return
    // The native side keeps the array until it is hashed: start a fresh one next time.
    this.#write(this.#staging.subarray(0, this.#stagingUsed))
    this.#staging = undefined
    this.#stagingUsed = 0
  }

  #write (bytes: Uint8Array): void {
    this.#addon.commpWrite(this.#handle, bytes)
    this.#written += bytes.byteLength
  }
}

class DataSegmentPieceHasher implements PieceHasher {
  readonly #hasher = PieceMultihash.create()
  #size = 0
  #done = false

  async update (bytes: Uint8Array, release?: () => void): Promise<void> {
    if (this.#done) throw new Error('PieceHasher.update after digest()')
    this.#hasher.write(bytes)
    this.#size += bytes.byteLength
    release?.()
  }

  async digest (): Promise<PieceDigest> {
    this.#done = true
    const piece = Piece.fromDigest(this.#hasher.digest())
    return pieceDigestFrom(piece.root, piece.height, this.#size)
  }

  destroy (): void {
    this.#done = true
  }
}
