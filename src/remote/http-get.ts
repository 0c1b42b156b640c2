import http from 'node:http'
import https from 'node:https'
import { PackerError } from '../errors.js'
import { proxiedAgent, proxyFor } from '../net/env-proxy.js'

/** How long a request may wait, each in milliseconds: nothing read from a web server can hang. */
export interface HttpTimeouts {
  /** For the TCP (and TLS) connection. */
  connect: number
  /** From the request sent to the answer's head. */
  firstByte: number
  /** Between two pieces of a body. */
  stall: number
}

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

const agents = new Map<string, http.Agent>()

/** One keep-alive agent per proxy and scheme: loopback never goes through a proxy (src/net/env-proxy.ts). */
function agentFor (url: URL): http.Agent {
  const key = `${url.protocol}${proxyFor(url)?.href ?? ''}`
  let agent = agents.get(key)
  if (agent === undefined) {
    agent = proxiedAgent(url, { keepAlive: true, maxSockets: 32 })
    agents.set(key, agent)
  }
  return agent
}

/** An answer's body, pieces as they come; a stall past the timeout ends it with an error. */
export interface HttpBody {
  /** Total size of the resource (from Content-Range, or Content-Length of a whole answer). */
  total: number
  /** Last-Modified, in ms, when the server said. */
  modifiedMs: number | undefined
  pieces: () => AsyncIterable<Buffer>
  /**
   * The pieces handed to `put` as they come (no async iteration per piece: a third of the CPU of receiving); resolves
   * at the body's end. An error `put` throws ends the body with that error.
   */
  each: (put: (piece: Buffer) => void) => Promise<void>
  /** Stops reading (the connection is dropped). */
  cancel: () => void
}

/**
 * GET of bytes [from, to) of `url` (`to` undefined: to its end), never encoded (Accept-Encoding: identity). A server
 * that answers a Range request with the whole resource (200) or with an encoded body is an error that says so.
 * Everything is bounded by `t`.
 */
export async function httpGet (url: string, from: number, to: number | undefined, t: HttpTimeouts = DEFAULT_TIMEOUTS): Promise<HttpBody> {
  const target = new URL(url)
  const ranged = from > 0 || to !== undefined
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'packer' }
  if (ranged) headers.range = `bytes=${from}-${to === undefined ? '' : to - 1}`
  const client = target.protocol === 'https:' ? https : http
  return await new Promise<HttpBody>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const fail = (err: HttpGetError): void => { clearTimeout(timer); req.destroy(); reject(err) }
    const arm = (ms: number, what: string): void => {
      clearTimeout(timer)
      timer = setTimeout(() => fail(new HttpGetError(url, `${what} within ${ms / 1000} s`, { transient: true })), ms)
    }
    const req = client.request(target, { method: 'GET', headers, agent: agentFor(target) }, (res) => {
      clearTimeout(timer)
      const status = res.statusCode ?? 0
      const refuse = (what: string, transient: boolean, retryAfter?: number): void => { res.resume(); fail(new HttpGetError(url, what, { status, transient, retryAfter })) }
      if (status === 404 || status === 410) return refuse(`${status}: not there`, false)
      if (status === 429 || status >= 500) return refuse(`${status} ${res.statusMessage ?? ''}`.trim(), true, retryAfterOf(res.headers['retry-after']))
      if (status !== 200 && status !== 206) return refuse(`${status} ${res.statusMessage ?? ''}`.trim(), false)
      if (ranged && status === 200) return refuse('the server answered a Range request with the whole file (200, not 206): it does not serve byte ranges', false)
      const encoding = res.headers['content-encoding']
      if (encoding !== undefined && encoding !== 'identity') return refuse(`the server sent the bytes encoded (Content-Encoding: ${encoding}) although asked not to`, false)
      const total = Number(status === 206 ? /\/(\d+)$/.exec(res.headers['content-range'] ?? '')?.[1] ?? NaN : res.headers['content-length'] ?? NaN)
      if (status === 206 && !new RegExp(`^bytes ${from}-`).test(res.headers['content-range'] ?? '')) return refuse(`the server sent bytes ${res.headers['content-range'] ?? '(no Content-Range)'}, not from ${from}`, false)
      // A stall mid-body: the socket's idle timer (cleared when the answer is done: the socket may be reused).
      const socket = res.socket
      const stalled = (): void => { res.destroy(new HttpGetError(url, `the body stalled for ${t.stall / 1000} s`, { transient: true })) }
      socket.setTimeout(t.stall, stalled)
      res.once('close', () => { socket.setTimeout(0); socket.removeListener('timeout', stalled) })
      const modified = Date.parse(res.headers['last-modified'] ?? '')
      const midBody = (err: unknown): HttpGetError => err instanceof HttpGetError ? err : new HttpGetError(url, `the connection failed mid-body (${(err as Error).message})`, { transient: true })
      resolve({
        total,
        modifiedMs: Number.isNaN(modified) ? undefined : modified,
        cancel: () => { res.destroy() },
        pieces: async function * () {
          try {
            for await (const p of res) yield p as Buffer
          } catch (err) {
            throw midBody(err)
          } finally { res.destroy() }
        },
        each: async (put) => await new Promise<void>((resolve, reject) => {
          res.on('data', (p: Buffer) => {
            try { put(p) } catch (err) { res.destroy(); reject(err) }
          })
          res.once('end', resolve)
          res.once('error', (err) => reject(midBody(err)))
          res.once('close', () => { if (!res.complete) reject(midBody(new Error('Premature close'))) })
        }),
      })
    })
    req.on('socket', (s) => {
      if (s.connecting) {
        arm(t.connect, 'no connection')
        s.once('connect', () => arm(t.firstByte, 'no answer'))
      } else {
        arm(t.firstByte, 'no answer')
      }
    })
    req.on('error', (err) => fail(new HttpGetError(url, `cannot reach the server (${err.message})`, { transient: true })))
    req.end()
  })
}

/**
 * Bytes [from, to) of `url`, exactly that many, each piece handed to `put` with its offset from `from` as it comes
 * (so a caller puts them where they belong without gathering them first), or an error naming the URL.
 */
export async function httpGetRange (url: string, from: number, to: number, put: (piece: Buffer, at: number) => void, t?: HttpTimeouts): Promise<void> {
  const body = await httpGet(url, from, to, t)
  let got = 0
  await body.each((p) => {
    if (got + p.length > to - from) throw new HttpGetError(url, `the server sent more than the ${to - from} bytes asked for`, { transient: false })
    put(p, got)
    got += p.length
  })
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
