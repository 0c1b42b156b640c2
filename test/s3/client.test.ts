import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand,
  UploadPartCommand, paginateListObjectsV2,
} from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { s3Client, type S3Options, type S3Store } from '../../src/s3/client.js'
import { parseS3Url } from '../../src/s3/s3-url.js'
import { proxyFor } from '../../src/net/env-proxy.js'
import { readRange } from '../../src/s3/read-range.js'
import { s3Error } from '../../src/s3/s3-error.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { listenOnLoopback } from '../servers/loopback.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { startTlsTunnelProxy, type TlsTunnelProxy } from '../servers/tls-tunnel-proxy.js'
import { ROOT, bytes, run, tmpDir } from '../helpers.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

// A proxy that nothing answers, and a CA bundle (Node's own roots, so it exists on any machine): loopback must not go
// through the one, and the other must change nothing
const CA_BUNDLE = path.join(tmpDir(), 'ca-bundle.pem')
fs.writeFileSync(CA_BUNDLE, tls.rootCertificates.join('\n'))
const PROXY_ENV = { ...NO_PROXY_ENV, HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', ALL_PROXY: 'http://127.0.0.1:9', NO_PROXY: '', AWS_CA_BUNDLE: CA_BUNDLE }

async function bodyOf (res: { Body?: unknown }): Promise<Buffer> {
  return Buffer.from(await (res.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray())
}

/** The PackerError an S3 call fails with, as s3Error words it. */
async function failure (store: S3Store, where: { bucket: string, key?: string }, call: () => Promise<unknown>): Promise<PackerError> {
  try {
    await call()
  } catch (err) {
    return s3Error(store, err, where)
  }
  throw new Error('expected the call to fail')
}

async function closedPort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

let s3: S3Server
let restoreEnv: () => void
const LISTED = Array.from({ length: 2500 }, (_, i) => `many/${String(i).padStart(5, '0')}`)

beforeAll(async () => {
  restoreEnv = setEnv({ ...TEST_ENV, ...NO_PROXY_ENV })
  s3 = await startS3()
  await s3.bucket('listing')
  const keys = [...LISTED, 'many/a-b', 'many/sub/x', 'many/sub/y', 'many/zz/q', 'other']
  for (let i = 0; i < keys.length; i += 100) await Promise.all(keys.slice(i, i + 100).map(async (k) => await s3.put('listing', k, k)))
})

afterAll(async () => {
  await s3?.stop()
  restoreEnv?.()
})

describe.each([
  { name: 'no proxy or CA settings', env: NO_PROXY_ENV },
  { name: 'HTTPS_PROXY, HTTP_PROXY and ALL_PROXY set, NO_PROXY empty, AWS_CA_BUNDLE set', env: PROXY_ENV },
])('S3 operations through s3Client, with $name', ({ env }) => {
  let store: S3Store
  let restore: () => void
  let bucket: string
  beforeAll(async () => {
    restore = setEnv(env)
    store = await s3Client({ endpoint: s3.endpoint })
    bucket = await s3.bucket(`ops-${crypto.randomBytes(4).toString('hex')}`)
  })
  afterAll(() => restore())

  it('reaches loopback directly: no proxy, path-style addressing', async () => {
    expect(store.proxy).toBeUndefined()
    expect(store.endpoint).toBe(s3.endpoint)
    expect(await store.client.config.forcePathStyle).toBe(true)
  })

  it('lists a prefix one level at a time (Delimiter), page by page in key order, past 1,000 keys', async () => {
    const keys: string[] = []
    const prefixes: string[] = []
    let pages = 0
    for await (const page of paginateListObjectsV2({ client: store.client }, { Bucket: 'listing', Prefix: 'many/', Delimiter: '/' })) {
      pages++
      expect(page.KeyCount).toBeLessThanOrEqual(1000)
      keys.push(...(page.Contents ?? []).map((o) => o.Key as string))
      prefixes.push(...(page.CommonPrefixes ?? []).map((p) => p.Prefix as string))
    }
    expect(pages).toBeGreaterThanOrEqual(3)
    expect(keys).toEqual([...LISTED, 'many/a-b'])
    expect(prefixes).toEqual(['many/sub/', 'many/zz/'])
  })

  it('keeps user metadata (x-amz-meta-mtime) through PutObject, HeadObject and CopyObject', async () => {
    const mtime = '1700000000.123456789'
    await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'meta/a', Body: 'a', Metadata: { mtime } }))
    const head = await store.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'meta/a' }))
    expect(head.Metadata).toEqual({ mtime })
    expect(head.ContentLength).toBe(1)
    await store.client.send(new CopyObjectCommand({ Bucket: bucket, Key: 'meta/copy', CopySource: `${bucket}/meta/a` }))
    const copy = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'meta/copy' }))
    expect(copy.Metadata).toEqual({ mtime })
    expect((await bodyOf(copy)).toString()).toBe('a')
  })

  it('reads byte ranges of the version it pinned (ETag), and refuses another version (412)', async () => {
    const data = bytes(1 << 20, 7)
    const put = await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'ranged', Body: data }))
    const etag = put.ETag as string
    expect(etag).toBe(`"${crypto.createHash('md5').update(data).digest('hex')}"`)
    for (const [start, end] of [[0, 99], [1000, data.length - 1], [data.length - 1, data.length - 1]]) {
      expect((await readRange(store, { bucket, key: 'ranged', etag, start, end })).equals(data.subarray(start, end + 1))).toBe(true)
    }
    const suffix = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'ranged', Range: 'bytes=-5' }))
    expect((await bodyOf(suffix)).equals(data.subarray(-5))).toBe(true)

    await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'ranged', Body: bytes(1 << 20, 8) }))
    const err = await readRange(store, { bucket, key: 'ranged', etag, start: 0, end: 99 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PackerError)
    expect((err as PackerError).code).toBe('SOURCE')
    expect((err as PackerError).message).toBe(`s3://${bucket}/ranged changed at ${s3.endpoint} while packer was reading it (its ETag no longer matches); rerun when it is stable`)
  })

  it('uploads in parts and reads the whole back, with the md5-of-md5s-N ETag; an aborted upload is gone', async () => {
    const parts = [bytes(5 << 20, 11), bytes(1 << 20, 12)]
    const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'multi', Metadata: { mtime: '1.5' } }))
    const etags = []
    for (const [i, part] of parts.entries()) {
      etags.push((await store.client.send(new UploadPartCommand({ Bucket: bucket, Key: 'multi', UploadId, PartNumber: i + 1, Body: part }))).ETag as string)
    }
    const done = await store.client.send(new CompleteMultipartUploadCommand({
      Bucket: bucket, Key: 'multi', UploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }))
    const md5s = Buffer.concat(parts.map((p) => crypto.createHash('md5').update(p).digest()))
    expect(done.ETag).toBe(`"${crypto.createHash('md5').update(md5s).digest('hex')}-2"`)
    const got = await store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'multi' }))
    expect(got.Metadata).toEqual({ mtime: '1.5' })
    expect((await bodyOf(got)).equals(Buffer.concat(parts))).toBe(true)

    const aborted = await store.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'aborted' }))
    const part = await store.client.send(new UploadPartCommand({ Bucket: bucket, Key: 'aborted', UploadId: aborted.UploadId, PartNumber: 1, Body: 'x' }))
    await store.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'aborted', UploadId: aborted.UploadId }))
    await expect(store.client.send(new CompleteMultipartUploadCommand({
      Bucket: bucket, Key: 'aborted', UploadId: aborted.UploadId, MultipartUpload: { Parts: [{ ETag: part.ETag, PartNumber: 1 }] },
    }))).rejects.toMatchObject({ name: 'NoSuchUpload' })
  })

  it('deletes an object; reading it then names it', async () => {
    await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'doomed', Body: 'x' }))
    await store.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'doomed' }))
    const where = { bucket, key: 'doomed' }
    expect((await failure(store, where, () => store.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'doomed' })))).message)
      .toBe(`s3://${bucket}/doomed does not exist at ${s3.endpoint}`)
    expect((await failure(store, where, () => store.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'doomed' })))).message)
      .toBe(`s3://${bucket}/doomed does not exist at ${s3.endpoint} (nor, maybe, its bucket)`)
  })

  it('names a missing bucket', async () => {
    const err = await failure(store, { bucket: 'no-such-bucket' }, () => store.client.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' })))
    expect(err.code).toBe('REMOTE')
    expect(err.message).toBe(`bucket no-such-bucket does not exist at ${s3.endpoint}: check the bucket name and the endpoint (--s3-endpoint or AWS_ENDPOINT_URL_S3)`)
  })
})

describe('the test server says what it lacks (501 NotImplemented), not a wrong answer', () => {
  it('ListParts and conditional writes', async () => {
    const store = await s3Client({ endpoint: s3.endpoint })
    const { UploadId } = await store.client.send(new CreateMultipartUploadCommand({ Bucket: 'listing', Key: 'mpu' }))
    const err = await failure(store, { bucket: 'listing', key: 'mpu' }, () => store.client.send(new ListPartsCommand({ Bucket: 'listing', Key: 'mpu', UploadId })))
    expect(err.message).toBe(`${s3.endpoint} does not implement this request (ListParts is not implemented by this test server (fauxqs 1.9.2)), on s3://listing/mpu`)
    await expect(store.client.send(new PutObjectCommand({ Bucket: 'listing', Key: 'other', Body: 'lock', IfNoneMatch: '*' }))).rejects.toMatchObject({ name: 'NotImplemented' })
    const other = await store.client.send(new GetObjectCommand({ Bucket: 'listing', Key: 'other' }))
    expect((await bodyOf(other)).toString()).toBe('other')
  })
})

describe('s3Client through faults (a proxy in front of the server)', () => {
  let proxy: FaultProxy
  const bucket = 'faults'
  const data = bytes(1 << 20, 21)
  let etag: string
  const faulty = async (opts: S3Options = {}): Promise<S3Store> => await s3Client({ endpoint: proxy.url, ...opts })
  const gets = (): Array<{ range?: string, status?: number | string }> =>
    proxy.requests.filter((r) => r.method === 'GET').map(({ range, status }) => ({ range, status }))

  beforeAll(async () => {
    proxy = await startFaultProxy(s3.endpoint)
    await s3.bucket(bucket)
    const store = await s3Client({ endpoint: s3.endpoint })
    etag = (await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'data', Body: data }))).ETag as string
  })
  afterAll(async () => { await proxy?.stop() })

  it('retries 503 SlowDown (with Retry-After), twice, then succeeds: the proxy saw three requests', async () => {
    proxy.clear()
    proxy.fault({
      match: { method: 'GET' },
      times: 2,
      fault: { kind: 'status', status: 503, headers: { 'retry-after': '0', 'content-type': 'application/xml' }, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' },
    })
    const got = await readRange(await faulty(), { bucket, key: 'data', etag, start: 0, end: data.length - 1 })
    expect(got.equals(data)).toBe(true)
    expect(gets()).toEqual([503, 503, 206].map((status) => ({ range: `bytes=0-${data.length - 1}`, status })))
  })

  it('says so in one line when the store keeps throttling', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, fault: { kind: 'status', status: 503, headers: { 'retry-after': '0' }, body: '<Error><Code>SlowDown</Code><Message>Slow down</Message></Error>' } })
    const err = await readRange(await faulty({ maxAttempts: 2 }), { bucket, key: 'data', etag, start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(err.message).toBe(`${proxy.url} is refusing requests as too many (SlowDown) after 2 attempts, on s3://${bucket}/data: lower the parallelism, or try again later`)
    expect(gets().length).toBe(2)
  })

  it('reads again, from where it was cut off, a body whose connection was reset (and asks again when reset before the answer)', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, times: 1, fault: { kind: 'reset', afterBytes: 300_000 } })
    const got = await readRange(await faulty(), { bucket, key: 'data', etag, start: 0, end: data.length - 1 })
    expect(got.equals(data)).toBe(true)
    const seen = gets()
    expect(seen.length).toBe(2)
    expect(seen[0]).toEqual({ range: `bytes=0-${data.length - 1}`, status: 'reset' })
    const resumedAt = Number(/^bytes=(\d+)-/.exec(seen[1].range ?? '')?.[1])
    expect(resumedAt).toBeLessThanOrEqual(300_000)
    expect(seen[1]).toEqual({ range: `bytes=${resumedAt}-${data.length - 1}`, status: 206 })

    // reset before any answer: the SDK's own retry
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, times: 1, fault: { kind: 'reset' } })
    expect((await readRange(await faulty(), { bucket, key: 'data', etag, start: 5, end: 9 })).equals(data.subarray(5, 10))).toBe(true)
    expect(gets()).toEqual([{ range: 'bytes=5-9', status: 'reset' }, { range: 'bytes=5-9', status: 206 }])
  })

  it('aborts a body that stalls, within the idle timeout, and names the endpoint in one line', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, fault: { kind: 'stall', afterBytes: 1000 } })
    const started = Date.now()
    const err = await readRange(await faulty({ idleTimeoutMs: 1000, maxAttempts: 2 }), { bucket, key: 'data', etag, start: 0, end: data.length - 1 })
      .catch((e: unknown) => e) as PackerError
    expect(Date.now() - started).toBeLessThan(8000)
    expect(err.code).toBe('REMOTE')
    expect(err.message).toBe(`${proxy.url} sent nothing for 1 s after 2 attempts (reading or writing s3://${bucket}/data): check the network; try again later`)
    expect(gets().map((g) => g.status)).toEqual(['stalled', 'stalled'])
  })

  it('aborts an answer that never starts (latency past the idle timeout)', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, fault: { kind: 'latency', ms: 3000 } })
    const started = Date.now()
    const err = await readRange(await faulty({ idleTimeoutMs: 500, maxAttempts: 1 }), { bucket, key: 'data', etag, start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(Date.now() - started).toBeLessThan(2500)
    expect(err.message).toBe(`${proxy.url} sent nothing for 0.5 s (reading or writing s3://${bucket}/data): check the network; try again later`)
  })

  it('refuses a store that ignores Range (200 with the whole body)', async () => {
    proxy.clear()
    proxy.fault({ match: { range: true }, fault: { kind: 'ignore-range' } })
    const err = await readRange(await faulty(), { bucket, key: 'data', etag, start: 10, end: 19 }).catch((e: unknown) => e) as PackerError
    expect(err.message).toBe(`${proxy.url} ignored the byte range (HTTP 200 instead of 206): packer needs a store that serves ranges, for s3://${bucket}/data`)
  })

  it('names the bucket and the credentials on 403 (AccessDenied, InvalidAccessKeyId, or a HEAD without a body)', async () => {
    proxy.clear()
    proxy.fault({ times: 1, fault: { kind: 'status', status: 403, body: '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>' } })
    proxy.fault({ times: 1, fault: { kind: 'status', status: 403, body: '<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>' } })
    proxy.fault({ fault: { kind: 'status', status: 403 } })
    const store = await faulty()
    const list = (): Promise<unknown> => store.client.send(new ListObjectsV2Command({ Bucket: bucket }))
    expect((await failure(store, { bucket }, list)).message)
      .toBe(`access denied to s3://${bucket} at ${proxy.url}: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may use this bucket`)
    expect((await failure(store, { bucket }, list)).message)
      .toBe(`${proxy.url} does not know the access key ID in use (for s3://${bucket}): check AWS_ACCESS_KEY_ID or AWS_PROFILE`)
    expect((await failure(store, { bucket, key: 'data' }, () => store.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'data' })))).message)
      .toBe(`access denied to s3://${bucket}/data at ${proxy.url}: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may use this bucket`)
    expect(proxy.requests.length).toBe(3) // a 403 is not retried
  })
})

describe('s3Client failures that never reach a store', () => {
  it('names an unreachable endpoint', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`
    const store = await s3Client({ endpoint, maxAttempts: 2 })
    const err = await failure(store, { bucket: 'b' }, () => store.client.send(new ListObjectsV2Command({ Bucket: 'b' })))
    expect(err.message).toBe(`cannot reach ${endpoint} (ECONNREFUSED) after 2 attempts, for s3://b: check the endpoint (--s3-endpoint or AWS_ENDPOINT_URL_S3) and that the store is running`)
  })

  it('says how to give credentials when there are none', async () => {
    const restore = setEnv({ AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined })
    try {
      const store = await s3Client({ endpoint: s3.endpoint })
      const err = await failure(store, { bucket: 'listing' }, () => store.client.send(new ListObjectsV2Command({ Bucket: 'listing' })))
      expect(err.message).toMatch(/^no AWS credentials to use for s3:\/\/listing \(.+\): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where a role provides them$/)
    } finally {
      restore()
    }
  })

  it('refuses an endpoint that is not an http(s) URL, a bad proxy, a missing CA bundle, or no attempts, in one line', async () => {
    await expect(s3Client({ endpoint: 'minio:9000' })).rejects.toThrow('--s3-endpoint "minio:9000" is not an http(s) URL; give the store\'s address, e.g. https://s3.example.com or http://127.0.0.1:9000')
    await expect(s3Client({ endpoint: s3.endpoint, maxAttempts: 0 })).rejects.toThrow('0 attempts per request: give at least 1 (AWS_MAX_ATTEMPTS or the profile\'s max_attempts)')
    const restore = setEnv({ AWS_ENDPOINT_URL_S3: 'ftp://store', AWS_CA_BUNDLE: '/nonexistent/ca.pem' })
    try {
      await expect(s3Client()).rejects.toThrow('AWS_ENDPOINT_URL_S3 "ftp://store" is not an http(s) URL')
      await expect(s3Client({ endpoint: s3.endpoint })).rejects.toThrow('AWS_CA_BUNDLE /nonexistent/ca.pem: cannot read it (ENOENT); point it at a PEM file of CA certificates, or unset it')
    } finally {
      restore()
    }
    expect(() => proxyFor(new URL('https://s3.example.test'), { HTTPS_PROXY: 'http://[bad' })).toThrow('HTTPS_PROXY is not an http(s) proxy URL; set it to e.g. http://proxy.example:3128, or unset it')
    expect(() => proxyFor(new URL('https://s3.example.test'), { ALL_PROXY: 'socks5://127.0.0.1:1080' })).toThrow('ALL_PROXY is not an http(s) proxy URL')
  })
})

describe('proxies and CAs for a remote endpoint', () => {
  it('chooses the proxy from the environment as curl does, never for loopback', () => {
    const env = { HTTPS_PROXY: 'http://proxy.corp:3128', http_proxy: 'proxy.corp:8080', NO_PROXY: 'minio.lan, .internal.example,[fd00::1]:9000' }
    const via = (url: string, e: NodeJS.ProcessEnv = env): string | undefined => proxyFor(new URL(url), e)?.href
    expect(via('https://s3.us-east-1.amazonaws.com')).toBe('http://proxy.corp:3128/')
    expect(via('http://store.example:9000')).toBe('http://proxy.corp:8080/')
    expect(via('https://minio.lan')).toBeUndefined()
    expect(via('https://bucket.minio.lan')).toBeUndefined()
    expect(via('https://a.internal.example')).toBeUndefined()
    expect(via('http://[fd00::1]:9000')).toBeUndefined()
    expect(via('http://[fd00::1]:9001')).toBe('http://proxy.corp:8080/')
    expect(via('https://xminio.lan')).toBe('http://proxy.corp:3128/')
    for (const local of ['http://127.0.0.1:9000', 'http://127.1.2.3', 'http://localhost:9000', 'http://s3.localhost', 'http://[::1]:9000', 'http://[::ffff:127.0.0.1]']) {
      expect(via(local, { ...env, NO_PROXY: '' })).toBeUndefined()
    }
    expect(via('https://s3.example.test', { ...env, NO_PROXY: '*' })).toBeUndefined()
    expect(via('https://s3.example.test', { all_proxy: 'https://proxy.corp' })).toBe('https://proxy.corp/')
  })

  it('parses s3:// URLs', () => {
    expect(parseS3Url('s3://bucket')).toEqual({ bucket: 'bucket', prefix: '' })
    expect(parseS3Url('s3://bucket/')).toEqual({ bucket: 'bucket', prefix: '' })
    expect(parseS3Url('s3://my.bucket/a/b c/%20')).toEqual({ bucket: 'my.bucket', prefix: 'a/b c/%20' })
    for (const bad of ['s3://', 's3:///prefix', 'https://bucket/x', 'bucket/x']) {
      expect(() => parseS3Url(bad)).toThrow(`${bad}: not an S3 URL; write s3://BUCKET or s3://BUCKET/PREFIX`)
    }
  })

  it('gives up on a connection that does not open within the connect timeout (a proxy that never answers CONNECT)', async () => {
    const silent = await listenOnLoopback(net.createServer(() => {}))
    const restore = setEnv({ ...NO_PROXY_ENV, HTTPS_PROXY: `http://127.0.0.1:${silent.port}` })
    try {
      const store = await s3Client({ endpoint: 'https://s3.example.test', connectTimeoutMs: 300, maxAttempts: 2 })
      const started = Date.now()
      const err = await failure(store, { bucket: 'b' }, () => store.client.send(new ListObjectsV2Command({ Bucket: 'b' })))
      expect(Date.now() - started).toBeLessThan(3000)
      expect(err.message).toBe(`cannot connect to https://s3.example.test (through the proxy http://127.0.0.1:${silent.port}) after 2 attempts (timed out), for s3://b: check the endpoint (--s3-endpoint, HTTPS_PROXY and NO_PROXY) and the network`)
    } finally {
      restore()
      await silent.close()
    }
  })

  it('names a proxy that refuses to connect (407)', async () => {
    const refusing = await listenOnLoopback(net.createServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n'))
    }))
    const restore = setEnv({ ...NO_PROXY_ENV, HTTPS_PROXY: `http://user:secret@127.0.0.1:${refusing.port}` })
    try {
      const store = await s3Client({ endpoint: 'https://s3.example.test', maxAttempts: 1 })
      const err = await failure(store, { bucket: 'b' }, () => store.client.send(new ListObjectsV2Command({ Bucket: 'b' })))
      expect(err.message).toBe(`the proxy http://127.0.0.1:${refusing.port} refused to connect to https://s3.example.test (HTTP 407): check HTTPS_PROXY (and its credentials) and NO_PROXY`)
    } finally {
      restore()
      await refusing.close()
    }
  })

  describe('over TLS, with a certificate no public CA signed', () => {
    let tunnel: TlsTunnelProxy
    let cert: string
    let bucket: string
    const big = bytes(3 << 20, 31) // past the SDK's 2 MiB threshold for Expect: 100-continue
    beforeAll(async () => {
      // for s3.example.test, its subdomains, s3store and localhost, made here; the tunnel proxy answers as any of them
      const dir = tmpDir()
      const key = path.join(dir, 'key.pem')
      cert = path.join(dir, 'cert.pem')
      const made = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=s3.example.test',
        '-addext', 'subjectAltName=DNS:s3.example.test,DNS:*.s3.example.test,DNS:s3store,DNS:localhost', '-keyout', key, '-out', cert])
      expect(made.code, made.stderr).toBe(0)
      tunnel = await startTlsTunnelProxy({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), upstream: s3.endpoint })
      bucket = await s3.bucket('remote')
    })
    afterAll(async () => { await tunnel?.stop() })

    it('goes through HTTPS_PROXY (CONNECT) to a remote endpoint and trusts AWS_CA_BUNDLE; without it, says which certificate it cannot trust', async () => {
      const restore = setEnv({ ...NO_PROXY_ENV, HTTPS_PROXY: tunnel.url, NO_PROXY: 'minio.lan', AWS_CA_BUNDLE: cert })
      try {
        const store = await s3Client({ endpoint: 'https://s3.example.test' })
        expect(store.proxy).toBe(tunnel.url)
        const put = await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'big', Body: big }))
        const got = await readRange(store, { bucket, key: 'big', etag: put.ETag as string, start: 1, end: big.length - 1 })
        expect(got.equals(big.subarray(1))).toBe(true)
        // virtual-hosted addressing for a named host (the bucket in the host name); path style when asked (fauxqs
        // takes any dotted Host for virtual-hosted, so this one has no dot)
        expect(new Set(tunnel.seen)).toEqual(new Set(['CONNECT remote.s3.example.test:443']))
        const pathStyle = await s3Client({ endpoint: 'https://s3store', pathStyle: true })
        expect((await pathStyle.client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'big' }))).ContentLength).toBe(big.length)
        expect(tunnel.seen.at(-1)).toBe('CONNECT s3store:443')

        process.env.AWS_CA_BUNDLE = ''
        const untrusting = await s3Client({ endpoint: 'https://s3.example.test' })
        const err = await failure(untrusting, { bucket }, () => untrusting.client.send(new ListObjectsV2Command({ Bucket: bucket })))
        expect(err.message).toMatch(new RegExp(`^cannot trust the TLS certificate of https://s3\\.example\\.test \\(through the proxy ${tunnel.url.replace(/\./g, '\\.')}\\) \\((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)\\): if the store's certificate comes from a private CA, set AWS_CA_BUNDLE to that CA's PEM file$`))
        // the same words from a ranged read, which packer's own HTTP client makes, not the SDK; not retried, as the SDK
        // retries no certificate it cannot trust (one CONNECT)
        const connects = tunnel.seen.length
        const ranged = await readRange(untrusting, { bucket, key: 'big', start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
        expect(ranged.message).toBe(err.message)
        expect(tunnel.seen.length - connects).toBe(1)
      } finally {
        restore()
      }
    })

    it('reaches https://localhost directly though HTTPS_PROXY is set, trusting AWS_CA_BUNDLE for uploads past 2 MiB too', async () => {
      const restore = setEnv({ ...NO_PROXY_ENV, HTTPS_PROXY: tunnel.url, AWS_CA_BUNDLE: cert })
      try {
        const seenBefore = tunnel.seen.length
        const store = await s3Client({ endpoint: tunnel.direct })
        expect(store.proxy).toBeUndefined()
        const put = await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'big-direct', Body: big }))
        const got = await readRange(store, { bucket, key: 'big-direct', etag: put.ETag as string, start: 0, end: big.length - 1 })
        expect(got.equals(big)).toBe(true)
        expect(tunnel.seen.length).toBe(seenBefore)
      } finally {
        restore()
      }
    })
  })

  it('a separate process with HTTPS_PROXY, NO_PROXY=, AWS_CA_BUNDLE and NODE_EXTRA_CA_CERTS set reaches loopback directly', async () => {
    const bucket = await s3.bucket('child')
    const script = `
      import { PutObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
      import { s3Client } from ${JSON.stringify(path.join(ROOT, 'dist/s3/client.js'))}
      import { readRange } from ${JSON.stringify(path.join(ROOT, 'dist/s3/read-range.js'))}
      const store = await s3Client({ endpoint: process.env.TEST_S3 })
      const put = await store.client.send(new PutObjectCommand({ Bucket: 'child', Key: 'k', Body: 'hello, store' }))
      const got = await readRange(store, { bucket: 'child', key: 'k', etag: put.ETag, start: 7, end: 11 })
      const list = await store.client.send(new ListObjectsV2Command({ Bucket: 'child' }))
      console.log(JSON.stringify({ proxy: store.proxy ?? null, got: got.toString(), keys: list.Contents.map((o) => o.Key) }))`
    const r = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, ...PROXY_ENV, NODE_EXTRA_CA_CERTS: CA_BUNDLE, TEST_S3: s3.endpoint },
    })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ proxy: null, got: 'store', keys: ['k'] })
    expect(bucket).toBe('child')
  })
})
