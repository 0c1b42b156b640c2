/**
 * A reverse proxy for tests, on 127.0.0.1 only, in front of any local HTTP server (the S3 server, nginx, packer
 * serve), that breaks chosen requests the ways networks and stores do, and records every request it saw so a test
 * can assert retries happened. Requests pass unchanged (Host included, so signatures stay valid) unless a rule
 * matches; the first matching rule with uses left applies.
 */
import http from 'node:http'
import zlib from 'node:zlib'
import { listenOnLoopback } from './loopback.js'

export type Fault =
  /** Waits this long before passing the request on: latency before the first byte. */
  | { kind: 'latency', ms: number }
  /** Holds the request until the promise settles, then passes it on: a client kept busy until the test lets it go. */
  | { kind: 'hold', until: Promise<unknown> }
  /** Sends the answer's head and this many bytes of its body, then nothing, holding the connection open. */
  | { kind: 'stall', afterBytes: number }
  /** Resets the connection (TCP RST): before any answer, or after this many bytes of the body. */
  | { kind: 'reset', afterBytes?: number }
  /** Flips every bit of the body's byte at this offset (of the body as sent, ranged or not). */
  | { kind: 'flip', at: number }
  /** Passes the request on without its Range: the server answers 200 with the whole body. */
  | { kind: 'ignore-range' }
  /** Gzips the body and says so (Content-Encoding: gzip), as a server compressing on the fly. */
  | { kind: 'gzip' }
  /** Answers this status itself (e.g. 503 with Retry-After, 403), with these headers and body. */
  | { kind: 'status', status: number, headers?: Record<string, string>, body?: string }

export interface FaultRule {
  /** Which requests: by method, by path (with query; a string is a prefix), by Range header (present, or matching). */
  match?: { method?: string, path?: string | RegExp, range?: boolean | RegExp }
  /** How many matching requests it breaks (every one by default). */
  times?: number
  fault: Fault
}

export interface SeenRequest {
  method: string
  path: string
  range?: string
  /** The request's headers as the client sent them (names in lower case). */
  headers: http.IncomingHttpHeaders
  /** The status the client got, or what the proxy did instead of answering whole. */
  status?: number | 'reset' | 'stalled'
  /**
   * When it arrived and when its answer was over (sent, cut or dropped), on one counter of such events: which
   * requests overlapped, without timing anything.
   */
  arrived: number
  over?: number
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT, to give clients in place of the server's address. */
  readonly url: string
  /** Every request seen, in arrival order. */
  readonly requests: SeenRequest[]
  /** Adds a rule, after those already there. */
  fault (rule: FaultRule): void
  /** Drops every rule and the record of requests. */
  clear (): void
  stop (): Promise<void>
}

export async function startFaultProxy (upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream)
  const rules: Array<FaultRule & { left: number }> = []
  const requests: SeenRequest[] = []
  let events = 0

  const server = http.createServer((req, res) => {
    const seen: SeenRequest = { method: req.method ?? '', path: req.url ?? '', range: req.headers.range, headers: { ...req.headers }, arrived: ++events }
    requests.push(seen)
    res.on('close', () => { seen.over = ++events })
    const rule = rules.find((r) => r.left > 0 && matches(r, seen))
    if (rule !== undefined) rule.left--
    const fault = rule?.fault
    if (fault?.kind === 'status') {
      // read the request whole first, so the client is not cut off mid-upload
      req.resume()
      req.on('end', () => {
        const body = Buffer.from(fault.body ?? '')
        res.writeHead(fault.status, { ...fault.headers, 'content-length': body.length })
        res.end(body)
        seen.status = fault.status
      })
      return
    }
    if (fault?.kind === 'reset' && fault.afterBytes === undefined) {
      seen.status = 'reset'
      req.socket.resetAndDestroy()
      return
    }
    const headers = { ...req.headers }
    delete headers.expect // this proxy reads the body at once; the server need not invite it
    if (fault?.kind === 'ignore-range') {
      delete headers.range
      delete headers['if-range']
    }
    const forward = (): void => {
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (upRes) => {
        seen.status = upRes.statusCode
        answer(upRes, res, fault, seen)
      })
      up.on('error', () => { seen.status = 'reset'; req.socket.destroy() })
      res.on('close', () => {
        up.destroy()
        // the client gave up on a stalled request, whether or not the server's first bytes had come (a loaded server
        // may answer after the client's timeout)
        if (fault?.kind === 'stall' && !res.writableFinished) seen.status = 'stalled'
      })
      req.pipe(up)
    }
    if (fault?.kind === 'latency') setTimeout(forward, fault.ms)
    else if (fault?.kind === 'hold') void fault.until.then(forward, forward)
    else forward()
  })

  const { port, close } = await listenOnLoopback(server)
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    fault: (rule) => { rules.push({ ...rule, left: rule.times ?? Infinity }) },
    clear: () => { rules.length = 0; requests.length = 0 },
    stop: close,
  }
}

function matches (rule: FaultRule, seen: SeenRequest): boolean {
  const { method, path, range } = rule.match ?? {}
  if (method !== undefined && method !== seen.method) return false
  if (typeof path === 'string' && !seen.path.startsWith(path)) return false
  if (path instanceof RegExp && !path.test(seen.path)) return false
  if (range === true && seen.range === undefined) return false
  if (range === false && seen.range !== undefined) return false
  if (range instanceof RegExp && !range.test(seen.range ?? '')) return false
  return true
}

/** Sends the server's answer on, broken as the fault says. */
function answer (upRes: http.IncomingMessage, res: http.ServerResponse, fault: Fault | undefined, seen: SeenRequest): void {
  const headers = { ...upRes.headers }
  if (fault?.kind === 'gzip') {
    delete headers['content-length']
    headers['content-encoding'] = 'gzip'
    res.writeHead(upRes.statusCode ?? 502, headers)
    upRes.pipe(zlib.createGzip()).pipe(res)
    return
  }
  res.writeHead(upRes.statusCode ?? 502, headers)
  if (fault?.kind !== 'stall' && fault?.kind !== 'reset' && fault?.kind !== 'flip') {
    upRes.pipe(res)
    return
  }
  let sent = 0
  upRes.on('data', (chunk: Buffer) => {
    const start = sent
    sent += chunk.length
    if (fault.kind === 'flip') {
      if (fault.at >= start && fault.at < sent) chunk[fault.at - start] ^= 0xff
      res.write(chunk)
      return
    }
    const cut = fault.afterBytes ?? 0
    if (sent <= cut) { res.write(chunk); return }
    upRes.destroy()
    res.write(chunk.subarray(0, cut - start), () => {
      seen.status = fault.kind === 'stall' ? 'stalled' : 'reset'
      if (fault.kind === 'reset') res.socket?.resetAndDestroy()
    })
  })
  upRes.on('end', () => res.end())
}
