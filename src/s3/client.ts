/**
 * One configured S3 client for AWS S3 or an S3-compatible store (MinIO, Ceph RGW, R2, Wasabi, B2, GCS…), set up the
 * way the AWS CLI would be from the same environment, plus what the SDK leaves out: proxies, AWS_CA_BUNDLE, timeouts
 * that end a stalled transfer, and defaults that suit stores other than AWS.
 */
import fs from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { S3Client } from '@aws-sdk/client-s3'
import { NODE_REQUEST_CHECKSUM_CALCULATION_CONFIG_OPTIONS, NODE_RESPONSE_CHECKSUM_VALIDATION_CONFIG_OPTIONS } from '@aws-sdk/checksums/flexible-checksums'
import { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS, type LoadedConfigSelectors, type LocalConfigOptions } from '@smithy/core/config'
import { NODE_MAX_ATTEMPT_CONFIG_OPTIONS } from '@smithy/core/retry'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { PackerError } from '../errors.js'
import { proxiedAgent, proxyFor } from '../net/env-proxy.js'

export interface S3Options {
  /** `--s3-endpoint`: the store's URL; else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS S3. */
  endpoint?: string
  /** `--s3-path-style`: address buckets as ENDPOINT/BUCKET, not BUCKET.ENDPOINT; by default only for an IP address or localhost. */
  pathStyle?: boolean
  /** Tries per request, retries included; else AWS_MAX_ATTEMPTS or the profile's max_attempts, else 5. */
  maxAttempts?: number
  /** How long a connection may take to open, in ms (10 s). */
  connectTimeoutMs?: number
  /** How long a request may go without a byte either way before it is aborted, in ms (60 s): a stall never hangs. */
  idleTimeoutMs?: number
  /** Connections open at once to the store (50). */
  maxSockets?: number
}

/** A client and what messages about it need. */
export interface S3Store {
  readonly client: S3Client
  /** The store as messages name it: its URL, or "AWS S3". */
  readonly endpoint: string
  /** The endpoint configured (option or environment), whole; undefined for AWS S3. */
  readonly endpointUrl?: string
  /** Whether buckets are addressed as ENDPOINT/BUCKET. */
  readonly pathStyle: boolean
  /** The proxy requests go through (scheme, host and port only: never its credentials). */
  readonly proxy?: string
  readonly maxAttempts: number
  readonly connectTimeoutMs: number
  readonly idleTimeoutMs: number
  /** AWS_CA_BUNDLE's certificates, which replace Node's own, when set. */
  readonly ca?: Buffer
}

const DEFAULT_MAX_ATTEMPTS = 5

/**
 * Credentials come from the SDK's default chain only (environment, AWS_PROFILE and the config files, SSO, web identity,
 * container and instance metadata), never from packer's command line, where other users could read them.
 */
export async function s3Client (opts: S3Options = {}): Promise<S3Store> {
  // The SDK warns on stderr that its releases after January 2027 will need Node 22: packer pins its release, and the
  // warning (several lines) would break the one line packer prints per problem.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const endpoint = configuredEndpoint(opts.endpoint)
  // AWS S3 answers a bucket in another region with a redirect the client follows; a custom endpoint ignores the region
  const region = await setting(NODE_REGION_CONFIG_OPTIONS, 'us-east-1', NODE_REGION_CONFIG_FILE_OPTIONS)
  const maxAttempts = opts.maxAttempts ?? await setting(NODE_MAX_ATTEMPT_CONFIG_OPTIONS, DEFAULT_MAX_ATTEMPTS)
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
    throw new PackerError('USAGE', `${maxAttempts} attempts per request: give at least 1 (AWS_MAX_ATTEMPTS or the profile's max_attempts)`)
  }
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60_000
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000
  const target = endpoint ?? new URL(`https://s3.${region}.amazonaws.com`)
  const ca = await caBundle()
  const agentOptions = { keepAlive: true, maxSockets: opts.maxSockets ?? 50, ca }
  const agent = proxiedAgent(target, agentOptions)
  // Agents made here, never options for the SDK to make its own: it replaces an agent it made with a bare one for
  // requests that carry Expect: 100-continue, which would lose the CA bundle and the proxy (see expectContinueHeader).
  const requestHandler = new NodeHttpHandler({
    connectionTimeout: connectTimeoutMs,
    // the socket's idle timeout covers the wait for the first byte and every gap inside a body, both ways;
    // requestTimeout would bound a whole (maybe long) upload, and only warns unless throwOnRequestTimeout is set
    socketTimeout: idleTimeoutMs,
    httpAgent: target.protocol === 'http:' ? agent : new http.Agent(agentOptions),
    httpsAgent: target.protocol === 'https:' ? agent as https.Agent : new https.Agent(agentOptions),
  })
  const pathStyle = endpoint !== undefined && (opts.pathStyle ?? (net.isIP(endpoint.hostname.replace(/^\[|\]$/g, '')) !== 0 || endpoint.hostname === 'localhost'))
  const client = new S3Client({
    region,
    maxAttempts,
    requestHandler,
    // with agents it did not make, the SDK sends the body without waiting for 100 Continue anyway; the header itself
    // trips some proxies and stores (why Hadoop's S3A and the AWS Java SDK let it be turned off)
    expectContinueHeader: false,
    ...(endpoint === undefined
      ? { followRegionRedirects: true }
      : {
          endpoint: endpoint.href,
          forcePathStyle: pathStyle,
          // the SDK's default (a CRC32 on every upload, checked on every download, sent as aws-chunked trailers) is
          // AWS's; other stores reject or mishandle it. The environment or profile may still ask for it.
          requestChecksumCalculation: await setting(NODE_REQUEST_CHECKSUM_CALCULATION_CONFIG_OPTIONS, 'WHEN_REQUIRED'),
          responseChecksumValidation: await setting(NODE_RESPONSE_CHECKSUM_VALIDATION_CONFIG_OPTIONS, 'WHEN_REQUIRED'),
        }),
  })
  return {
    client,
    endpoint: endpoint === undefined ? 'AWS S3' : endpoint.origin,
    endpointUrl: endpoint?.href,
    pathStyle,
    proxy: proxyFor(target)?.origin,
    maxAttempts,
    connectTimeoutMs,
    idleTimeoutMs,
    ca,
  }
}

/** The endpoint URL given by the option or the environment (as the AWS CLI reads it), or undefined for AWS S3. */
function configuredEndpoint (option: string | undefined): URL | undefined {
  const env = process.env
  const [name, value] = option !== undefined
    ? ['--s3-endpoint', option]
    : env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true'
      ? []
      : [['AWS_ENDPOINT_URL_S3', env.AWS_ENDPOINT_URL_S3], ['AWS_ENDPOINT_URL', env.AWS_ENDPOINT_URL]].find(([, v]) => (v ?? '') !== '') ?? []
  if (name === undefined || value === undefined) return undefined
  let url: URL | undefined
  try { url = new URL(value) } catch {}
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new PackerError('USAGE', `${name} ${JSON.stringify(value)} is not an http(s) URL; give the store's address, e.g. https://s3.example.com or http://127.0.0.1:9000`, { subject: name })
  }
  return url
}

/** A setting from the environment or the AWS profile, read as the SDK reads it (a value it cannot parse is passed
 * over), else `fallback`. */
async function setting<T> (selectors: Omit<LoadedConfigSelectors<T>, 'default'>, fallback: T, configuration?: LocalConfigOptions): Promise<T> {
  return await loadConfig({ ...selectors, default: fallback }, configuration)()
}

/** The CA certificates AWS_CA_BUNDLE (or the profile's ca_bundle) names: they replace Node's own, as in the AWS CLI. */
async function caBundle (): Promise<Buffer | undefined> {
  const file = await setting<string | undefined>({
    environmentVariableSelector: (env) => env.AWS_CA_BUNDLE === '' ? undefined : env.AWS_CA_BUNDLE,
    configFileSelector: (profile) => profile.ca_bundle,
  }, undefined)
  if (file === undefined) return undefined
  try {
    return await fs.readFile(file)
  } catch (err) {
    throw new PackerError('USAGE', `AWS_CA_BUNDLE ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)}); point it at a PEM file of CA certificates, or unset it`, { subject: file, cause: err })
  }
}
