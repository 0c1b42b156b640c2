import http from 'node:http'
import zlib from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes } from '../helpers.js'
import { startFaultProxy, type FaultProxy } from './fault-proxy.js'
import { startS3, type S3Server } from './s3.js'

interface Got { status?: number, headers: http.IncomingHttpHeaders, body: Buffer, error?: string, ms: number }

/** One GET as a plain client sees it: what arrived before the answer ended, or broke, or went quiet for 500 ms. */
async function get (url: string, headers: Record<string, string> = {}): Promise<Got> {
  const started = Date.now()
  return await new Promise((resolve) => {
    const chunks: Buffer[] = []
    let got: Omit<Got, 'body' | 'ms'> = { headers: {} }
    const done = (error?: string): void => resolve({ ...got, body: Buffer.concat(chunks), error, ms: Date.now() - started })
    const req = http.get(url, { headers, agent: false }, (res) => {
      got = { status: res.statusCode, headers: res.headers }
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => done())
      res.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message))
    })
    req.setTimeout(500, () => { req.destroy(); done('idle') })
    req.on('error', (e: NodeJS.ErrnoException) => { if (got.status === undefined) done(e.code ?? e.message) })
  })
}

describe('the fault proxy breaks what it is told to, and records what it saw', () => {
  let s3: S3Server
  let proxy: FaultProxy
  const data = bytes(200_000, 3)
  let object: string
  beforeAll(async () => {
    s3 = await startS3()
    await s3.bucket('b')
    await s3.put('b', 'data', data)
    proxy = await startFaultProxy(s3.endpoint)
    object = `${proxy.url}/b/data`
  })
  afterAll(async () => {
    await proxy?.stop()
    await s3?.stop()
  })

  it('passes requests through unchanged when no rule matches', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'PUT' }, fault: { kind: 'status', status: 500 } })
    const whole = await get(object)
    expect(whole.status).toBe(200)
    expect(whole.body.equals(data)).toBe(true)
    const part = await get(object, { range: 'bytes=10-19' })
    expect([part.status, part.headers['content-range']]).toEqual([206, `bytes 10-19/${data.length}`])
    expect(part.body.equals(data.subarray(10, 20))).toBe(true)
    expect(proxy.requests.map(({ arrived, over, headers, ...r }) => r)).toEqual([
      { method: 'GET', path: '/b/data', range: undefined, status: 200 },
      { method: 'GET', path: '/b/data', range: 'bytes=10-19', status: 206 },
    ])
    // each request's headers as the client sent them
    expect(proxy.requests[1]!.headers.range).toBe('bytes=10-19')
    // one after the other: each answer was over before the next request arrived
    expect(proxy.requests.map((r) => [r.arrived, r.over])).toEqual([[1, 2], [3, 4]])
  })

  it('answers a status N times, then passes', async () => {
    proxy.clear()
    proxy.fault({ match: { path: '/b/' }, times: 2, fault: { kind: 'status', status: 503, headers: { 'retry-after': '1' }, body: 'SlowDown' } })
    const statuses = []
    for (let i = 0; i < 3; i++) {
      const r = await get(object)
      statuses.push([r.status, r.headers['retry-after'], r.body.length])
    }
    expect(statuses).toEqual([[503, '1', 8], [503, '1', 8], [200, undefined, data.length]])
    expect(proxy.requests.map((r) => r.status)).toEqual([503, 503, 200])
  })

  it('delays the answer, stalls it, or resets it before or during the body', async () => {
    proxy.clear()
    proxy.fault({ times: 1, fault: { kind: 'latency', ms: 300 } })
    const slow = await get(object)
    expect(slow.ms).toBeGreaterThanOrEqual(290)
    expect(slow.body.equals(data)).toBe(true)

    proxy.fault({ times: 1, fault: { kind: 'stall', afterBytes: 5000 } })
    const stalled = await get(object)
    expect([stalled.status, stalled.error, stalled.body.length]).toEqual([200, 'idle', 5000])

    proxy.fault({ times: 1, fault: { kind: 'reset' } })
    expect((await get(object)).error).toBe('ECONNRESET')

    proxy.fault({ times: 1, fault: { kind: 'reset', afterBytes: 5000 } })
    const cut = await get(object)
    expect(cut.status).toBe(200)
    expect(cut.error).toMatch(/ECONNRESET|aborted/)
    expect(cut.body.length).toBeLessThanOrEqual(5000)
    expect(proxy.requests.map((r) => r.status)).toEqual([200, 'stalled', 'reset', 'reset'])
  })

  it('flips a byte, ignores Range, or gzips the body', async () => {
    proxy.clear()
    proxy.fault({ times: 1, fault: { kind: 'flip', at: 150_000 } })
    const flipped = await get(object)
    const expected = Buffer.from(data)
    expected[150_000] ^= 0xff
    expect(flipped.body.equals(expected)).toBe(true)

    proxy.fault({ match: { range: true }, times: 1, fault: { kind: 'ignore-range' } })
    const whole = await get(object, { range: 'bytes=0-9' })
    expect([whole.status, whole.body.length]).toEqual([200, data.length])

    proxy.fault({ times: 1, fault: { kind: 'gzip' } })
    const gz = await get(object)
    expect(gz.headers['content-encoding']).toBe('gzip')
    expect(zlib.gunzipSync(gz.body).equals(data)).toBe(true)
  })
})
