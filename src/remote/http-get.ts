import { PackerError } from '../errors.js'
import { Http1Error, http1Get, type Http1Timeouts } from '../net/http1-client.js'

/** How long a request may wait, each in milliseconds: nothing read from a web server can hang. */
export type HttpTimeouts = Http1Timeouts

export const DEFAULT_TIMEOUTS: HttpTimeouts = { connect: 10_000, firstByte: 30_000, stall: 30_000 }

/**
 * Why a GET failed. `transient` ones (a timeout, a reset, 429, 5xx) may pass on a second try; the others (404, wrong
 * answers: 200 to a Range request, an encoded body, a short body) will not.
 */
export class HttpGetError extends PackerError {
  readonly status: number | undefined
  readonly transient: boolean
  /** Seconds the server asked to wait (Retry-After), when it said. */
  readonly retryAfter: number | undefined
  readonly url: string
  /** What went wrong, without the URL (the message is `GET url: what`). */
  readonly what: string
  constructor (url: string, what: string, o: { status?: number, transient: boolean, retryAfter?: number }) {
    super('REMOTE', `GET ${url}: ${what}`, { subject: url })
    this.url = url
    this.what = what
    this.status = o.status
    this.transient = o.transient
    this.retryAfter = o.retryAfter
  }
}

/** An answer's body, pieces as they come; a stall past the timeout ends it with an error. */
export interface HttpBody {
  /** Total size of the resource (from Content-Range, or Content-Length of a whole answer). */
  total: number
  /** Last-Modified, in ms, when the server said. */
  modifiedMs: number | undefined
  /**
   * The pieces, each a Buffer of its own; with `reuse`, each valid only until the next is asked for (its memory then
   * receives another piece: no fresh memory per piece, whose first touches cost more than the copy on these VMs).
   */
  pieces: (o?: PiecesOptions) => AsyncIterable<Buffer>
  /**
   * The pieces handed to `put` as they come, each a view valid only during the call (the connection reads into the
   * same memory again: no Buffer per piece); resolves at the body's end. An error `put` throws ends the body with it.
   * `into(max)`: where the caller would have the next at most `max` bytes, to be read there (Http1Receiver.into).
   */
  each: (put: (piece: Buffer) => void, into?: (max: number) => Buffer | undefined) => Promise<void>
  /** Stops reading (the connection is dropped). */
  cancel: () => void
}

/** How a body's pieces are handed over (HttpBody.pieces). */
export interface PiecesOptions { reuse?: boolean }

/** Pieces kept for a consumer of `pieces()` before the connection is paused. */
const QUEUED_PIECES = 16
/** Least memory of a piece kept for reuse (a direct connection reads at most 256 KiB at a time). */
const PIECE_BYTES = 256 << 10

/**
 * GET of bytes [from, to) of `url` (`to` undefined: to its end), never encoded (Accept-Encoding: identity). A server
 * that answers a Range request with the whole resource (200) or with an encoded body is an error that says so.
 * Everything is bounded by `t`. The HTTP is src/net/http1-client.ts's (a third of node:http's CPU per byte).
 */
export async function httpGet (url: string, from: number, to: number | undefined, t: HttpTimeouts = DEFAULT_TIMEOUTS): Promise<HttpBody> {
  const target = new URL(url)
  const ranged = from > 0 || to !== undefined
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'packer' }
  if (ranged) headers.range = `bytes=${from}-${to === undefined ? '' : to - 1}`
  return await new Promise<HttpBody>((resolve, reject) => {
    /** Where pieces go: copied and kept until a consumer comes (the rest of a read goes on right after the head). */
    let sink: ((piece: Buffer) => void) | undefined
    let into: ((max: number) => Buffer | undefined) | undefined
    let early: Buffer[] = []
    let ended = false
    let failed: Error | undefined
    let finish: { resolve: () => void, reject: (err: Error) => void } | undefined
    /** The body's end (or failure), told to its consumer, now or when it comes. */
    const over = (err?: Error): void => {
      if (err !== undefined) failed = err
      else ended = true
      if (finish === undefined) return
      if (err !== undefined) finish.reject(err)
      else finish.resolve()
    }
    const toGetError = (err: Http1Error): HttpGetError => new HttpGetError(url, err.message, { transient: err.transient })
    const get = http1Get(target, headers, t, {
      // before the head, the GET's failure; after it (the promise resolved), the body's
      error: (err) => { reject(toGetError(err)); over(toGetError(err)) },
      head: (h) => {
        const refuse = (what: string, transient: boolean, retryAfter?: number): void => {
          get.cancel()
          reject(new HttpGetError(url, what, { status: h.status, transient, retryAfter }))
        }
        const { status, reason } = h
        if (status === 404 || status === 410) return refuse(`${status}: not there`, false)
        if (status === 429 || status >= 500) return refuse(`${status} ${reason}`.trim(), true, retryAfterOf(h.headers['retry-after']))
        if (status !== 200 && status !== 206) return refuse(`${status} ${reason}`.trim(), false)
        if (ranged && status === 200) return refuse('the server answered a Range request with the whole file (200, not 206): it does not serve byte ranges', false)
        const encoding = h.headers['content-encoding']
        if (encoding !== undefined && encoding !== 'identity') return refuse(`the server sent the bytes encoded (Content-Encoding: ${encoding}) although asked not to`, false)
        const range = h.headers['content-range'] ?? ''
        const total = Number(status === 206 ? /\/(\d+)$/.exec(range)?.[1] ?? NaN : h.headers['content-length'] ?? NaN)
        if (status === 206 && !new RegExp(`^bytes ${from}-`).test(range)) return refuse(`the server sent bytes ${range === '' ? '(no Content-Range)' : range}, not from ${from}`, false)
        const modified = Date.parse(h.headers['last-modified'] ?? '')
        get.pause()
        const consume = async (put: (piece: Buffer) => void, place?: typeof into): Promise<void> => await new Promise<void>((resolve, reject) => {
          finish = { resolve, reject }
          into = place
          sink = (p) => {
            if (failed !== undefined) return
            try { put(p) } catch (err) { get.cancel(); over(err as Error) }
          }
          for (const p of early) sink(p)
          early = []
          if (failed !== undefined) reject(failed)
          else if (ended) resolve()
          else get.resume()
        })
        resolve({
          total,
          modifiedMs: Number.isNaN(modified) ? undefined : modified,
          cancel: () => { get.cancel() },
          each: consume,
          pieces: async function * (o: PiecesOptions = {}) {
            const queue: Buffer[] = []
            /** With reuse: the memory of pieces handed over and let go (each piece has its own, from its start). */
            const spare: Buffer[] = []
            let wake: (() => void) | undefined
            const done = consume((p) => {
              if (o.reuse !== true) queue.push(Buffer.from(p))
              else {
                let m = spare.pop()
                if (m === undefined || m.length < p.length) m = Buffer.allocUnsafeSlow(Math.max(p.length, PIECE_BYTES))
                queue.push(m.subarray(0, p.copy(m)))
              }
              if (queue.length >= QUEUED_PIECES) get.pause()
              wake?.()
            })
            let settled = false
            const settle = (): void => { settled = true; wake?.() }
            done.then(settle, settle)
            try {
              for (;;) {
                const p = queue.shift()
                if (p !== undefined) {
                  if (queue.length < QUEUED_PIECES / 2) get.resume()
                  yield p
                  if (o.reuse === true) spare.push(Buffer.from(p.buffer)) // the consumer asked for the next: done with this one
                  continue
                }
                if (settled) break
                await new Promise<void>((resolve) => { wake = resolve })
                wake = undefined
              }
              await done
            } finally { get.cancel() }
          },
        })
      },
      piece: (p) => {
        if (sink !== undefined) sink(p)
        else early.push(Buffer.from(p))
      },
      end: () => { over() },
      into: (max) => into?.(max),
    })
  })
}

/**
 * Bytes [from, to) of `url`, exactly that many, each piece handed to `put` with its offset from `from` as it comes
 * (so a caller puts them where they belong without gathering them first), or an error naming the URL. `place(at, max)`:
 * where the caller would have the bytes from offset `at` (at most `max` of them) read straight into (a piece then
 * handed to `put` may already be there).
 */
export async function httpGetRange (url: string, from: number, to: number, put: (piece: Buffer, at: number) => void, t?: HttpTimeouts,
  place?: (at: number, max: number) => Buffer | undefined): Promise<void> {
  const body = await httpGet(url, from, to, t)
  let got = 0
  await body.each((p) => {
    if (got + p.length > to - from) throw new HttpGetError(url, `the server sent more than the ${to - from} bytes asked for`, { transient: false })
    put(p, got)
    got += p.length
  }, place === undefined ? undefined : (max) => place(got, Math.min(max, to - from - got)))
  if (got < to - from) throw new HttpGetError(url, `the server sent ${got} of ${to - from} bytes (bytes ${from}-${to - 1}): the file is shorter than the set says`, { transient: false })
}

/** Bytes [from, to) of `url`, exactly that many, or an error naming the URL. */
export async function httpGetBytes (url: string, from: number, to: number, t?: HttpTimeouts): Promise<Buffer> {
  const out = Buffer.allocUnsafe(to - from)
  await httpGetRange(url, from, to, (p, at) => { p.copy(out, at) }, t)
  return out
}

function retryAfterOf (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const s = Number(value)
  if (Number.isFinite(s)) return s
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000)
}
