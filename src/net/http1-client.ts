/**
 * GETs over HTTP/1.1 on keep-alive connections of our own, for receiving large bodies cheaply: node:http hands each
 * 64 KiB of a body over as a new Buffer through a stream, ~1.5 CPU-s per GB received on this project's machines;
 * here a direct connection reads into one buffer of its own, reused (net.Socket's `onread`), and a body's bytes go to
 * the caller as views of it, ~0.6 CPU-s per GB (figures in README.md, Performance); or straight into the caller's
 * memory, where it has a place for them (Http1Receiver.into). Only what a GET needs is spoken:
 * Content-Length, chunked and to-the-close bodies, no request body, no pipelining. Connections through a proxy (a
 * CONNECT tunnel, src/net/env-proxy.ts) and TLS ones are read the ordinary way, a Buffer per read.
 */
import net from 'node:net'
import tls from 'node:tls'
import { proxiedAgent, proxyFor } from './env-proxy.js'

/** How long each step may take, in milliseconds: nothing read from a server can hang. */
export interface Http1Timeouts {
  /** For the TCP connection (and TLS, and a proxy's tunnel). */
  connect: number
  /** From the request sent to the answer's head. */
  firstByte: number
  /** Between two reads of a body. */
  stall: number
}

/**
 * Why a GET did not complete; `transient` ones (a timeout, a reset) may pass on a second try, a garbled answer not.
 * `code`: the socket's error code when it had one (ECONNREFUSED, ECONNRESET, a TLS certificate's…), ETIMEDOUT for a
 * timeout; `cause`: the socket's (or proxy tunnel's) own error, for a caller that words it.
 */
export class Http1Error extends Error {
  readonly code: string | undefined
  constructor (message: string, readonly transient: boolean, o: { code?: string, cause?: unknown } = {}) {
    super(message, { cause: o.cause })
    this.code = o.code ?? (o.cause as { code?: string } | undefined)?.code
  }
}

/** How a connection is made, beyond its URL. */
export interface Http1Options {
  /** The CA certificates a TLS server's certificate must chain to, in place of Node's own (AWS_CA_BUNDLE). */
  ca?: Buffer
  /** The request's path as sent, in place of the URL's (which resolves `.` and `..` segments an S3 key may hold). */
  path?: string
}

export interface Http1Head {
  status: number
  reason: string
  /** Names in lower case; a repeated header's last value. */
  headers: Record<string, string>
}

/** What a GET's answer is handed to; after `end` or `error` nothing more comes. */
export interface Http1Receiver {
  head: (head: Http1Head) => void
  /** A piece of the body: a view valid only during the call (it is read into again). */
  piece: (piece: Buffer) => void
  end: () => void
  error: (err: Http1Error) => void
  /**
   * Where the next at most `max` bytes of a Content-Length body are to be read, when the receiver has a place for them:
   * a direct connection reads them there (the piece then handed on is a view of it: nothing to copy); undefined, or a
   * connection through a proxy or TLS, reads into the connection's own memory.
   */
  into?: (max: number) => Buffer | undefined
}

export interface Http1Get {
  /** Stops the GET (its connection is dropped); nothing more is handed on. */
  cancel: () => void
  /** Stops and goes on reading the body (for a consumer that keeps pieces). */
  pause: () => void
  resume: () => void
}

/** What one direct connection reads into. */
const READ_BUFFER_BYTES = 256 << 10
/** What a head is read in. */
const HEAD_READ_BYTES = 4096
/** Idle connections kept per origin (and proxy). */
const MAX_IDLE = 32

const CRLFCRLF = Buffer.from('\r\n\r\n')

type BodyFraming = { kind: 'length', left: number } | { kind: 'chunked' } | { kind: 'close' }

/** A connection to one origin, answering one GET at a time. */
class Connection {
  readonly key: string
  socket!: net.Socket
  /** Set for the GET in hand. */
  #on: Http1Receiver | undefined
  #bytesIn = 0
  #headText: Buffer | undefined
  #framing: BodyFraming | undefined
  #keepAlive = false
  /** Chunked framing: a size line or trailer line being gathered, what is expected next. */
  #chunkLine = ''
  #chunkState: 'size' | 'data' | 'crlf' | 'trailer' = 'size'
  #chunkLeft = 0
  #onTimeout: (() => void) | undefined
  /** What a direct connection reads into when the receiver gives no place. */
  #own: Buffer | undefined
  /** Milliseconds a body may stall, for the GET in hand. */
  #stall = 0
  /** Where the GET in hand's failure goes (the caller may try again on a new connection). */
  #failHook: ((err: Http1Error) => void) | undefined

  constructor (key: string) { this.key = key }

  /** The callback `onread` reads into and this parses from. */
  readonly read = (chunk: Buffer): void => {
    if (this.#on === undefined) { this.socket.destroy(); return } // bytes nobody asked for: not reusable
    this.#bytesIn += chunk.length
    try { this.#parse(chunk) } catch (err) {
      this.#fail(err instanceof Http1Error ? err : new Http1Error(`the server's answer cannot be read (${(err as Error).message})`, false))
    }
  }

  /** Where a direct connection's next read goes (net.Socket's `onread` asks after each read). */
  readonly nextBuffer = (): Buffer => {
    const framing = this.#framing
    const own = (this.#own ??= Buffer.allocUnsafe(READ_BUFFER_BYTES))
    // a head (when idle, the next GET's) is read small: body bytes read with it are copied to their place
    if (this.#on === undefined || framing === undefined) return own.subarray(0, HEAD_READ_BYTES)
    if (this.#on.into === undefined) return own
    return (framing.kind === 'length' && framing.left > 0 ? this.#on.into(framing.left) : undefined) ?? own
  }

  attach (socket: net.Socket): void {
    this.socket = socket
    socket.on('timeout', () => this.#onTimeout?.())
    socket.on('error', (err) => this.#closed(err))
    socket.on('close', () => {
      this.#closed()
      forget(this)
    })
  }

  /** Bytes of an answer have come since the GET was sent (a failure then is no stale keep-alive connection). */
  get answered (): boolean { return this.#bytesIn > 0 }

  send (target: string, host: string, headers: Record<string, string>, on: Http1Receiver, firstByte: number, stall: number, fail: (err: Http1Error) => void): void {
    this.#on = on
    this.#bytesIn = 0
    this.#headText = undefined
    this.#framing = undefined
    this.#stall = stall
    this.#failHook = fail
    this.socket.ref()
    this.socket.resume() // the last GET's consumer may have left it paused
    this.#timer(firstByte, `no answer within ${firstByte / 1000} s`)
    let text = `GET ${target} HTTP/1.1\r\nhost: ${host}\r\n`
    for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`
    this.socket.write(`${text}\r\n`)
  }

  #timer (ms: number, what: string): void {
    this.#onTimeout = () => { this.#fail(new Http1Error(what, true, { code: 'ETIMEDOUT' })) }
    this.socket.setTimeout(ms)
  }

  cancel (): void {
    this.#on = undefined
    this.socket.destroy()
  }

  #fail (err: Http1Error): void {
    const hook = this.#failHook
    this.#on = undefined
    this.#failHook = undefined
    this.socket.destroy()
    hook?.(err)
  }

  #closed (err?: Error): void {
    if (this.#on === undefined) return
    if (this.#framing?.kind === 'close' && err === undefined) { this.#done(false); return }
    const why = err?.message ?? (this.#framing === undefined ? 'socket hang up' : 'Premature close')
    // a close without an error is a reset too, as Node's own client words it
    this.#fail(new Http1Error(this.#framing === undefined ? `cannot reach the server (${why})` : `the connection failed mid-body (${why})`, true,
      { cause: err, code: (err as NodeJS.ErrnoException | undefined)?.code ?? 'ECONNRESET' }))
  }

  #parse (chunk: Buffer): void {
    if (this.#framing === undefined) {
      const text = this.#headText === undefined ? chunk : Buffer.concat([this.#headText, chunk])
      const end = text.indexOf(CRLFCRLF)
      if (end < 0) {
        if (text.length > 64 << 10) throw new Http1Error('the answer\'s head is over 64 KiB', false)
        this.#headText = Buffer.from(text) // the read buffer is read into again
        return
      }
      this.#headText = undefined
      const rest = text.subarray(end + 4)
      if (!this.#head(text.subarray(0, end).toString('latin1'))) {
        if (rest.length > 0) this.#parse(rest) // an interim (1xx) answer: the real one follows
        return
      }
      if (this.#on === undefined) return // cancelled on seeing the head
      const framing = this.#framing as BodyFraming | undefined // set by #head
      if (rest.length === 0 && framing?.kind === 'length' && framing.left === 0) { this.#done(true); return }
      if (rest.length === 0) return
      chunk = rest
    }
    const framing = this.#framing!
    if (framing.kind === 'length') {
      const n = Math.min(framing.left, chunk.length)
      framing.left -= n
      this.#on!.piece(n === chunk.length ? chunk : chunk.subarray(0, n))
      if (framing.left === 0 && this.#on !== undefined) this.#done(n === chunk.length)
    } else if (framing.kind === 'close') {
      this.#on!.piece(chunk)
    } else {
      this.#chunked(chunk)
    }
  }

  /** Reads a head; false for an interim answer (1xx). */
  #head (text: string): boolean {
    const lines = text.split('\r\n')
    const status = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]!)
    if (status === null) throw new Http1Error(`the server did not answer in HTTP/1.x (${JSON.stringify(lines[0]!.slice(0, 40))})`, false)
    const code = Number(status[2])
    if (code < 200) return false
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    this.#keepAlive = status[1] === '1' && !/\bclose\b/i.test(headers.connection ?? '')
    if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
      this.#framing = { kind: 'chunked' }
      this.#chunkState = 'size'
      this.#chunkLine = ''
    } else if (code === 204 || code === 304) {
      this.#framing = { kind: 'length', left: 0 }
    } else if (headers['content-length'] !== undefined) {
      const left = Number(headers['content-length'])
      if (!Number.isSafeInteger(left) || left < 0) throw new Http1Error(`the server sent a Content-Length of ${JSON.stringify(headers['content-length'])}`, false)
      this.#framing = { kind: 'length', left }
    } else {
      this.#framing = { kind: 'close' }
      this.#keepAlive = false
    }
    this.socket.setTimeout(0)
    this.#onTimeout = undefined
    this.#on!.head({ status: code, reason: status[3] ?? '', headers })
    if (this.#on !== undefined) this.#timer(this.#stall, `the body stalled for ${this.#stall / 1000} s`)
    return true
  }

  #chunked (chunk: Buffer): void {
    let at = 0
    while (at < chunk.length && this.#on !== undefined) {
      if (this.#chunkState === 'data') {
        const n = Math.min(this.#chunkLeft, chunk.length - at)
        this.#on.piece(chunk.subarray(at, at + n))
        at += n
        this.#chunkLeft -= n
        if (this.#chunkLeft === 0) { this.#chunkState = 'crlf'; this.#chunkLine = '' }
        continue
      }
      const nl = chunk.indexOf(10, at)
      this.#chunkLine += chunk.toString('latin1', at, nl < 0 ? chunk.length : nl + 1)
      if (this.#chunkLine.length > 4096) throw new Http1Error('a chunk\'s size line is over 4 KiB', false)
      if (nl < 0) return
      at = nl + 1
      const line = this.#chunkLine.trim()
      this.#chunkLine = ''
      if (this.#chunkState === 'crlf') {
        if (line !== '') throw new Http1Error('a chunk is longer than its size says', false)
        this.#chunkState = 'size'
      } else if (this.#chunkState === 'size') {
        const size = /^[0-9a-f]+/i.exec(line)
        if (size === null) throw new Http1Error(`a chunk's size line reads ${JSON.stringify(line.slice(0, 40))}`, false)
        this.#chunkLeft = parseInt(size[0], 16)
        this.#chunkState = this.#chunkLeft === 0 ? 'trailer' : 'data'
      } else if (line === '') {
        this.#done(at === chunk.length)
        return
      }
    }
  }

  /** The answer is whole: the connection goes back to the pool when it may carry another GET. */
  #done (nothingAfter: boolean): void {
    const on = this.#on!
    this.#on = undefined
    this.#failHook = undefined
    this.socket.setTimeout(0)
    this.#onTimeout = undefined
    if (this.#keepAlive && nothingAfter && !this.socket.destroyed) release(this)
    else this.socket.destroy()
    on.end()
  }
}

const idle = new Map<string, Connection[]>()

function release (c: Connection): void {
  const list = idle.get(c.key) ?? []
  if (list.length >= MAX_IDLE) { c.socket.destroy(); return }
  c.socket.unref()
  list.push(c)
  idle.set(c.key, list)
}

/** A closed connection leaves the pool. */
function forget (c: Connection): void {
  const list = idle.get(c.key)
  const i = list?.indexOf(c) ?? -1
  if (i >= 0) list!.splice(i, 1)
}

function takeIdle (key: string): Connection | undefined {
  const list = idle.get(key)
  for (let c = list?.pop(); c !== undefined; c = list?.pop()) {
    if (!c.socket.destroyed) return c
  }
  return undefined
}

/**
 * Opens a connection to `url`'s origin, through the proxy the environment names for it (none for loopback), over TLS
 * for https (Node's CAs plus NODE_EXTRA_CA_CERTS, or `ca` in their place): connected, or an error. A direct plain one
 * reads into a buffer of its own.
 */
function open (url: URL, key: string, proxy: URL | undefined, ca: Buffer | undefined, ready: (err?: Error) => void): Connection {
  const c = new Connection(key)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
  const servername = net.isIP(host) === 0 ? host : undefined
  if (proxy !== undefined) {
    // hpagent's agents open the CONNECT tunnel (and TLS in it), as for the S3 client
    const agent = proxiedAgent(url, { keepAlive: true, ca }) as unknown as { createConnection: (o: object, cb: (err: Error | null, s: net.Socket) => void) => void }
    const placeholder = new net.Socket()
    c.attach(placeholder)
    agent.createConnection({ host, port, servername, ca }, (err, socket) => {
      if (c.socket !== placeholder || placeholder.destroyed) { socket?.destroy(); return } // given up meanwhile
      if (err !== null) { ready(err); return }
      placeholder.removeAllListeners()
      c.attach(socket)
      socket.on('data', c.read)
      ready()
    })
    return c
  }
  if (url.protocol === 'https:') {
    const socket = tls.connect({ host, port, servername, ca, ALPNProtocols: ['http/1.1'] })
    c.attach(socket)
    socket.on('data', c.read)
    socket.once('secureConnect', () => ready())
    socket.once('error', ready)
    return c
  }
  const socket = net.connect({ host, port, noDelay: true, onread: { buffer: c.nextBuffer, callback: (n: number, into: Uint8Array) => { c.read(Buffer.from(into.buffer, into.byteOffset, n)); return true } } })
  c.attach(socket)
  socket.once('connect', () => ready())
  socket.once('error', ready)
  return c
}

/** A number for each CA bundle in use, so that connections trusting different CAs are kept apart. */
const caIds = new WeakMap<Buffer, number>()
let caCount = 0

/**
 * GET of `url` with `headers` (names in lower case; Host is added), the answer handed to `on`. A kept connection that
 * turns out closed before answering is replaced by a new one once. Every step is bounded by `t`.
 */
export function http1Get (url: URL, headers: Record<string, string>, t: Http1Timeouts, on: Http1Receiver, o: Http1Options = {}): Http1Get {
  const proxy = proxyFor(url)
  const { ca } = o
  if (ca !== undefined && !caIds.has(ca)) caIds.set(ca, ++caCount)
  const key = `${url.protocol}//${url.host} ${proxy?.href ?? ''} ${ca === undefined ? '' : caIds.get(ca)!}`
  const target = o.path ?? `${url.pathname}${url.search}`
  let current: Connection | undefined
  let over = false
  const receiver: Http1Receiver = {
    head: (h) => { if (!over) on.head(h) },
    piece: (p) => { if (!over) on.piece(p) },
    end: () => { if (!over) { over = true; on.end() } },
    error: (err) => { if (!over) { over = true; current?.cancel(); on.error(err) } },
    into: on.into === undefined ? undefined : (max) => over ? undefined : on.into!(max),
  }
  const start = (reuse: boolean): void => {
    const kept = reuse ? takeIdle(key) : undefined
    if (kept !== undefined) {
      current = kept
      kept.send(target, url.host, headers, receiver, t.firstByte, t.stall, (err) => {
        // a kept connection the server closed meanwhile: once more on a new one
        if (!kept.answered && err.transient && !over) start(false)
        else receiver.error(err)
      })
      return
    }
    let connected = false
    const timer = setTimeout(() => { receiver.error(new Http1Error(`no connection within ${t.connect / 1000} s`, true, { code: 'ETIMEDOUT' })) }, t.connect)
    const c = open(url, key, proxy, ca, (err) => {
      if (connected) return
      connected = true
      clearTimeout(timer)
      if (over) { c.cancel(); return }
      if (err !== undefined) { receiver.error(new Http1Error(`cannot reach the server (${err.message})`, true, { cause: err })); return }
      c.send(target, url.host, headers, receiver, t.firstByte, t.stall, receiver.error)
    })
    current = c
  }
  start(true)
  return {
    // once over, the connection may be carrying another GET
    cancel: () => { if (!over) { over = true; current?.cancel() } },
    pause: () => { if (!over) current?.socket.pause() },
    resume: () => { if (!over) current?.socket.resume() },
  }
}
