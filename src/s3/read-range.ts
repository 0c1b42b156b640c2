import { setTimeout as sleep } from 'node:timers/promises'
import { isThrottlingError, isTransientError } from '@smithy/core/retry'
import { PackerError } from '../errors.js'
import type { Http1Error, Http1Get } from '../net/http1-client.js'
import type { S3Store } from './client.js'
import { s3Error } from './s3-error.js'
import { objectGet, redirectRegion, serviceError } from './signed-get.js'

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

/** Most of an error answer's body kept (an S3 XML error is well under it). */
const ERROR_BODY_BYTES = 64 << 10

/** An attempt that went wrong in a way another may not: an error to show as it is. */
class Final { constructor (readonly err: unknown) {} }
/** S3 said the bucket is in another region (`err`, its answer). */
class Redirect { constructor (readonly region: string, readonly err: unknown) {} }

/**
 * Bytes start..end of one version of an object, whole or not at all, by ranged GETs signed as the SDK signs them and
 * received by packer's own HTTP client (signed-get.ts), straight into the buffer returned where the connection allows.
 * What fails before the answer (a reset, a timeout, 5xx, throttling: what the SDK's retries retry) and a body cut off
 * part-way (a reset, a stall past the idle timeout) are tried again for the bytes still missing, up to the store's
 * number of attempts in all, with the SDK's backoff. The bytes go in `out` when given (exactly the range's length: a
 * SharedArrayBuffer's, say), else in a buffer of their own (never a slice of Node's pool): it may be transferred to
 * another thread.
 */
export async function readRange (store: S3Store, range: ObjectRange, out: Buffer = Buffer.allocUnsafeSlow(range.end - range.start + 1)): Promise<Buffer> {
  const { bucket, key } = range
  if (out.length !== range.end - range.start + 1) throw new Error(`readRange: ${out.length} bytes for a range of ${range.end - range.start + 1}`)
  const at = { have: 0 }
  let region: string | undefined
  for (let attempt = 1; ; attempt++) {
    let cause: unknown
    try {
      await getOnce(store, range, out, at, region)
      if (at.have === out.length) return out
      cause = { name: 'Error', code: 'ECONNRESET', message: `the body ended after ${at.have} of ${out.length} bytes` }
    } catch (err) {
      if (err instanceof PackerError) throw err
      if (err instanceof Redirect && err.region !== region) { // followed once, as the SDK does: not an attempt
        region = err.region
        attempt--
        continue
      }
      if (err instanceof Final || err instanceof Redirect) throw s3Error(store, err.err, { bucket, key }, attempt)
      cause = err
    }
    if (attempt >= store.maxAttempts) throw s3Error(store, cause, { bucket, key }, attempt)
    await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt)) // full jitter, as the SDK's own retries
  }
}

/**
 * One GET of the bytes of `range` still missing (from `at.have`), into `out`; `at.have` counts them as they come.
 * Fails with a PackerError, a Final or a Redirect, or an error to try again.
 */
async function getOnce (store: S3Store, range: ObjectRange, out: Buffer, at: { have: number }, region: string | undefined): Promise<void> {
  const from = range.start + at.have
  const headers: Record<string, string> = { range: `bytes=${from}-${range.end}` }
  if (range.etag !== undefined) headers['if-match'] = range.etag
  let get: Http1Get | undefined
  let settled = false
  return await new Promise<void>((resolve, reject) => {
    const fail = (err: unknown): void => {
      if (settled) return
      settled = true
      get?.cancel()
      reject(err)
    }
    /** The head and body of an error answer, while one is read. */
    let error: { status: number, headers: Record<string, string>, body: Buffer[], bytes: number } | undefined
    let accepting = false
    const errorEnd = (): void => {
      const { status, headers: h, body } = error!
      const redirect = redirectRegion(store, status, h)
      const e = serviceError(status, Buffer.concat(body).toString('utf8'))
      fail(redirect !== undefined ? new Redirect(redirect, e) : isTransientError(e) || isThrottlingError(e) ? e : new Final(e))
    }
    objectGet(store, range.bucket, range.key, headers, {
      head: (h) => {
        if (h.status >= 300) { error = { status: h.status, headers: h.headers, body: [], bytes: 0 }; return }
        try {
          checkAnswer(store, range, h.status, h.headers, from)
          accepting = true
        } catch (err) { fail(err) }
      },
      piece: (p) => {
        if (error !== undefined) {
          if (error.bytes < ERROR_BODY_BYTES) error.body.push(Buffer.from(p))
          error.bytes += p.length
          if (error.bytes >= ERROR_BODY_BYTES) errorEnd()
          return
        }
        if (at.have + p.length > out.length) { fail(answerError(store, range, `sent more bytes than the range ${range.start}-${range.end} holds`)); return }
        // read straight into `out` (into, below), or a piece to copy there
        if (p.buffer !== out.buffer || p.byteOffset !== out.byteOffset + at.have) p.copy(out, at.have)
        at.have += p.length
      },
      end: () => {
        if (error !== undefined) errorEnd()
        else if (!settled) { settled = true; resolve() }
      },
      error: (err) => { fail(asSdkError(err)) },
      into: (max) => accepting && at.have < out.length ? out.subarray(at.have, at.have + Math.min(max, out.length - at.have)) : undefined,
    }, region).then((g) => {
      get = g
      if (settled) g.cancel()
    }, fail)
  })
}

/**
 * A failed connection or body as the SDK's errors carry it (the socket's own error, or a code), for s3Error's words;
 * Final unless the SDK's retry rules would try it again (a reset or timeout, not an untrusted certificate or a garbled
 * answer).
 */
function asSdkError (err: Http1Error): unknown {
  const e = (err.code === 'ETIMEDOUT'
    ? { name: 'TimeoutError', code: err.code, message: err.message }
    : err.cause instanceof Error ? err.cause : { name: 'Error', code: err.code, message: err.message }) as Parameters<typeof isTransientError>[0]
  return err.transient && (isTransientError(e) || isThrottlingError(e)) ? e : new Final(e)
}

/** Refuses an answer that is not the asked-for bytes of the pinned version (a store may ignore Range or If-Match). */
function checkAnswer (store: S3Store, range: ObjectRange, status: number, headers: Record<string, string>, from: number): void {
  if (status !== 206) {
    throw answerError(store, range, `ignored the byte range (HTTP ${status} instead of 206): packer needs a store that serves ranges`)
  }
  if (range.etag !== undefined && headers.etag !== range.etag) {
    throw s3Error(store, { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } }, { bucket: range.bucket, key: range.key })
  }
  const contentRange = headers['content-range']
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '')
  if (m === null || Number(m[1]) !== from || Number(m[2]) !== range.end) {
    throw answerError(store, range, `sent bytes ${contentRange ?? '(no Content-Range)'} when asked for ${from}-${range.end}`)
  }
}

function answerError (store: S3Store, range: ObjectRange, what: string): PackerError {
  const object = `s3://${range.bucket}/${range.key}`
  return new PackerError('REMOTE', `${store.endpoint} ${what}, for ${object}`, { subject: object })
}
