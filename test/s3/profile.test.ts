/**
 * Credentials and region from AWS's shared files, chosen by AWS_PROFILE (no AWS_ACCESS_KEY_ID in the environment),
 * against a server that checks every SigV4 signature with the profile's secret key (fauxqs checks none): a pack from
 * s3:// into s3:// and an unpack of that set, each request signed with that profile's key and its region.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, describeTree, packerOk, tmpDir } from '../helpers.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { parseAuth } from '../servers/sigv4-check.js'
import { NO_PROXY_ENV, TEST_ENV } from './s3-env.js'

const KEY_ID = 'AKIAPACKERPROFILE01'
const SECRET = 'packer-profile-secret'
const REGION = 'eu-north-1'

let s3: S3Server
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  s3 = await startS3({ secret: SECRET })
  const aws = tmpDir()
  // [default] has other keys and another region: signing with them is refused (403), so only the profile's pass
  fs.writeFileSync(path.join(aws, 'credentials'), [
    '[default]', 'aws_access_key_id = AKIADEFAULTWRONG0001', 'aws_secret_access_key = not-the-secret', '',
    '[packer-test]', `aws_access_key_id = ${KEY_ID}`, `aws_secret_access_key = ${SECRET}`, '',
  ].join('\n'))
  fs.writeFileSync(path.join(aws, 'config'), ['[default]', 'region = ap-south-1', '', '[profile packer-test]', `region = ${REGION}`, ''].join('\n'))
  env = {
    ...TEST_ENV,
    ...NO_PROXY_ENV,
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    AWS_PROFILE: 'packer-test',
    AWS_SHARED_CREDENTIALS_FILE: path.join(aws, 'credentials'),
    AWS_CONFIG_FILE: path.join(aws, 'config'),
    XDG_STATE_HOME: tmpDir(),
  }
  await s3.bucket('prof')
  await s3.put('prof', 'data/a.txt', 'from a bucket, read with a profile\n')
  await s3.put('prof', 'data/sub/big.bin', bytes(2 * 1024 * 1024 + 17, 5))
})
afterAll(async () => { await s3?.stop() })

describe('AWS_PROFILE with shared config and credentials files', () => {
  it('pack s3:// into s3://, unpack that set: the bytes come back; every request signed with the profile\'s key, in its region', async () => {
    await packerOk(['pack', 's3://prof/data', '-o', 's3://prof/set', '--no-encrypt', '--s3-endpoint', s3.endpoint], { env })
    const restored = tmpDir()
    await packerOk(['unpack', 's3://prof/set', '-o', restored, '--s3-endpoint', s3.endpoint], { env })
    expect(fs.readFileSync(path.join(restored, 'a.txt'), 'utf8')).toBe('from a bucket, read with a profile\n')
    expect(fs.readFileSync(path.join(restored, 'sub/big.bin')).equals(bytes(2 * 1024 * 1024 + 17, 5))).toBe(true)
    expect([...describeTree(restored).keys()]).toEqual(['a.txt', 'sub', 'sub/big.bin'])

    // listings, HEADs, uploads and copies (the SDK's signer) and ranged GETs (packer's own client) alike
    const seen = s3.signed.map((r) => ({ method: r.method, range: r.headers.range !== undefined, auth: parseAuth(r.headers.authorization as string) }))
    for (const kind of ['GET', 'HEAD', 'PUT', 'DELETE']) expect(seen.some((r) => r.method === kind), kind).toBe(true)
    expect(seen.some((r) => r.method === 'GET' && r.range)).toBe(true)
    for (const r of seen) expect(r.auth).toMatchObject({ accessKeyId: KEY_ID, region: REGION, service: 's3' })
  })
})
