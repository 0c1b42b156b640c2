/**
 * Temporary credentials from the SDK's default chain, each source alone with nothing else to fall back on: web
 * identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, as EKS IRSA sets them) exchanged at a fake STS, EC2
 * instance metadata (IMDSv2) from a fake IMDS, and an IAM Identity Center (SSO) profile whose cached token is
 * exchanged at a fake SSO portal; all on 127.0.0.1. Each pack from s3:// into s3:// (and the unpack of that set) must
 * sign every request, the SDK's and packer's own ranged GETs alike, with the temporary key (the server checks each
 * signature with the temporary secret) and send the session token in x-amz-security-token.
 *
 * No other credentials anywhere: no AWS_ACCESS_KEY_ID or AWS_PROFILE from this machine, empty config and credentials
 * files, an empty HOME. Proxy variables name a listener that counts connections: the credential services and the
 * store are all loopback, so none may go through it (node:http, which the SDK's IMDS and SSO clients use, reads no
 * proxy variables on Node 20; STS goes through packer's own agents, which never proxy loopback).
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, describeTree, packerOk, tmpDir } from '../helpers.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { parseAuth } from '../servers/sigv4-check.js'
import { TEST_ENV } from './s3-env.js'

const BIG = bytes(2 * 1024 * 1024 + 17, 7)

interface Seen { method: string, url: string, headers: http.IncomingHttpHeaders, body: string }
interface Fake { url: string, seen: Seen[], stop: () => Promise<void> }
interface Answer { status: number, type?: string, body: string }

/** A plain HTTP server on 127.0.0.1 that records every request and answers it with `answer`. */
async function startFake (answer: (req: Seen) => Answer): Promise<Fake> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d) => { body += d })
    req.on('end', () => {
      const r: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body }
      seen.push(r)
      const a = answer(r)
      res.writeHead(a.status, { 'content-type': a.type ?? 'text/plain', 'content-length': Buffer.byteLength(a.body) })
      res.end(a.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    stop: async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) },
  }
}

/** Temporary credentials as STS, IMDS or the SSO portal hands them out, different for each test. */
function temporary (prefix: string): { keyId: string, secret: string, token: string, expiration: Date } {
  const rand = (n: number): string => crypto.randomBytes(n).toString('hex')
  return { keyId: `ASIA${prefix}${rand(6).toUpperCase()}`, secret: `secret-${rand(16)}`, token: `${prefix}-session-${rand(48)}`, expiration: new Date(Date.now() + 3600_000) }
}

let proxy: net.Server
let proxyUrl: string
let proxied = 0

beforeAll(async () => {
  proxy = net.createServer((socket) => { proxied++; socket.destroy() })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
})
afterAll(async () => { await new Promise((resolve) => proxy?.close(resolve)) })

/** The environment with no credentials at all, and every source of them in the chain unset or empty. */
function bareEnv (): NodeJS.ProcessEnv {
  const aws = tmpDir()
  fs.writeFileSync(path.join(aws, 'config'), '')
  fs.writeFileSync(path.join(aws, 'credentials'), '')
  const home = tmpDir()
  const proxies = Object.fromEntries(['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'].map((n) => [n, proxyUrl]))
  return {
    ...TEST_ENV,
    ...proxies,
    NO_PROXY: undefined,
    no_proxy: undefined,
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
    AWS_DEFAULT_PROFILE: undefined,
    AWS_CONFIG_FILE: path.join(aws, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(aws, 'credentials'),
    HOME: home,
    XDG_STATE_HOME: tmpDir(),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_EC2_METADATA_SERVICE_ENDPOINT: undefined,
    AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: undefined,
    AWS_EC2_METADATA_V1_DISABLED: undefined,
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
    AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
    AWS_CONTAINER_AUTHORIZATION_TOKEN: undefined,
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: undefined,
    AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
    AWS_ROLE_ARN: undefined,
    AWS_ROLE_SESSION_NAME: undefined,
    AWS_ENDPOINT_URL: undefined,
    AWS_ENDPOINT_URL_STS: undefined,
    AWS_ENDPOINT_URL_SSO: undefined,
    AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: undefined,
    AWS_STS_REGIONAL_ENDPOINTS: undefined,
  }
}

/**
 * Packs s3://creds/data into s3://creds/set and unpacks that set with `env`; the bytes come back, and every request
 * the store saw was signed with `keyId` (and, by the server's check, its secret) and carried `token`.
 */
async function packWith (env: NodeJS.ProcessEnv, secret: string, keyId: string, token: string): Promise<void> {
  const s3: S3Server = await startS3({ secret })
  try {
    await s3.bucket('creds')
    await s3.put('creds', 'data/a.txt', 'read with temporary credentials\n')
    await s3.put('creds', 'data/sub/big.bin', BIG)
    await packerOk(['pack', 's3://creds/data', '-o', 's3://creds/set', '--no-encrypt', '--s3-endpoint', s3.endpoint], { env })
    const restored = tmpDir()
    await packerOk(['unpack', 's3://creds/set', '-o', restored, '--s3-endpoint', s3.endpoint], { env })
    expect(fs.readFileSync(path.join(restored, 'a.txt'), 'utf8')).toBe('read with temporary credentials\n')
    expect(fs.readFileSync(path.join(restored, 'sub/big.bin')).equals(BIG)).toBe(true)
    expect([...describeTree(restored).keys()]).toEqual(['a.txt', 'sub', 'sub/big.bin'])

    const seen = s3.signed.map((r) => ({ method: r.method, range: r.headers.range !== undefined, token: r.headers['x-amz-security-token'], auth: parseAuth(r.headers.authorization as string) }))
    // listings, HEADs, uploads (the SDK's signer) and ranged GETs (packer's own client) alike
    for (const kind of ['GET', 'HEAD', 'PUT']) expect(seen.some((r) => r.method === kind), kind).toBe(true)
    expect(seen.some((r) => r.method === 'GET' && r.range), 'a ranged GET').toBe(true)
    for (const r of seen) {
      expect(r.auth?.accessKeyId, `${r.method} key id`).toBe(keyId)
      expect(r.token, `${r.method} x-amz-security-token`).toBe(token)
      // sigV4Mismatch already refuses an x-amz- header sent unsigned; said here too, since the token is the point
      expect(r.auth?.signedHeaders, `${r.method} signed headers`).toContain('x-amz-security-token')
    }
    expect(proxied, 'connections to the proxy').toBe(0)
  } finally {
    await s3.stop()
  }
}

describe('web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, as on EKS with IRSA)', () => {
  it('exchanges the token file at STS (AWS_ENDPOINT_URL_STS) and signs every request with the role\'s temporary credentials', async () => {
    const creds = temporary('WEBID')
    const jwt = `eyJhbGciOiJSUzI1NiJ9.${crypto.randomBytes(24).toString('base64url')}.${crypto.randomBytes(32).toString('base64url')}`
    const roleArn = 'arn:aws:iam::123456789012:role/packer-irsa'
    const sts = await startFake((req) => {
      const params = new URLSearchParams(req.method === 'POST' ? req.body : req.url.replace(/^[^?]*\??/, ''))
      if (params.get('Action') !== 'AssumeRoleWithWebIdentity' || params.get('WebIdentityToken') !== jwt) {
        return { status: 400, type: 'text/xml', body: '<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>not the token</Message></Error><RequestId>r</RequestId></ErrorResponse>' }
      }
      return {
        status: 200,
        type: 'text/xml',
        body: `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:packer:packer</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/packer-irsa/${params.get('RoleSessionName') ?? ''}</Arn><AssumedRoleId>AROAPACKER:${params.get('RoleSessionName') ?? ''}</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${creds.keyId}</AccessKeyId>
      <SecretAccessKey>${creds.secret}</SecretAccessKey>
      <SessionToken>${creds.token}</SessionToken>
      <Expiration>${creds.expiration.toISOString()}</Expiration>
    </Credentials>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000001</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`,
      }
    })
    try {
      const tokenFile = path.join(tmpDir(), 'token')
      fs.writeFileSync(tokenFile, jwt)
      const env = {
        ...bareEnv(),
        AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
        AWS_ROLE_ARN: roleArn,
        AWS_ROLE_SESSION_NAME: 'packer-session',
        AWS_ENDPOINT_URL_STS: sts.url,
      }
      await packWith(env, creds.secret, creds.keyId, creds.token)
      // one exchange per packer process at least, each of the token file's contents for the role, unsigned
      expect(sts.seen.length).toBeGreaterThanOrEqual(2)
      for (const req of sts.seen) {
        const params = new URLSearchParams(req.method === 'POST' ? req.body : req.url.replace(/^[^?]*\??/, ''))
        expect(Object.fromEntries(['Action', 'RoleArn', 'RoleSessionName', 'WebIdentityToken'].map((k) => [k, params.get(k)])))
          .toEqual({ Action: 'AssumeRoleWithWebIdentity', RoleArn: roleArn, RoleSessionName: 'packer-session', WebIdentityToken: jwt })
        expect(req.headers.authorization).toBeUndefined()
      }
    } finally {
      await sts.stop()
    }
  })
})

describe('EC2 instance metadata (IMDSv2)', () => {
  it('takes the instance role\'s credentials from IMDS (AWS_EC2_METADATA_SERVICE_ENDPOINT) with a session token, and signs every request with them', async () => {
    const creds = temporary('IMDS')
    const role = 'packer-instance-role'
    const imdsToken = `imds-${crypto.randomBytes(16).toString('hex')}`
    const base = '/latest/meta-data/iam/security-credentials/'
    const imds = await startFake((req) => {
      if (req.method === 'PUT' && req.url === '/latest/api/token') {
        return req.headers['x-aws-ec2-metadata-token-ttl-seconds'] === undefined ? { status: 400, body: '' } : { status: 200, body: imdsToken }
      }
      // IMDSv2 only, as on an instance with HttpTokens=required: a GET without the session token is refused
      if (req.headers['x-aws-ec2-metadata-token'] !== imdsToken) return { status: 401, body: '' }
      if (req.method === 'GET' && req.url === base) return { status: 200, body: role }
      if (req.method === 'GET' && req.url === base + role) {
        return {
          status: 200,
          type: 'application/json',
          body: JSON.stringify({ Code: 'Success', LastUpdated: new Date().toISOString(), Type: 'AWS-HMAC', AccessKeyId: creds.keyId, SecretAccessKey: creds.secret, Token: creds.token, Expiration: creds.expiration.toISOString() }),
        }
      }
      return { status: 404, body: '' }
    })
    try {
      const env = { ...bareEnv(), AWS_EC2_METADATA_DISABLED: undefined, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url }
      await packWith(env, creds.secret, creds.keyId, creds.token)
      const paths = imds.seen.map((r) => `${r.method} ${r.url}`)
      expect(paths).toContain('PUT /latest/api/token')
      expect(paths).toContain(`GET ${base}`)
      expect(paths).toContain(`GET ${base}${role}`)
      for (const r of imds.seen.filter((r) => r.method === 'GET')) expect(r.headers['x-aws-ec2-metadata-token'], r.url).toBe(imdsToken)
    } finally {
      await imds.stop()
    }
  })
})

describe('IAM Identity Center (SSO) profile', () => {
  it('exchanges the cached SSO token at the portal (AWS_ENDPOINT_URL_SSO) for the role\'s credentials, and signs every request with them', async () => {
    const creds = temporary('SSO')
    const accessToken = `sso-access-${crypto.randomBytes(24).toString('hex')}`
    const portal = await startFake((req) => {
      const url = new URL(req.url, 'http://portal')
      if (req.method !== 'GET' || url.pathname !== '/federation/credentials' || req.headers['x-amz-sso_bearer_token'] !== accessToken ||
        url.searchParams.get('account_id') !== '123456789012' || url.searchParams.get('role_name') !== 'PackerReader') {
        return { status: 401, type: 'application/json', body: JSON.stringify({ message: 'Session token not found or invalid' }) }
      }
      return {
        status: 200,
        type: 'application/json',
        body: JSON.stringify({ roleCredentials: { accessKeyId: creds.keyId, secretAccessKey: creds.secret, sessionToken: creds.token, expiration: creds.expiration.getTime() } }),
      }
    })
    try {
      const env = bareEnv()
      // as `aws configure sso` writes it, and the token cache `aws sso login` leaves (named by the session's SHA-1)
      fs.writeFileSync(env.AWS_CONFIG_FILE as string, [
        '[profile packer-sso]', 'sso_session = packer', 'sso_account_id = 123456789012', 'sso_role_name = PackerReader', '',
        '[sso-session packer]', 'sso_start_url = https://packer-test.awsapps.com/start', 'sso_region = eu-west-1', 'sso_registration_scopes = sso:account:access', '',
      ].join('\n'))
      const cache = path.join(env.HOME as string, '.aws', 'sso', 'cache')
      fs.mkdirSync(cache, { recursive: true })
      fs.writeFileSync(path.join(cache, `${crypto.createHash('sha1').update('packer').digest('hex')}.json`), JSON.stringify({
        startUrl: 'https://packer-test.awsapps.com/start', region: 'eu-west-1', accessToken, expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      }))
      await packWith({ ...env, AWS_PROFILE: 'packer-sso', AWS_ENDPOINT_URL_SSO: portal.url }, creds.secret, creds.keyId, creds.token)
      expect(portal.seen.length).toBeGreaterThanOrEqual(2)
      for (const r of portal.seen) expect(r.headers['x-amz-sso_bearer_token']).toBe(accessToken)
    } finally {
      await portal.stop()
    }
  })
})
