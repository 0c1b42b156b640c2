/**
 * A forward proxy for tests, on 127.0.0.1, that stands in for the network between a client and a remote HTTPS store:
 * it records each CONNECT target asked of it and, whatever the target, answers as that host over TLS with the given
 * certificate, passing the decrypted requests to a local HTTP server. A client can so be pointed at a remote-looking
 * endpoint (https://s3.example.test) while no name is looked up and no byte leaves this machine. Requests sent to it
 * as to a plain HTTP proxy are recorded and refused (502). The same TLS front also listens on a port of its own, for
 * clients that reach it directly (https://localhost:PORT).
 */
import http from 'node:http'
import net from 'node:net'
import tls from 'node:tls'
import { listenOnLoopback } from './loopback.js'

export interface TlsTunnelProxy {
  /** http://127.0.0.1:PORT, for HTTPS_PROXY */
  readonly url: string
  /** Every request seen: "CONNECT host:port", or "GET http://…" for a plain proxy request. */
  readonly seen: string[]
  /** https://localhost:PORT: the TLS front without the proxy. */
  readonly direct: string
  stop (): Promise<void>
}

export async function startTlsTunnelProxy (opts: { key: string | Buffer, cert: string | Buffer, upstream: string }): Promise<TlsTunnelProxy> {
  const upstream = new URL(opts.upstream)
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`)
    res.writeHead(502).end()
  })
  /** Joins a client's decrypted stream to the upstream server. */
  const relay = (secure: tls.TLSSocket): void => {
    const up = net.connect(Number(upstream.port), upstream.hostname)
    const close = (): void => { secure.destroy(); up.destroy() }
    secure.on('error', close).on('close', close)
    up.on('error', close).on('close', close)
    secure.pipe(up).pipe(secure)
  }
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url ?? ''}`)
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    relay(new tls.TLSSocket(socket, { isServer: true, key: opts.key, cert: opts.cert }))
  })
  const front = tls.createServer({ key: opts.key, cert: opts.cert }, relay)
  const [proxy, direct] = await Promise.all([listenOnLoopback(server), listenOnLoopback(front)])
  return {
    url: `http://127.0.0.1:${proxy.port}`,
    seen,
    direct: `https://localhost:${direct.port}`,
    stop: async () => { await Promise.all([proxy.close(), direct.close()]) },
  }
}
