import { setTimeout as sleep } from 'node:timers/promises'
import type { Readable } from 'node:stream'
import { GetObjectCommand, type GetObjectCommandOutput } from '@aws-sdk/client-s3'
import { PackerError } from '../errors.js'
import type { S3Store } from './client.js'
import { s3Error } from './s3-error.js'

export interface ObjectRange {
  bucket: string
  key: string
  /**
   * The version to read, as listed: a store that holds another answers 412 and the read fails, never mixes them.
   * Without it, whichever version the store holds (a file packer wrote and nothing else changes).
   */
  etag?: string
  /** First and last byte, inclusive. */
  start: number
  end: number
}

/**
 * Bytes start..end of one version of an object, whole or not at all. The SDK retries a request that fails before
 * its answer starts; a body cut off part-way (a reset, a stall past the idle timeout) reaches the reader, so this asks
 * again for the bytes still missing, up to the store's number of attempts, with backoff. The buffer is its own (never
 * a slice of Node's pool): it may be transferred to another thread.
 */
export async function readRange (store: S3Store, range: ObjectRange): Promise<Buffer> {
  const out = Buffer.allocUnsafeSlow(range.end - range.start + 1)
  let at = 0
  for (const piece of await readRangePieces(store, range)) at += piece.copy(out, at)
  return out
}

/**
 * The same bytes as the pieces the connection gave them in, in order, copied nowhere: for a reader that hands
 * parts of them on in buffers of their own (GroupedReads), one copy fewer.
 */
export async function readRangePieces (store: S3Store, range: ObjectRange): Promise<Buffer[]> {
  const { bucket, key, etag, start, end } = range
  const length = end - start + 1
  const pieces: Buffer[] = []
  let have = 0
  for (let attempt = 1; ; attempt++) {
    let res: GetObjectCommandOutput
    try {
      res = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, IfMatch: etag, Range: `bytes=${start + have}-${end}` }))
    } catch (err) {
      throw s3Error(store, err, { bucket, key })
    }
    const body = res.Body as Readable
    let cause: unknown
    try {
      checkAnswer(store, range, res, start + have)
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (have + chunk.length > length) throw answerError(store, range, `sent more bytes than the range ${start}-${end} holds`)
        pieces.push(chunk)
        have += chunk.length
      }
      if (have === length) return pieces
      cause = Object.assign(new Error(`the body ended after ${have} of ${length} bytes`), { code: 'ECONNRESET' })
    } catch (err) {
      body.destroy()
      if (err instanceof PackerError) throw err
      cause = err
    }
    if (attempt >= store.maxAttempts) throw s3Error(store, cause, { bucket, key }, attempt)
    await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt)) // full jitter, as the SDK's own retries
  }
}

/** Refuses an answer that is not the asked-for bytes of the pinned version (a store may ignore Range or If-Match). */
function checkAnswer (store: S3Store, range: ObjectRange, res: GetObjectCommandOutput, from: number): void {
  if (res.$metadata.httpStatusCode !== 206) {
    throw answerError(store, range, `ignored the byte range (HTTP ${res.$metadata.httpStatusCode ?? '?'} instead of 206): packer needs a store that serves ranges`)
  }
  if (range.etag !== undefined && res.ETag !== range.etag) {
    throw s3Error(store, { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } }, { bucket: range.bucket, key: range.key })
  }
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.ContentRange ?? '')
  if (m === null || Number(m[1]) !== from || Number(m[2]) !== range.end) {
    throw answerError(store, range, `sent bytes ${res.ContentRange ?? '(no Content-Range)'} when asked for ${from}-${range.end}`)
  }
}

function answerError (store: S3Store, range: ObjectRange, what: string): PackerError {
  const object = `s3://${range.bucket}/${range.key}`
  return new PackerError('REMOTE', `${store.endpoint} ${what}, for ${object}`, { subject: object })
}
