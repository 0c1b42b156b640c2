/**
 * `packer pack SOURCE -o s3://BUCKET/PREFIX` against a real S3 server (fauxqs, 127.0.0.1): CARs uploaded in parts and
 * copied to their `<pieceCid>.car` names, the set equal to the one written to disk, a crash's upload aborted by the
 * rerun, the lock object.
 */
import fs from 'node:fs'
import path from 'node:path'
import { ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { s3Client, type S3Store } from '../../src/s3/client.js'
import { bytes, describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { makeRoundTripTree } from '../fixtures.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

const MiB = 1024 * 1024

let s3: S3Server
let store: S3Store
let proxy: FaultProxy
let restoreEnv: () => void
let src: string
let reference: string
let state: string
const env = (): NodeJS.ProcessEnv => ({ ...TEST_ENV, ...NO_PROXY_ENV, XDG_STATE_HOME: state })
// 20 MiB bins: the first CAR is three parts of 8 MiB (uploaded in parts, then copied), the last one part (put whole)
const PACK = ['--no-encrypt', '--bin-size', '20MiB']

beforeAll(async () => {
  restoreEnv = setEnv({ ...TEST_ENV, ...NO_PROXY_ENV })
  s3 = await startS3()
  store = await s3Client({ endpoint: s3.endpoint })
  proxy = await startFaultProxy(s3.endpoint)
  await s3.bucket('out')
  state = tmpDir()
  src = tmpDir()
  await makeRoundTripTree(src, { big: 24 * MiB + 5 })
  reference = tmpDir()
  await packerOk(['pack', src, '-o', reference, ...PACK], { env: env() })
})
afterAll(async () => {
  store?.client.destroy()
  await proxy?.stop()
  await s3?.stop()
  restoreEnv?.()
})

/** Every key under a prefix (names after it). */
async function keys (prefix: string): Promise<string[]> {
  const r = await store.client.send(new ListObjectsV2Command({ Bucket: 'out', Prefix: prefix }))
  return (r.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort()
}

/** The objects under a prefix, downloaded into a new directory. */
async function download (prefix: string): Promise<string> {
  const dir = tmpDir()
  for (const name of await keys(prefix)) {
    const r = await store.client.send(new GetObjectCommand({ Bucket: 'out', Key: prefix + name }))
    fs.writeFileSync(path.join(dir, name), await r.Body!.transformToByteArray())
  }
  return dir
}

const names = (dir: string): string[] => fs.readdirSync(dir).sort()

describe('pack -o s3://BUCKET/PREFIX', () => {
  it('writes the set the same pack writes to disk: same objects, same bytes; it unpacks to the tree', async () => {
    await packerOk(['pack', src, '-o', 's3://out/set', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(await keys('set/')).toEqual(names(reference))
    const got = await download('set/')
    for (const n of names(reference)) expect(fs.readFileSync(path.join(got, n)).equals(fs.readFileSync(path.join(reference, n))), n).toBe(true)
    await packerOk(['verify', got], { env: env() })
    const restored = tmpDir()
    await packerOk(['unpack', got, '-o', restored], { env: env() })
    expect(describeTree(restored, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
    // the same command again: nothing to do; a prefix holding a set is refused otherwise
    const again = await packerOk(['pack', src, '-o', 's3://out/set', ...PACK, '--s3-endpoint', s3.endpoint, '--json'], { env: env() })
    expect(again.stdout).toContain('"nothingToDo":true')
  }, 120_000)

  it('killed while a CAR is uploading: the rerun aborts that upload, keeps nothing half-made, and ends with the same set', async () => {
    // killed at the 28th block: the first CAR's first 8 MiB part is sent (most blocks before are small files), its upload open
    // (both runs through the proxy: the journal that names the upload is the output's at that endpoint)
    const killed = await packer(['pack', src, '-o', 's3://out/crash', ...PACK, '--s3-endpoint', proxy.url], { env: { ...env(), PACKER_FAULT: 'block:28' } })
    expect(killed.code).not.toBe(0)
    expect(proxy.requests.some((q) => q.method === 'PUT' && q.path.includes('uploadId=')), killed.stderr).toBe(true)
    expect(await keys('crash/')).not.toContain('manifest.json')
    proxy.clear()
    await packerOk(['pack', src, '-o', 's3://out/crash', ...PACK, '--s3-endpoint', proxy.url], { env: env() })
    expect(proxy.requests.some((q) => q.method === 'DELETE' && q.path.includes('uploadId='))).toBe(true)
    expect(await keys('crash/')).toEqual(names(reference))
    const got = await download('crash/')
    expect(fs.readFileSync(path.join(got, 'manifest.json'), 'utf8')).toBe(fs.readFileSync(path.join(reference, 'manifest.json'), 'utf8'))
  }, 120_000)

  it('another pack\'s lock object: refused in one line naming it, exit 1', async () => {
    await s3.put('out', 'locked/.packer.lock.otherhost_4242_0badcafe', '{}\n')
    const r = await packer(['pack', src, '-o', 's3://out/locked/', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/another packer \(pid 4242 on otherhost\) is writing s3:\/\/out\/locked\//)
    expect(await keys('locked/')).toEqual(['.packer.lock.otherhost_4242_0badcafe'])
  })

  it('a prefix that holds other objects is refused; an output inside the S3 source too', async () => {
    await s3.put('out', 'busy/someone-elses.txt', bytes(10))
    const r = await packer(['pack', src, '-o', 's3://out/busy', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/s3:\/\/out\/busy\/ is not empty \(it holds someone-elses\.txt\)/)
    const nested = await packer(['pack', 's3://out/a', '-o', 's3://out/a/set', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(nested.code).toBe(2) // a usage error
    expect(oneLine(nested.stderr)).toMatch(/overlap/)
  })
})
