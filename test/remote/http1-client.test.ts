/**
 * The HTTP/1.1 client remote reads receive with (src/net/http1-client.ts), through httpGet: against nginx, exactly the
 * bytes of every range asked, on kept connections; against small servers of the test's own, the framings a GET may
 * meet (chunked with trailers, to the close, after an interim 100), a kept connection the server closed meanwhile, a
 * server that never answers and a body that stalls (errors naming the URL, not hangs); over TLS, through an HTTPS_PROXY
 * tunnel and directly, trusting a private CA given in NODE_EXTRA_CA_CERTS, loopback never proxied.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { startNginx, type NginxServer } from '../servers/nginx.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { startTlsTunnelProxy, type TlsTunnelProxy } from '../servers/tls-tunnel-proxy.js'
import { listenOnLoopback } from '../servers/loopback.js'
import { httpGet, httpGetBytes, type HttpTimeouts } from '../../src/remote/http-get.js'

const FILE_BYTES = (8 << 20) + 12345
const short: HttpTimeouts = { connect: 5000, firstByte: 300, stall: 300 }

let root: string
let file: Buffer
let nginx: NginxServer
let proxy: FaultProxy

beforeAll(async () => {
  root = tmpDir()
  file = bytes(FILE_BYTES, 3)
  fs.writeFileSync(path.join(root, 'f.bin'), file)
  nginx = await startNginx({ root })
  proxy = await startFaultProxy(nginx.url)
}, 60_000)

afterAll(async () => {
  await proxy?.stop()
  await nginx?.stop()
})

/** Every piece of a body, gathered. */
async function whole (url: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of (await httpGet(url, 0, undefined, short)).pieces()) parts.push(p)
  return Buffer.concat(parts)
}

/** A server on 127.0.0.1 that answers each connection's requests with `answer(path, n)` (n: the request's number on it). */
async function rawServer (answer: (socket: net.Socket, path: string, n: number) => void): Promise<{ url: string, connections: () => number, close: () => Promise<void> }> {
  let connections = 0
  const server = net.createServer((socket) => {
    connections++
    let text = ''
    let n = 0
    socket.on('data', (d) => {
      text += d.toString('latin1')
      for (let end = text.indexOf('\r\n\r\n'); end >= 0; end = text.indexOf('\r\n\r\n')) {
        const target = text.split(' ')[1]!
        text = text.slice(end + 4)
        answer(socket, target, n++)
      }
    })
    socket.on('error', () => {})
  })
  const { port, close } = await listenOnLoopback(server)
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, close }
}

describe('ranges from nginx', () => {
  it('ranges of 1 B to 3 MiB anywhere in the file, in parallel and one after the other on kept connections: exactly those bytes', async () => {
    const ranges: Array<[number, number]> = [[0, 1], [1, 4097], [FILE_BYTES - 1, FILE_BYTES], [12345, 12345 + (3 << 20)], [5 << 20, FILE_BYTES], [0, 256 << 10]]
    const url = `${nginx.url}/f.bin`
    for (let round = 0; round < 2; round++) {
      const got = round === 0
        ? await Promise.all(ranges.map(async ([from, to]) => await httpGetBytes(url, from, to)))
        : await ranges.reduce<Promise<Buffer[]>>(async (all, [from, to]) => [...await all, await httpGetBytes(url, from, to)], Promise.resolve([]))
      got.forEach((g, i) => expect(g.equals(file.subarray(ranges[i]![0], ranges[i]![1]))).toBe(true))
    }
    const asked = (await nginx.requests(2 * ranges.length)).filter((r) => r.path === '/f.bin').map((r) => [r.range, r.status, r.bytes])
    const expected = ranges.map(([from, to]) => [`bytes=${from}-${to - 1}`, 206, to - from])
    expect(asked.slice(-2 * ranges.length).sort()).toEqual([...expected, ...expected].sort())
  })

  it('a whole file as pieces of their own, and its size', async () => {
    const body = await httpGet(`${nginx.url}/f.bin`, 0, undefined)
    expect(body.total).toBe(FILE_BYTES)
    const parts: Buffer[] = []
    for await (const p of body.pieces()) parts.push(p)
    expect(Buffer.concat(parts).equals(file)).toBe(true)
    // pieces kept are not overwritten by later reads
    expect(new Set(parts.map((p) => p.buffer)).size).toBe(parts.length)
  })

  it('a whole file as pieces whose memory is reused once the next is asked for: right when copied at once, in a few buffers', async () => {
    const body = await httpGet(`${nginx.url}/f.bin`, 0, undefined)
    const copies: Buffer[] = []
    const memory = new Set<ArrayBufferLike>()
    for await (const p of body.pieces({ reuse: true })) {
      copies.push(Buffer.from(p))
      memory.add(p.buffer)
      await new Promise((resolve) => setImmediate(resolve)) // later pieces arrive meanwhile: they must not land in p
      expect(p.equals(copies[copies.length - 1]!)).toBe(true)
    }
    expect(Buffer.concat(copies).equals(file)).toBe(true)
    expect(copies.length).toBeGreaterThan(8)
    expect(memory.size).toBeLessThan(copies.length)
  })
})

describe('answers as servers frame them', () => {
  it('a chunked body (with an extension and a trailer), a body to the close, an answer after 100 Continue: read whole', async () => {
    const server = await rawServer((socket, target) => {
      if (target === '/chunked') {
        // a byte at a time: every boundary of the framing falls between two reads somewhere
        const text = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nx-trailer: t\r\n\r\n'
        void (async () => {
          for (const c of text) {
            socket.write(c)
            await new Promise((resolve) => setImmediate(resolve))
          }
        })()
      } else if (target === '/close') {
        socket.end('HTTP/1.1 200 OK\r\n\r\nuntil the close')
      } else {
        socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
      }
    })
    try {
      expect((await whole(`${server.url}/chunked`)).toString()).toBe('hello, chunked!')
      expect((await whole(`${server.url}/close`)).toString()).toBe('until the close')
      expect((await whole(`${server.url}/continue`)).toString()).toBe('ok')
    } finally { await server.close() }
  })

  it('a kept connection the server closed when asked again: the GET goes on a new one', async () => {
    const server = await rawServer((socket, _target, n) => {
      if (n === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst')
      else socket.destroy()
    })
    try {
      expect((await whole(`${server.url}/a`)).toString()).toBe('first')
      expect((await whole(`${server.url}/b`)).toString()).toBe('first')
      expect(server.connections()).toBe(2)
    } finally { await server.close() }
  })

  it('a garbled head and a server that never answers: errors naming the URL', async () => {
    const server = await rawServer((socket, target) => {
      if (target === '/garbled') socket.write('SMTP ready\r\n\r\n')
    })
    try {
      await expect(httpGet(`${server.url}/garbled`, 0, 10, short)).rejects.toThrow(`GET ${server.url}/garbled: the server did not answer in HTTP/1.x ("SMTP ready")`)
      await expect(httpGet(`${server.url}/silent`, 0, 10, short)).rejects.toThrow(`GET ${server.url}/silent: no answer within 0.3 s`)
    } finally { await server.close() }
  })

  it('a body that stalls mid-way ends in an error, not a hang', async () => {
    proxy.clear()
    proxy.fault({ fault: { kind: 'stall', afterBytes: 100_000 } })
    try {
      await expect(httpGetBytes(`${proxy.url}/f.bin`, 0, 1 << 20, short)).rejects.toThrow(`GET ${proxy.url}/f.bin: the body stalled for 0.3 s`)
    } finally { proxy.clear() }
  })
})

describe('TLS', () => {
  let tunnel: TlsTunnelProxy
  let ca: string
  const noEnv = { AWS_CA_BUNDLE: '', NODE_EXTRA_CA_CERTS: '', HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '', ALL_PROXY: '', all_proxy: '', NO_PROXY: '', no_proxy: '' }

  beforeAll(async () => {
    const dir = tmpDir()
    execFileSync('openssl', ['req', '-x509', '-nodes', '-days', '30', '-newkey', 'rsa:2048', '-keyout', 'key.pem', '-out', 'cert.pem',
      '-subj', '/CN=packer test', '-addext', 'subjectAltName=DNS:localhost,DNS:set.example.test'], { cwd: dir, stdio: 'ignore' })
    ca = path.join(dir, 'cert.pem')
    const set = path.join(root, 'set')
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.txt'), 'over TLS\n')
    await packerOk(['pack', src, '-o', set, '--no-encrypt', '-q'], { env: { PACKER_STATE_DIR: tmpDir() } })
    tunnel = await startTlsTunnelProxy({ key: fs.readFileSync(path.join(dir, 'key.pem')), cert: fs.readFileSync(ca), upstream: nginx.url })
  }, 60_000)
  afterAll(async () => { await tunnel?.stop() })

  it('through HTTPS_PROXY, trusting NODE_EXTRA_CA_CERTS: the set is read, by a CONNECT to its host', async () => {
    const r = await packerOk(['ls', 'https://set.example.test/set/'], { env: { ...noEnv, HTTPS_PROXY: tunnel.url, NODE_EXTRA_CA_CERTS: ca } })
    expect(r.stdout).toContain('a.txt')
    expect(tunnel.seen).toContain('CONNECT set.example.test:443')
  })

  it('https on loopback: reached directly whatever the proxy variables say', async () => {
    const before = tunnel.seen.length
    const r = await packerOk(['ls', `${tunnel.direct}/set/`], { env: { ...noEnv, HTTPS_PROXY: tunnel.url, https_proxy: tunnel.url, ALL_PROXY: tunnel.url, NODE_EXTRA_CA_CERTS: ca } })
    expect(r.stdout).toContain('a.txt')
    expect(tunnel.seen.length).toBe(before)
  })

  it('a certificate nothing trusts: one line naming the URL and the certificate', async () => {
    const r = await packer(['ls', `${tunnel.direct}/set/`], { env: noEnv })
    expect(r.code).not.toBe(0)
    const line = oneLine(r.stderr)
    expect(line).toContain(`${tunnel.direct}/set/`)
    expect(line).toMatch(/certificate/)
  })
})
