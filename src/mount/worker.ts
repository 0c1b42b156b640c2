/**
 * A mount worker thread: preads one leaf block from its CAR (the descriptor is shared with the main thread), checks
 * its SHA-256 against the CID, and for encrypted files opens the age chunks wholly inside it. The FUSE thread only
 * copies plaintext out; hashing and decryption, the costly part, run here, ahead of the reader.
 */
import { parentPort } from 'node:worker_threads'
import { createHash } from 'node:crypto'
import { readSync } from 'node:fs'
import { TAG, CHUNK, NONCE, openChunkInto, payloadKey } from './chunks.js'

export interface LeafJob {
  id: number
  /** Buffers the main thread no longer uses (evicted from its cache), given back for reuse: no page faults, no GC. */
  recycle?: ArrayBuffer[]
  fd: number
  offset: number
  length: number
  digest: Uint8Array
  dec?: {
    /** The payload key, or null to derive it from the file key and the nonce at `nonceAt` in this leaf. */
    key: Uint8Array | null
    fileKey?: Uint8Array
    nonceAt?: number
    first: number
    count: number
    firstAt: number
    /** Index of the file's final chunk and its plaintext length. */
    lastIndex: number
    lastPlain: number
  }
}

export type LeafResult =
  | { id: number, ok: true, data: ArrayBuffer, dataLength: number, head?: ArrayBuffer, tail?: ArrayBuffer, key?: ArrayBuffer }
  | { id: number, ok: false, kind: 'truncated' | 'hash' | 'auth' | 'io', chunk?: number, message: string }

function own (b: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(b.length)
  new Uint8Array(out).set(b)
  return out
}

const spare: ArrayBuffer[] = []
let scratch = Buffer.alloc(0)

/** A buffer of at least n bytes to send to the main thread: a recycled one when it fits. */
function outBuffer (n: number): Buffer {
  for (let i = spare.length - 1; i >= 0; i--) {
    if (spare[i].byteLength >= n && spare[i].byteLength <= n + 1024 * 1024) return Buffer.from(spare.splice(i, 1)[0], 0, n)
  }
  // At least 1 MiB, so that every buffer fits every later leaf (15 or 16 chunks of plaintext, or a 1 MiB leaf).
  return Buffer.from(new ArrayBuffer(Math.max(n, 1024 * 1024)), 0, n)
}

export function runJob (job: LeafJob): { result: LeafResult, transfer: ArrayBuffer[] } {
  const { id } = job
  for (const b of job.recycle ?? []) if (spare.length < 8) spare.push(b)
  // A clear file's leaf goes to the main thread as is; an encrypted one is read into this thread's scratch buffer.
  let leaf: Buffer
  if (job.dec === undefined) leaf = outBuffer(job.length)
  else {
    if (scratch.length < job.length) scratch = Buffer.allocUnsafeSlow(Math.max(job.length, 1024 * 1024 + 64 * 1024))
    leaf = scratch.subarray(0, job.length)
  }
  try {
    let done = 0
    while (done < job.length) {
      const n = readSync(job.fd, leaf, done, job.length - done, job.offset + done)
      if (n === 0) return { result: { id, ok: false, kind: 'truncated', message: `the CAR ends before byte ${job.offset + job.length}` }, transfer: [] }
      done += n
    }
  } catch (err) {
    return { result: { id, ok: false, kind: 'io', message: (err as Error).message }, transfer: [] }
  }
  const digest = createHash('sha256').update(leaf).digest()
  if (!digest.equals(job.digest)) return { result: { id, ok: false, kind: 'hash', message: 'does not match its hash' }, transfer: [] }
  const d = job.dec
  if (d === undefined) return { result: { id, ok: true, data: leaf.buffer as ArrayBuffer, dataLength: job.length }, transfer: [leaf.buffer as ArrayBuffer] }
  // (scratch is only ever read into here; the plaintext goes out in its own buffer)
  let key = d.key
  let keyOut: ArrayBuffer | undefined
  if (key === null) {
    const nonce = leaf.subarray(d.nonceAt!, d.nonceAt! + NONCE)
    key = payloadKey(d.fileKey!, nonce)
    keyOut = own(key)
  }
  const plainLength = d.count === 0 ? 0 : (d.count - 1) * CHUNK + (d.first + d.count - 1 === d.lastIndex ? d.lastPlain : CHUNK)
  const plain = outBuffer(plainLength)
  let at = d.firstAt
  for (let i = 0; i < d.count; i++) {
    const c = d.first + i
    const last = c === d.lastIndex
    const n = (last ? d.lastPlain : CHUNK) + TAG
    if (!openChunkInto(key, c, last, leaf.subarray(at, at + n), plain, i * CHUNK)) {
      return { result: { id, ok: false, kind: 'auth', chunk: c, message: `age chunk ${c} failed authentication` }, transfer: [] }
    }
    at += n
  }
  const head = own(leaf.subarray(0, d.firstAt))
  const tail = own(leaf.subarray(at))
  const transfer = [plain.buffer as ArrayBuffer, head, tail]
  if (keyOut) transfer.push(keyOut)
  return { result: { id, ok: true, data: plain.buffer as ArrayBuffer, dataLength: plainLength, head, tail, key: keyOut }, transfer }
}

if (parentPort !== null) {
  const port = parentPort
  port.on('message', (job: LeafJob) => {
    const { result, transfer } = runJob(job)
    port.postMessage(result, transfer)
  })
}
