/**
 * readRange's GETs go through packer's own HTTP client, signed with the SDK's SigV4 signer (src/s3/signed-get.ts):
 * against a server that checks every signature as S3 does (fauxqs checks none), what the SDK did for them must still
 * hold: the signature, If-Match sent and signed, keys of any characters, session tokens, retries of what the SDK
 * retried, a region redirect followed, and s3Error's one-line messages for what fails.
 */
import crypto from 'node:crypto'
import net from 'node:net'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { s3Client, type S3Store } from '../../src/s3/client.js'
import { readRange } from '../../src/s3/read-range.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { parseAuth, type SignedRequest } from '../servers/sigv4-check.js'
import { bytes } from '../helpers.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

const PROXY_ENV = { ...NO_PROXY_ENV, HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', ALL_PROXY: 'http://127.0.0.1:9', NO_PROXY: '' }
/** Keys as packs meet them: spaces, the characters encodeURIComponent leaves alone, UTF-8, `.` and `..` segments, `//`. */
const KEYS = ['plain', 'd/a b+c%20', 'd/!\'()*~-_.', 'd/ü€😀', 'd/./x', 'd/../y', 'd//z', 'd/q?x=1&y#z']
const data = bytes(600_000, 41)

let s3: S3Server
let restoreEnv: () => void
/** What the server answers itself, by path, before checking anything but the signature. */
const answers = new Map<string, (req: SignedRequest) => { status: number, headers?: Record<string, string>, body?: string } | undefined>()

beforeAll(async () => {
  restoreEnv = setEnv({ ...TEST_ENV, ...NO_PROXY_ENV })
  s3 = await startS3({ secret: TEST_ENV.AWS_SECRET_ACCESS_KEY, answer: (req) => answers.get(req.url.split('?')[0]!)?.(req) })
})
afterAll(async () => {
  await s3?.stop()
  restoreEnv?.()
})
beforeEach(() => { answers.clear() })

const rangeGets = (): SignedRequest[] => s3.signed.filter((r) => r.method === 'GET' && r.headers.range !== undefined)

describe.each([
  { name: 'no proxy settings', env: NO_PROXY_ENV },
  { name: 'HTTP(S)_PROXY and ALL_PROXY set, NO_PROXY empty (loopback is reached directly)', env: PROXY_ENV },
])('readRange through packer\'s HTTP client, signed, with $name', ({ env }) => {
  let store: S3Store
  let restore: () => void
  let bucket: string
  const etags = new Map<string, string>()
  beforeAll(async () => {
    restore = setEnv(env)
    store = await s3Client({ endpoint: s3.endpoint, maxAttempts: 3 })
    bucket = await s3.bucket(`signed-${crypto.randomBytes(4).toString('hex')}`)
    // uploaded by the SDK: its signatures pass the same check (the check itself is right)
    for (const key of KEYS) etags.set(key, (await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data }))).ETag as string)
  })
  afterAll(() => restore())

  it('reads keys of any characters, each GET signed as S3 checks it (path as sent, Range and If-Match signed)', async () => {
    const before = rangeGets().length
    for (const key of KEYS) {
      const got = await readRange(store, { bucket, key, etag: etags.get(key), start: 100, end: data.length - 1 })
      expect(got.equals(data.subarray(100)), key).toBe(true)
    }
    const gets = rangeGets().slice(before)
    expect(gets.length).toBe(KEYS.length)
    for (const [i, g] of gets.entries()) {
      expect(g.headers['if-match']).toBe(etags.get(KEYS[i]!))
      expect(g.headers['user-agent']).toBe('packer') // not the SDK's
      const auth = parseAuth(g.headers.authorization as string)!
      expect(auth).toMatchObject({ accessKeyId: TEST_ENV.AWS_ACCESS_KEY_ID, region: 'us-east-1', service: 's3' })
      expect(auth.signedHeaders).toEqual(expect.arrayContaining(['host', 'if-match', 'range', 'x-amz-content-sha256', 'x-amz-date']))
      expect(g.url.startsWith(`/${bucket}/`)).toBe(true) // path style, as the SDK addresses an IP endpoint
    }
  })

  it('sends and signs the session token when there is one, and the region configured', async () => {
    const undo = setEnv({ AWS_SESSION_TOKEN: 'token/with+odd=chars', AWS_REGION: 'eu-west-3' })
    try {
      const withToken = await s3Client({ endpoint: s3.endpoint })
      const got = await readRange(withToken, { bucket, key: 'plain', start: 0, end: 9 })
      expect(got.equals(data.subarray(0, 10))).toBe(true)
      const g = rangeGets().at(-1)!
      expect(g.headers['x-amz-security-token']).toBe('token/with+odd=chars')
      expect(parseAuth(g.headers.authorization as string)).toMatchObject({ region: 'eu-west-3' })
    } finally { undo() }
  })

  it('a wrong secret key: the store\'s 403 SignatureDoesNotMatch, in s3Error\'s words, not retried', async () => {
    const undo = setEnv({ AWS_SECRET_ACCESS_KEY: 'not-the-secret' })
    try {
      const wrong = await s3Client({ endpoint: s3.endpoint })
      const before = rangeGets().length
      const err = await readRange(wrong, { bucket, key: 'plain', start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
      expect(err).toBeInstanceOf(PackerError)
      expect(err.message).toBe(`${s3.endpoint} rejected the request signature (for s3://${bucket}/plain): check the secret key (AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`)
      expect(rangeGets().length - before).toBe(1)
    } finally { undo() }
  })

  it('a key that is not there: NoSuchKey, as the SDK named it (s3-tree and s3-cars tell a vanished object by it)', async () => {
    const err = await readRange(store, { bucket, key: 'd/absent', start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(err.message).toBe(`s3://${bucket}/d/absent does not exist at ${s3.endpoint}`)
    expect((err.cause as { name?: string }).name).toBe('NoSuchKey')
  })

  it('another version than the one pinned: the store\'s 412 to If-Match, as a changed source (SOURCE)', async () => {
    await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'changing', Body: data }))
    const stale = `"${'0'.repeat(32)}"`
    const err = await readRange(store, { bucket, key: 'changing', etag: stale, start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(err.code).toBe('SOURCE')
    expect(err.message).toBe(`s3://${bucket}/changing changed at ${s3.endpoint} while packer was reading it (its ETag no longer matches); rerun when it is stable`)
    expect((err.cause as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(412)
    expect(rangeGets().at(-1)!.headers['if-match']).toBe(stale)
  })

  it('retries 500, 503 and 429 answers as the SDK did, up to the attempts in all; 403 and 404 without a body are not retried', async () => {
    const path = `/${bucket}/plain`
    let n = 0
    answers.set(path, () => [{ status: 500 }, { status: 429, body: '<Error><Code>TooManyRequests</Code></Error>' }][n++])
    expect((await readRange(store, { bucket, key: 'plain', start: 5, end: 9 })).equals(data.subarray(5, 10))).toBe(true)
    expect(n).toBe(3)

    answers.set(path, () => ({ status: 503, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' }))
    const throttled = await readRange(store, { bucket, key: 'plain', start: 5, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(throttled.message).toBe(`${s3.endpoint} is refusing requests as too many (SlowDown) after 3 attempts, on s3://${bucket}/plain: lower the parallelism, or try again later`)

    n = 0
    answers.set(path, () => { n++; return { status: 403 } })
    const denied = await readRange(store, { bucket, key: 'plain', start: 5, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(denied.message).toBe(`access denied to s3://${bucket}/plain at ${s3.endpoint}: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may use this bucket`)
    answers.set(path, () => { n++; return { status: 404 } })
    const missing = await readRange(store, { bucket, key: 'plain', start: 5, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(missing.message).toBe(`s3://${bucket}/plain does not exist at ${s3.endpoint} (nor, maybe, its bucket)`)
    expect(n).toBe(2)
  })

  it('follows a region redirect (301 with x-amz-bucket-region) as the SDK does where it follows them: signed again for that region', async () => {
    const path = `/${bucket}/plain`
    answers.set(path, (req) => parseAuth(req.headers.authorization as string)?.region === 'ap-south-1'
      ? undefined
      : { status: 301, headers: { 'x-amz-bucket-region': 'ap-south-1' }, body: '<Error><Code>PermanentRedirect</Code></Error>' })
    const redirected = await s3Client({ endpoint: s3.endpoint, maxAttempts: 1 })
    // what the SDK sets for AWS S3 itself (no endpoint): a custom endpoint has no regions to redirect between
    ;(redirected.client.config as { followRegionRedirects: boolean }).followRegionRedirects = true
    expect((await readRange(redirected, { bucket, key: 'plain', start: 0, end: 9 })).equals(data.subarray(0, 10))).toBe(true)
    expect(rangeGets().slice(-2).map((g) => parseAuth(g.headers.authorization as string)?.region)).toEqual(['us-east-1', 'ap-south-1'])
    // without following them (a custom endpoint), the 301 is an answer like another
    const err = await readRange(store, { bucket, key: 'plain', start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(err.message).toBe(`${s3.endpoint} answered HTTP 301 (PermanentRedirect: UnknownError), on s3://${bucket}/plain`)
  })
})

describe('readRange through packer\'s HTTP client, on a network that fails', () => {
  let proxy: FaultProxy
  let store: S3Store
  const bucket = 'net-faults'
  let etag: string
  beforeAll(async () => {
    proxy = await startFaultProxy(s3.endpoint)
    await s3.bucket(bucket)
    store = await s3Client({ endpoint: proxy.url, maxAttempts: 3, idleTimeoutMs: 700 })
    etag = (await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: 'big', Body: data }))).ETag as string
  })
  afterAll(async () => { await proxy?.stop() })

  it('a body cut twice and a stall: each time the missing bytes only, signed afresh, pinned to the ETag', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, times: 1, fault: { kind: 'reset', afterBytes: 100_000 } })
    proxy.fault({ match: { method: 'GET' }, times: 1, fault: { kind: 'stall', afterBytes: 200_000 } })
    const before = rangeGets().length
    expect((await readRange(store, { bucket, key: 'big', etag, start: 0, end: data.length - 1 })).equals(data)).toBe(true)
    const gets = proxy.requests.filter((r) => r.method === 'GET')
    expect(gets.map((g) => g.status)).toEqual(['reset', 'stalled', 206])
    const from = gets.map((g) => Number(/^bytes=(\d+)-/.exec(g.range ?? '')?.[1]))
    expect(from[0]).toBe(0)
    expect(from[1]).toBeGreaterThan(0)
    expect(from[2]).toBeGreaterThan(from[1]!)
    // the server saw the ones that reached it, each with its own signature and the If-Match
    const seen = rangeGets().slice(before)
    expect(new Set(seen.map((g) => g.headers.authorization)).size).toBe(seen.length)
    expect(seen.every((g) => g.headers['if-match'] === etag)).toBe(true)
  })

  it('a stall on every try: the idle timeout ends each, and the last error says so in one line', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET' }, fault: { kind: 'stall', afterBytes: 0 } })
    const started = Date.now()
    const err = await readRange(store, { bucket, key: 'big', etag, start: 0, end: data.length - 1 }).catch((e: unknown) => e) as PackerError
    expect(Date.now() - started).toBeLessThan(6000)
    expect(err.message).toBe(`${proxy.url} sent nothing for 0.7 s after 3 attempts (reading or writing s3://${bucket}/big): check the network; try again later`)
  })

  it('a store that cannot be reached: ECONNREFUSED, retried, one line', async () => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const gone = await s3Client({ endpoint, maxAttempts: 2 })
    const err = await readRange(gone, { bucket, key: 'big', start: 0, end: 9 }).catch((e: unknown) => e) as PackerError
    expect(err.message).toBe(`cannot reach ${endpoint} (ECONNREFUSED) after 2 attempts, for s3://${bucket}/big: check the endpoint (--s3-endpoint or AWS_ENDPOINT_URL_S3) and that the store is running`)
  })
})
