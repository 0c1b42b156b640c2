/**
 * A real S3-compatible server for tests: fauxqs 1.9.2 from npm, in this process, on 127.0.0.1 only (its CLI would
 * listen on every address). It keeps objects in memory and accepts any credentials.
 *
 * Measured against @aws-sdk/client-s3 (test/s3/client.test.ts shows the working part): ListObjectsV2 with Delimiter,
 * StartAfter and pagination; HeadObject and user metadata; GetObject with ranges (suffix ranges too) and If-Match;
 * PutObject; multipart create / upload part / complete / abort with md5-of-md5s-N ETags; CopyObject; DeleteObject.
 * It gets wrong, without saying so, what packer must not be fooled by in a test, so those requests are answered here
 * 501 NotImplemented, as a store without the feature would: ListMultipartUploads (fauxqs answers an object listing),
 * ListParts (404), UploadPartCopy (500), conditional writes (If-None-Match / If-Match on PUT or Complete: fauxqs
 * overwrites) and If-Match on HEAD (ignored). A request body may be at most 11 MiB (fastify's bodyLimit).
 * fauxqs 2.4.1 has UploadPartCopy (byte ranges of objects uploaded in parts too) but needs Node >= 22.5: the one test
 * of it runs it on Node 22 in a child process (fauxqs2.ts); s3rver 3.7.1 and its fork
 * @20minutes/s3rver 4.0.4 fail ListObjectsV2 past 1,000 keys (500), ignore If-Match and mishandle suffix ranges.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildApp } from 'fauxqs'
import { sigV4Mismatch, type SignedRequest } from './sigv4-check.js'

export const MAX_BODY_BYTES = 11 * 1024 * 1024

export interface S3Server {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string
  /** Creates a bucket and returns its name. */
  bucket (name: string): Promise<string>
  /**
   * Stores an object with a plain unsigned PUT (typed: fauxqs fails an empty body without a type): quicker than the SDK, for filling a bucket before a test. `mtimeNs`:
   * its `x-amz-meta-mtime` as rclone writes it.
   */
  put (bucket: string, key: string, body: string | Buffer, mtimeNs?: bigint): Promise<void>
  /** Every signed request seen (with `secret` only): method, path as sent, headers. */
  readonly signed: SignedRequest[]
  stop (): Promise<void>
}

/**
 * `secret`: the secret key every signed request's SigV4 signature is checked with (as AWS S3 checks it; fauxqs
 * itself checks none), a wrong one answered 403 SignatureDoesNotMatch; `answer(req)` may answer a signed request
 * itself (a status, headers and body) before fauxqs does.
 */
export async function startS3 (opts: { secret?: string, answer?: (req: SignedRequest) => { status: number, headers?: Record<string, string>, body?: string } | undefined } = {}): Promise<S3Server> {
  const app = buildApp({ logger: false })
  const signed: SignedRequest[] = []
  app.addHook('onRequest', async (req, reply) => {
    if (opts.secret === undefined || req.headers.authorization === undefined) return
    const seen = { method: req.method, url: req.raw.url ?? '', headers: req.headers }
    signed.push(seen)
    const wrong = sigV4Mismatch(seen, opts.secret)
    const own = wrong === undefined ? opts.answer?.(seen) : { status: 403, body: `<Error><Code>SignatureDoesNotMatch</Code><Message>${wrong.replace(/[<&]/g, ' ')}</Message></Error>` }
    if (own === undefined) return
    return await reply.status(own.status).headers({ 'content-type': 'application/xml', ...own.headers }).send(own.body ?? '')
  })
  app.addHook('onRequest', async (req, reply) => {
    const missing = unsupported(req.method, new URL(req.url, 'http://s3').searchParams, req.headers)
    if (missing === undefined) return
    await reply.status(501).header('content-type', 'application/xml').send(
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>${missing} is not implemented by this test server (fauxqs 1.9.2)</Message></Error>`)
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const endpoint = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const agent = new http.Agent({ keepAlive: true })
  const put = async (path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<void> => await new Promise((resolve, reject) => {
    const req = http.request(`${endpoint}/${path}`, { method: 'PUT', agent, headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = ''
      res.on('data', (d) => { text += d })
      res.on('end', () => res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${endpoint}/${path}: HTTP ${res.statusCode ?? '?'} ${text}`)))
    })
    req.on('error', reject)
    req.end(body)
  })
  return {
    endpoint,
    signed,
    bucket: async (name) => { await put(name, ''); return name },
    put: async (bucket, key, body, mtimeNs) => {
      const path = `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`
      await put(path, body, mtimeNs === undefined ? {} : { 'x-amz-meta-mtime': metaMtime(mtimeNs) })
    },
    stop: async () => {
      agent.destroy()
      await app.close()
    },
  }
}

/** The operation fauxqs would get wrong silently, or undefined. */
function unsupported (method: string, query: URLSearchParams, headers: Record<string, unknown>): string | undefined {
  if (method === 'GET' && query.has('uploads')) return 'ListMultipartUploads'
  if (method === 'GET' && query.has('uploadId')) return 'ListParts'
  if (method === 'PUT' && query.has('uploadId') && headers['x-amz-copy-source'] !== undefined) return 'UploadPartCopy'
  const conditional = headers['if-none-match'] !== undefined || headers['if-match'] !== undefined
  if (conditional && (method === 'PUT' || method === 'POST')) return 'A conditional write (If-None-Match / If-Match)'
  if (method === 'HEAD' && headers['if-match'] !== undefined) return 'If-Match on HEAD'
  return undefined
}

/** Nanoseconds as rclone's x-amz-meta-mtime: seconds, a point, nine digits. */
function metaMtime (ns: bigint): string {
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`
}
