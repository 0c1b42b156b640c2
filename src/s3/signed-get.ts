/**
 * GETs of objects signed as the AWS SDK signs them and sent by packer's own HTTP/1.1 client (src/net/http1-client.ts),
 * which receives a body for a fraction of the CPU the SDK's node:http and stream plumbing spend on it (bench/s3-pack.mjs).
 * Everything but the transfer is the SDK's: the bucket's endpoint and addressing come from its endpoint rules (path
 * style or virtual-hosted, the region's host, FIPS and dual-stack as configured), the signature from its SigV4 signer
 * with its credential chain (refreshed as they near expiry) and its clock-skew correction. A bucket whose endpoint
 * wants some other signing (S3 Express directory buckets) is left to the SDK.
 */
import { finished, type Readable } from 'node:stream'
import { GetObjectCommand, type GetObjectCommandOutput } from '@aws-sdk/client-s3'
import { resolveParams } from '@smithy/core/endpoints'
import { Http1Error, http1Get, type Http1Get, type Http1Receiver } from '../net/http1-client.js'
import type { S3Store } from './client.js'
import { sendS3 } from './s3-error.js'

type Sign = (request: SignableRequest, opts: { signingDate: Date, signingRegion: string, signingService: string }) => Promise<{ headers: Record<string, string> }>

/** Where a bucket's objects are, and the signer for them. */
interface BucketEndpoint {
  /** The bucket's URL: keys follow its path. */
  base: URL
  region: string
  service: string
  sign: Sign
}

interface SignableRequest {
  method: string
  protocol: string
  hostname: string
  port?: number
  path: string
  query: Record<string, string>
  headers: Record<string, string>
}

const endpoints = new WeakMap<S3Store, Map<string, Promise<BucketEndpoint | null>>>()

/**
 * The endpoint for `bucket` (in `region`, when S3 said the bucket is there: a region redirect), as the SDK resolves
 * it for a GetObject; null when it is not signed with plain SigV4. Resolved once per store, bucket and region.
 */
async function bucketEndpoint (store: S3Store, bucket: string, region?: string): Promise<BucketEndpoint | null> {
  let byBucket = endpoints.get(store)
  if (byBucket === undefined) endpoints.set(store, byBucket = new Map())
  const id = `${bucket}\n${region ?? ''}`
  let found = byBucket.get(id)
  if (found === undefined) {
    found = (async () => {
      const config = store.client.config
      const params = await resolveParams({ Bucket: bucket }, GetObjectCommand, region === undefined ? config : { ...config, region: async () => region })
      const endpoint = config.endpointProvider(params)
      const scheme = endpoint.properties?.authSchemes?.[0]
      if (scheme !== undefined && scheme.name !== 'sigv4') return null
      const signer = await config.signer(scheme)
      return {
        base: endpoint.url,
        region: scheme?.signingRegion ?? region ?? await config.region(),
        service: scheme?.signingName ?? 's3',
        sign: signer.sign.bind(signer) as unknown as Sign,
      }
    })()
    byBucket.set(id, found)
    found.catch(() => byBucket.delete(id))
  }
  return await found
}

/** A key as the SDK puts it in a path: each segment percent-encoded, `!'()*` too. */
function keyPath (key: string): string {
  return key.split('/').map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/')
}

/**
 * A GET of `key` in `bucket` with `headers` (lower-case names: range, if-match), signed, its answer handed to `on` as
 * http1Get hands one on (every step bounded by the store's connect and idle timeouts, through the environment's proxy,
 * trusting AWS_CA_BUNDLE when set). `region`: the bucket's, when a redirect said it is not the store's. A bucket that
 * needs other signing goes through the SDK's GetObject: its failures before the answer come as s3Error's PackerError,
 * after the SDK's own retries.
 */
export async function objectGet (store: S3Store, bucket: string, key: string, headers: Record<string, string>, on: Http1Receiver,
  region?: string): Promise<Http1Get> {
  const endpoint = await bucketEndpoint(store, bucket, region)
  if (endpoint === null) return await sdkGet(store, bucket, key, headers, on)
  const url = endpoint.base
  const path = `${url.pathname.replace(/\/$/, '')}/${keyPath(key)}`
  const config = store.client.config
  const signed = await endpoint.sign({
    method: 'GET',
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port === '' ? undefined : Number(url.port),
    path,
    query: {},
    headers: { ...headers, host: url.host },
  }, { signingDate: new Date(Date.now() + (config.systemClockOffset ?? 0)), signingRegion: endpoint.region, signingService: endpoint.service })
  const sent: Record<string, string> = { 'user-agent': 'packer' }
  for (const [name, value] of Object.entries(signed.headers)) {
    const n = name.toLowerCase()
    if (n !== 'host') sent[n] = value // http1Get writes Host itself (url.host, as signed)
  }
  return http1Get(url, sent, { connect: store.connectTimeoutMs, firstByte: store.idleTimeoutMs, stall: store.idleTimeoutMs }, on, { ca: store.ca, path })
}

/** The SDK's GetObject, its answer handed on as http1Get hands one on. */
async function sdkGet (store: S3Store, bucket: string, key: string, headers: Record<string, string>, on: Http1Receiver): Promise<Http1Get> {
  const res = await sendS3<GetObjectCommandOutput>(store, new GetObjectCommand({ Bucket: bucket, Key: key, IfMatch: headers['if-match'], Range: headers.range }), { bucket, key })
  const body = res.Body as Readable
  let over = false
  body.pause()
  setImmediate(() => { // the caller has its handle on this GET by then
    on.head({ status: res.$metadata.httpStatusCode ?? 0, reason: '', headers: { etag: res.ETag ?? '', 'content-range': res.ContentRange ?? '' } })
    if (over) return
    body.on('data', (piece: Buffer) => { if (!over) on.piece(piece) })
    finished(body, (err) => {
      if (over) return
      over = true
      if (err === undefined || err === null) { on.end(); return }
      const e = err as NodeJS.ErrnoException
      const code = e.name === 'TimeoutError' ? 'ETIMEDOUT' : e.code === undefined || e.code === 'ERR_STREAM_PREMATURE_CLOSE' ? 'ECONNRESET' : e.code
      on.error(new Http1Error(`the body failed (${e.message})`, true, { cause: e, code }))
    })
    body.resume()
  })
  return { cancel: () => { over = true; body.destroy() }, pause: () => body.pause(), resume: () => body.resume() }
}

/** Whether a failed answer is S3 saying the bucket is in another region, and the SDK would follow it (its region). */
export function redirectRegion (store: S3Store, status: number, headers: Record<string, string>): string | undefined {
  return store.client.config.followRegionRedirects === true && status === 301 ? headers['x-amz-bucket-region'] : undefined
}

/**
 * An error answer (status, and the S3 XML error body) as the SDK would throw it: named by its Code (NoSuchKey,
 * AccessDenied, PreconditionFailed…; NotFound for a bare 404), the HTTP status in $metadata; what s3Error words.
 */
export function serviceError (status: number, body: string): { name: string, message: string, $metadata: { httpStatusCode: number } } {
  const field = (tag: string): string | undefined => {
    const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(body)
    return m === null ? undefined : m[1]!.replace(/&(lt|gt|amp|quot|apos);/g, (_, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: '\'' })[e]!)
  }
  return {
    name: field('Code') ?? (status === 404 ? 'NotFound' : 'Unknown'),
    message: field('Message') ?? 'UnknownError',
    $metadata: { httpStatusCode: status },
  }
}
