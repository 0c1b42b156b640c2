import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { PackerError } from '../errors.js'
import { CarSet } from '../read/car-set.js'
import { SetBlocks } from './dag-blocks.js'
import { sendText } from './file-response.js'
import { serveGateway } from './gateway.js'
import { PieceRoutes } from './piece-routes.js'
import { ServedFiles } from './served-files.js'

export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 7777
export const DEFAULT_MAX_REQUESTS = 64
export const DEFAULT_TIMEOUT_MS = 60_000

export interface ServeOptions {
  host?: string
  /** 0: any free port (the result says which). */
  port?: number
  /** Where the CARs are, when not beside manifest.json. */
  carDir?: string
  /** Requests answered at once; one more is answered 429. */
  maxRequests?: number
  /** A connection that sends or takes no byte for this long is closed; a request's headers must arrive within it. */
  timeoutMs?: number
  /** Called once per request when its response ends (or its connection does). */
  onRequest?: (entry: AccessLogEntry) => void
}

/** One line of the access log. */
export interface AccessLogEntry {
  time: string
  remote: string
  method: string
  url: string
  status: number
  /** Bytes sent on the connection for this response, headers included. */
  bytes: number
  ms: number
  /** False when the connection ended before the response did. */
  complete: boolean
  /** Why the response failed (500, or cut short), when it did. */
  error?: string
}

export interface SetServer {
  url: string
  host: string
  port: number
  setId: string
  /** The set's CARs (pieces). */
  cars: number
  /** Stops listening, ends the connections still open and closes the set. */
  close: () => Promise<void>
}

/**
 * `packer serve`: one HTTP server over a set, reading only through its manifest and index. URL layout:
 * `/piece/{pieceCid}` and `/piece?id={pieceCid}` (PieceRoutes), `/ipfs/{cid}[/path]` (the trustless gateway), and the
 * set's own files by name (ServedFiles); anything else is 404, any method but GET and HEAD 405. At most `maxRequests`
 * are answered at once (429 past it), and an idle connection is closed after `timeoutMs`.
 */
export async function serveSet (dir: string, opts: ServeOptions = {}): Promise<SetServer> {
  const set = await CarSet.open(dir, { carDir: opts.carDir, skipTable: true })
  const files = new ServedFiles(set)
  const pieces = new PieceRoutes(files, set.manifest.cars)
  const blocks = new SetBlocks(set.blocks)
  const maxRequests = opts.maxRequests ?? DEFAULT_MAX_REQUESTS
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  let active = 0

  const server = http.createServer((req, res) => {
    const started = Date.now()
    const sentBefore = req.socket.bytesWritten
    const remote = req.socket.remoteAddress ?? '' // a destroyed socket no longer says
    let error: string | undefined
    res.once('close', () => {
      opts.onRequest?.({
        time: new Date(started).toISOString(),
        remote,
        method: req.method ?? '',
        url: req.url ?? '',
        status: res.statusCode,
        bytes: req.socket.bytesWritten - sentBefore,
        ms: Date.now() - started,
        complete: res.writableFinished,
        ...error !== undefined && { error },
      })
    })
    if (active >= maxRequests) {
      sendText(req, res, 429, `more than ${maxRequests} requests at once; retry later`, { 'Retry-After': '1', Connection: 'close' })
      return
    }
    active++
    res.once('close', () => { active-- })
    route(req, res).catch((err: unknown) => {
      error = (err as Error)?.message ?? String(err)
      if (res.headersSent) { res.destroy(); return }
      // a PackerError says what is wrong with the set; anything else may name the server's own paths: the log has it
      sendText(req, res, 500, err instanceof PackerError ? err.message : 'internal error')
    })
  })

  async function route (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end()
      return
    }
    // the request target as sent (origin form); never resolved against a base, so `//x` or `/a/../b` stay what they are
    const target = req.url ?? ''
    const q = target.indexOf('?')
    const pathname = q < 0 ? target : target.slice(0, q)
    const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1))
    if (pathname === '/piece') {
      const id = query.get('id')
      if (id === null) sendText(req, res, 404, 'give the piece CID: /piece?id={pieceCid}')
      else await pieces.serve(req, res, id)
    } else if (pathname.startsWith('/piece/')) {
      await pieces.serve(req, res, decodeComponent(pathname.slice('/piece/'.length)))
    } else if (pathname.startsWith('/ipfs/')) {
      await serveGateway(req, res, blocks, pathname.slice('/ipfs/'.length), query)
    } else if (/^\/[^/]+$/.test(pathname)) {
      await files.serve(req, res, decodeComponent(pathname.slice(1)))
    } else {
      sendText(req, res, 404, 'not found')
    }
  }

  server.headersTimeout = timeoutMs
  server.requestTimeout = timeoutMs
  // an idle socket (a client that stopped reading, or never sends) is destroyed: there is no 'timeout' listener
  server.timeout = timeoutMs
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port ?? DEFAULT_PORT, opts.host ?? DEFAULT_HOST, () => { server.off('error', reject); resolve() })
    })
  } catch (err) {
    await set.close()
    const where = `${opts.host ?? DEFAULT_HOST}:${opts.port ?? DEFAULT_PORT}`
    throw new PackerError('USAGE', `cannot listen on ${where}: ${(err as Error).message}`, { subject: where, cause: err })
  }
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${host}:${address.port}`,
    host: address.address,
    port: address.port,
    setId: set.setId,
    cars: set.manifest.cars.length,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
      await set.close()
    },
  }
}

/** A percent-decoded path component; one that does not decode is left as it is (and so names nothing). */
function decodeComponent (s: string): string {
  try { return decodeURIComponent(s) } catch { return s }
}
