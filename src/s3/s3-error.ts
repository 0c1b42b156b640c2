import { PackerError } from '../errors.js'
import type { S3Store } from './client.js'

/** What a failed S3 request concerns: a bucket, and the key when there is one. */
export interface S3Subject { bucket: string, key?: string }

const TLS_TRUST_CODES = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT'])
const THROTTLING = new Set(['SlowDown', 'TooManyRequests', 'TooManyRequestsException', 'RequestLimitExceeded', 'Throttling', 'ThrottlingException'])

/**
 * The one-line error for a failed S3 request (after the SDK's retries): what failed, on which bucket or object at
 * which store, and what to do. SDK service errors carry the S3 error code as their name and the HTTP status in
 * $metadata; network errors carry Node's errno code. `attempts` counts tries the SDK did not (a body read again).
 */
export function s3Error (store: S3Store, err: unknown, where: S3Subject, attempts?: number): PackerError {
  if (err instanceof PackerError) return err
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as {
    name?: string, code?: string, message?: string, $metadata?: { httpStatusCode?: number, attempts?: number }
  }
  const name = e.name ?? 'Error'
  const status = e.$metadata?.httpStatusCode
  const object = where.key === undefined ? `s3://${where.bucket}` : `s3://${where.bucket}/${where.key}`
  const at = store.proxy === undefined ? store.endpoint : `${store.endpoint} (through the proxy ${store.proxy})`
  const tried = attempts ?? e.$metadata?.attempts ?? 1
  const tries = tried > 1 ? ` after ${tried} attempts` : ''
  const endpointHint = store.proxy === undefined ? '--s3-endpoint or AWS_ENDPOINT_URL_S3' : '--s3-endpoint, HTTPS_PROXY and NO_PROXY'
  const fail = (message: string, code: 'REMOTE' | 'SOURCE' = 'REMOTE'): PackerError => new PackerError(code, message, { subject: object, cause: err })

  if (name === 'CredentialsProviderError') {
    return fail(`no AWS credentials to use for ${object} (${e.message ?? name}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where a role provides them`)
  }
  if (name === 'NoSuchBucket') return fail(`bucket ${where.bucket} does not exist at ${at}: check the bucket name and the endpoint (${endpointHint})`)
  if (name === 'NoSuchKey') return fail(`${object} does not exist at ${at}`)
  // HEAD answers have no body, so no error code: a 404 there may mean the object or the bucket
  if (status === 404 && name === 'NotFound') return fail(`${object} does not exist at ${at} (nor, maybe, its bucket)`)
  if (name === 'InvalidAccessKeyId') return fail(`${at} does not know the access key ID in use (for ${object}): check AWS_ACCESS_KEY_ID or AWS_PROFILE`)
  if (name === 'SignatureDoesNotMatch') return fail(`${at} rejected the request signature (for ${object}): check the secret key (AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`)
  if (name === 'ExpiredToken' || name === 'InvalidToken' || name === 'TokenRefreshRequired') {
    return fail(`${at} refused the session token (${name}, for ${object}): renew the credentials (AWS_SESSION_TOKEN, or aws sso login)`)
  }
  if (name === 'AccessDenied' || status === 403) {
    return fail(`access denied to ${object} at ${at}: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may use this bucket`)
  }
  if (name === 'PreconditionFailed' || status === 412) {
    return fail(`${object} changed at ${at} while packer was reading it (its ETag no longer matches); rerun when it is stable`, 'SOURCE')
  }
  if (THROTTLING.has(name) || status === 429 || status === 503) {
    return fail(`${at} is refusing requests as too many (${name})${tries}, on ${object}: lower the parallelism, or try again later`)
  }
  if (name === 'NotImplemented' || status === 501) return fail(`${at} does not implement this request (${e.message ?? name}), on ${object}`)
  if (status !== undefined && status >= 500) return fail(`${at} failed${tries} with HTTP ${status} (${name}), on ${object}: try again later`)
  if (name === 'TimeoutError' || e.code === 'ETIMEDOUT') {
    // the SDK's words for a connection not made in time, and packer's HTTP client's
    return /establish a connection|^no connection within/.test(e.message ?? '')
      ? fail(`cannot connect to ${at}${tries} (timed out), for ${object}: check the endpoint (${endpointHint}) and the network`)
      : fail(`${at} sent nothing for ${store.idleTimeoutMs / 1000} s${tries} (reading or writing ${object}): check the network; try again later`)
  }
  if (e.code !== undefined && TLS_TRUST_CODES.has(e.code)) {
    return fail(`cannot trust the TLS certificate of ${at} (${e.code}): if the store's certificate comes from a private CA, set AWS_CA_BUNDLE to that CA's PEM file`)
  }
  if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return fail(`the TLS certificate of ${at} is for another host name (${e.code}): check the endpoint (${endpointHint})`)
  if (e.code === 'CERT_HAS_EXPIRED' || e.code === 'CERT_NOT_YET_VALID') return fail(`the TLS certificate of ${at} is not valid now (${e.code}): check this machine's clock, or have the store's certificate renewed`)
  // hpagent's words when the proxy answers CONNECT with anything but 200
  const refused = store.proxy === undefined ? null : /^Bad response: (\d+)$/.exec(e.message ?? '')
  if (refused !== null) return fail(`the proxy ${store.proxy} refused to connect to ${store.endpoint} (HTTP ${refused[1]}): check HTTPS_PROXY (and its credentials) and NO_PROXY`)
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') return fail(`cannot reach ${at}: its host name does not resolve (${e.code}); check the endpoint (${endpointHint})`)
  if (e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH') {
    return fail(`cannot reach ${at} (${e.code})${tries}, for ${object}: check the endpoint (${endpointHint}) and that the store is running`)
  }
  if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return fail(`${at} dropped the connection (${e.code})${tries}, on ${object}: try again later`)
  if (status !== undefined) return fail(`${at} answered HTTP ${status} (${name}: ${e.message ?? ''}), on ${object}`)
  return fail(`S3 request on ${object} at ${at} failed: ${e.code ?? name}: ${e.message ?? ''}`)
}

/** Sends an SDK command (its output typed by the caller); a failure becomes s3Error's one line about `where`. */
export async function sendS3<T> (store: S3Store, command: object, where: S3Subject): Promise<T> {
  try {
    return await (store.client.send as (c: object) => Promise<T>).call(store.client, command)
  } catch (err) {
    throw s3Error(store, err, where)
  }
}
