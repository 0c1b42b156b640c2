/**
 * AWS Signature Version 4 checked as S3 checks it, for a test server: fauxqs takes any credentials and any signature,
 * so a client signing wrong (a path encoded otherwise than signed, a header sent but not signed, the wrong region or
 * key) would pass unseen. Written from AWS's description of SigV4, sharing no code with the SDK or packer.
 */
import crypto from 'node:crypto'

export interface SignedRequest { method: string, url: string, headers: Record<string, string | string[] | undefined> }

/** What a request's Authorization header says. */
export interface SigV4Auth { accessKeyId: string, day: string, region: string, service: string, signedHeaders: string[], signature: string }

const hmac = (key: crypto.BinaryLike, text: string): Buffer => crypto.createHmac('sha256', key).update(text).digest()
const rfc3986 = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

export function parseAuth (authorization: string): SigV4Auth | undefined {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(authorization)
  if (m === null) return undefined
  return { accessKeyId: m[1]!, day: m[2]!, region: m[3]!, service: m[4]!, signedHeaders: m[5]!.split(';'), signature: m[6]! }
}

/** Why the request's signature is not `secret`'s, or undefined when it is. */
export function sigV4Mismatch (req: SignedRequest, secret: string): string | undefined {
  const header = (name: string): string | undefined => {
    const v = req.headers[name]
    return Array.isArray(v) ? v.join(',') : v
  }
  const auth = parseAuth(header('authorization') ?? '')
  if (auth === undefined) return 'no AWS4-HMAC-SHA256 Authorization header'
  const date = header('x-amz-date') ?? ''
  if (!date.startsWith(auth.day)) return `x-amz-date ${date} is not of the credential's day ${auth.day}`
  for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
    if (!auth.signedHeaders.includes(required)) return `${required} is not signed`
  }
  for (const name of Object.keys(req.headers)) {
    if ((name.startsWith('x-amz-') || name === 'range' || name === 'if-match') && !auth.signedHeaders.includes(name)) return `${name} is sent but not signed`
  }
  const q = req.url.indexOf('?')
  // S3's canonical path: each segment as sent, decoded and encoded again (a character the client left unencoded that
  // should be is a mismatch, as at AWS)
  const path = (q < 0 ? req.url : req.url.slice(0, q)).split('/').map((s) => rfc3986(decodeURIComponent(s))).join('/')
  const query = q < 0 ? '' : req.url.slice(q + 1)
  const canonicalQuery = query.split('&').filter(Boolean).map((p) => {
    const eq = p.indexOf('=')
    const [k, v] = eq < 0 ? [p, ''] : [p.slice(0, eq), p.slice(eq + 1)]
    return [rfc3986(decodeURIComponent(k)), rfc3986(decodeURIComponent(v.replace(/\+/g, '%20')))]
  }).sort(([a, x], [b, y]) => a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0).map(([k, v]) => `${k}=${v}`).join('&')
  const canonicalHeaders = auth.signedHeaders.map((h) => `${h}:${(header(h) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('')
  const canonical = [req.method, path, canonicalQuery, canonicalHeaders, auth.signedHeaders.join(';'), header('x-amz-content-sha256') ?? ''].join('\n')
  const scope = `${auth.day}/${auth.region}/${auth.service}/aws4_request`
  const toSign = ['AWS4-HMAC-SHA256', date, scope, crypto.createHash('sha256').update(canonical).digest('hex')].join('\n')
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, auth.day), auth.region), auth.service), 'aws4_request')
  const expected = hmac(key, toSign).toString('hex')
  return expected === auth.signature ? undefined : `the signature does not match (canonical request:\n${canonical})`
}
