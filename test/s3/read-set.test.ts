/**
 * Reading a set that lies in S3 (fauxqs on 127.0.0.1): `ls`, `verify`, `unpack`, `pieces` and `mount` of
 * `s3://BUCKET/PREFIX` give what they give on the same set on disk, whether pack wrote it there (`-o s3://`) or
 * another tool copied a set directory up object by object; a missing set, a deleted CAR object and a damaged one are
 * one line naming the s3:// key (EIO in the mount), never wrong bytes.
 */
import fs from 'node:fs'
import path from 'node:path'
import { CarIndexer } from '@ipld/car/indexer'
import { DeleteObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { s3Client, type S3Store } from '../../src/s3/client.js'
import { openSet } from '../../src/index.js'
import { describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { makeRoundTripTree } from '../fixtures.js'
import { readEach, startMount, treeSums } from '../mount/mount-helpers.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

let s3: S3Server
let store: S3Store
let proxy: FaultProxy
let restoreEnv: () => void
let src: string
let key: string
/** The same tree packed to disk with the same options. */
let local: string
const env = (): NodeJS.ProcessEnv => ({ ...TEST_ENV, ...NO_PROXY_ENV, XDG_STATE_HOME: tmpDir() })
/** Proxy variables and CA bundles as a user behind a proxy has them: the store on 127.0.0.1 is still reached directly. */
const proxiedEnv = (): NodeJS.ProcessEnv => ({
  ...env(),
  HTTPS_PROXY: 'http://127.0.0.1:9',
  HTTP_PROXY: 'http://127.0.0.1:9',
  http_proxy: 'http://127.0.0.1:9',
  AWS_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
  NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
})
// 2 MiB bins: several CARs, each put whole (a CAR smaller than a part is sent in one PutObject)
const PACK = ['--bin-size', '2MiB']
const endpoint = (): string[] => ['--s3-endpoint', s3.endpoint]

const cars = (dir: string): string[] => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).cars.map((c: { file: string }) => c.file)

/** Uploads a set directory under a prefix object by object (as `aws s3 cp --recursive` would), `change` applied. */
async function upload (dir: string, prefix: string, change: (name: string, bytes: Buffer) => Buffer | null = (_, b) => b): Promise<void> {
  for (const name of fs.readdirSync(dir)) {
    const bytes = change(name, fs.readFileSync(path.join(dir, name)))
    if (bytes !== null) await s3.put('sets', `${prefix}/${name}`, bytes)
  }
}

/** The set's files that are regular files in the tree, by path, with their hashes (for mounts and partial unpacks). */
const files = (): Array<[string, string]> => [...describeTree(src)].filter(([, e]) => e.type === 'file').map(([p, e]) => [p, e.sha256!])

beforeAll(async () => {
  restoreEnv = setEnv({ ...TEST_ENV, ...NO_PROXY_ENV })
  s3 = await startS3()
  store = await s3Client({ endpoint: s3.endpoint })
  proxy = await startFaultProxy(s3.endpoint)
  await s3.bucket('sets')
  src = tmpDir()
  await makeRoundTripTree(src)
  key = path.join(tmpDir(), 'key.txt')
  await packerOk(['keygen', '-o', key])
  const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(key, 'utf8'))![0]
  PACK.push('-r', recipient)
  local = path.join(tmpDir(), 'set')
  await packerOk(['pack', src, '-o', local, ...PACK], { env: env() })
  await packerOk(['pack', src, '-o', 's3://sets/packed', ...PACK, ...endpoint()], { env: env() })
  await upload(local, 'copied')
}, 180_000)

afterAll(async () => {
  store?.client.destroy()
  await proxy?.stop()
  await s3?.stop()
  restoreEnv?.()
})

describe('a set in S3 reads as it does on disk', () => {
  it('pack -o s3://, then ls -l, verify, unpack and pieces of s3://BUCKET/PREFIX give what the set on disk gives', async () => {
    const lsLocal = await packerOk(['ls', '-l', '-i', key, local])
    const lsS3 = await packerOk(['ls', '-l', '-i', key, 's3://sets/packed', ...endpoint()], { env: env() })
    expect(lsS3.stdout).toBe(lsLocal.stdout)
    expect(lsS3.stdout).toContain('big/spans-cars.bin')

    const verified = await packerOk(['verify', 's3://sets/packed', ...endpoint()], { env: env() })
    const ok = verified.stdout.split('\n').filter((l) => l.startsWith('OK '))
    expect(ok.length).toBeGreaterThan(2)
    expect(verified.stdout).toContain(`all ${ok.length} CAR(s) verified`)

    const dest = tmpDir()
    await packerOk(['unpack', '-i', key, 's3://sets/packed', '-o', dest, ...endpoint()], { env: env() })
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))

    // pieces: the CARs the manifest in S3 lists, each an object under its own name with the size it says
    const pieces = JSON.parse((await packerOk(['pieces', '--json', 's3://sets/packed', ...endpoint()], { env: env() })).stdout) as Array<{ car_file: string, car_size: number }>
    expect(pieces.length).toBe(ok.length)
    for (const p of pieces) {
      const r = await store.client.send(new GetObjectCommand({ Bucket: 'sets', Key: `packed/${p.car_file}` }))
      expect((await r.Body!.transformToByteArray()).length).toBe(p.car_size)
    }
  }, 120_000)

  it('a set directory copied up object by object reads with proxy variables and CA bundles set; --cars s3:// with a local manifest too', async () => {
    const lsLocal = await packerOk(['ls', '-l', '-i', key, local])
    expect((await packerOk(['ls', '-l', '-i', key, 's3://sets/copied/', ...endpoint()], { env: proxiedEnv() })).stdout).toBe(lsLocal.stdout)
    await packerOk(['verify', 's3://sets/copied', ...endpoint()], { env: proxiedEnv() })

    // the manifest and index on disk, the CARs in S3 (e.g. a set moved to S3, its small files kept)
    const manifestOnly = tmpDir()
    for (const f of ['manifest.json', 'blocks.idx']) fs.copyFileSync(path.join(local, f), path.join(manifestOnly, f))
    const dest = tmpDir()
    await packerOk(['unpack', '-i', key, manifestOnly, '--cars', 's3://sets/copied', '-o', dest, ...endpoint()], { env: proxiedEnv() })
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
  }, 120_000)

  it('the library: openSet(s3://…) reads a file whole and a range of it', async () => {
    const set = await openSet('s3://sets/packed', { identities: [key], s3Endpoint: s3.endpoint })
    try {
      const want = fs.readFileSync(path.join(src, 'big/spans-cars.bin'))
      expect(Buffer.from(await set.readFile('big/spans-cars.bin')).equals(want)).toBe(true)
      expect(Buffer.from(await set.read('big/spans-cars.bin', 3_000_000, 100_000)).equals(want.subarray(3_000_000, 3_100_000))).toBe(true)
    } finally {
      await set.close()
    }
  }, 60_000)

  it('mount s3://BUCKET/PREFIX: every file byte for byte (read from a child process), then unmounted', async () => {
    const mnt = tmpDir()
    const m = await startMount(['-i', key, 's3://sets/packed', mnt, ...endpoint()], mnt, { env: proxiedEnv() })
    try {
      expect(await treeSums(mnt)).toBe(await treeSums(src))
    } finally {
      await m.cleanup()
    }
  }, 120_000)

  it('503 SlowDown on CAR reads, twice: retried, and the files are right', async () => {
    proxy.clear()
    proxy.fault({ match: { path: /\.car(\?|$)/, method: 'GET' }, times: 2, fault: { kind: 'status', status: 503, headers: { 'retry-after': '0' }, body: '<Error><Code>SlowDown</Code></Error>' } })
    try {
      const dest = tmpDir()
      await packerOk(['unpack', '-i', key, 's3://sets/copied', '-o', dest, '--s3-endpoint', proxy.url], { env: env() })
      expect(describeTree(dest)).toEqual(describeTree(src))
      expect(proxy.requests.filter((r) => r.status === 503).length).toBe(2)
    } finally { proxy.clear() }
  }, 120_000)
  it('a store that stalls every CAR read: unpack ends within the timeouts, one line naming the store and the key', async () => {
    proxy.clear()
    proxy.fault({ match: { path: /\.car(\?|$)/, method: 'GET' }, fault: { kind: 'stall', afterBytes: 10 } })
    try {
      const started = Date.now()
      const r = await packer(['unpack', '-i', key, 's3://sets/copied', '-o', tmpDir(), '--s3-endpoint', proxy.url, '--s3-timeout', '1'], { env: { ...env(), AWS_MAX_ATTEMPTS: '2' } })
      expect(r.code).toBe(1)
      expect(oneLine(r.stderr)).toMatch(new RegExp(`^packer: ${proxy.url} sent nothing for 1 s after 2 attempts \\(reading or writing s3://sets/copied/\\S+\\.car\\): check the network; try again later$`))
      expect(Date.now() - started).toBeLessThan(60_000)
      expect(proxy.requests.some((q) => q.status === 'stalled')).toBe(true)
    } finally { proxy.clear() }
  }, 90_000)
})

describe('a set in S3 that is not there, or not whole', () => {
  it('a prefix with no set, and a missing bucket: one line naming them, exit 1', async () => {
    const none = await packer(['ls', '-i', key, 's3://sets/nothing-here', ...endpoint()], { env: env() })
    expect(none.code).toBe(1)
    expect(oneLine(none.stderr)).toBe(`packer: s3://sets/nothing-here/ is not a packer set: s3://sets/nothing-here/manifest.json does not exist at ${s3.endpoint}; give the prefix that pack -o wrote (its manifest is written last: a pack still running, or killed, has none yet)`)
    const bucket = await packer(['verify', 's3://no-such-bucket/set', ...endpoint()], { env: env() })
    expect(bucket.code).toBe(1)
    expect(oneLine(bucket.stderr)).toMatch(/bucket no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+/)
  })

  it('a deleted CAR object: verify says MISSING, unpack fails naming the s3:// key and what to do; the other files are right', async () => {
    const gone = cars(local)[0]! // the first CAR holds file data only (the table, index and directories come last)
    await upload(local, 'deleted')
    await store.client.send(new DeleteObjectCommand({ Bucket: 'sets', Key: `deleted/${gone}` }))

    const v = await packer(['verify', 's3://sets/deleted', ...endpoint()], { env: env() })
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^MISSING +${gone}: not found in s3://sets/deleted/$`, 'm'))
    expect(oneLine(v.stderr)).toMatch(/1 of \d+ CAR\(s\) missing or damaged in s3:\/\/sets\/deleted/)

    const dest = tmpDir()
    const u = await packer(['unpack', '-i', key, 's3://sets/deleted', '-o', dest, ...endpoint()], { env: env() })
    expect(u.code).toBe(1)
    expect(oneLine(u.stderr)).toContain(`s3://sets/deleted/${gone} does not exist at ${s3.endpoint}; upload the CAR there (e.g. aws s3 cp ${gone} s3://sets/deleted/${gone})`)
    expectNoWrongBytes(dest)
  }, 120_000)

  it('mount with a deleted CAR object: its files give EIO, the others read', async () => {
    const mnt = tmpDir()
    const m = await startMount(['-i', key, 's3://sets/deleted', mnt, ...endpoint()], mnt, { env: env() })
    try {
      const read = await readEach(mnt, files())
      expect(read.every((r) => r === 'ok' || r === 'EIO')).toBe(true)
      expect(read).toContain('ok')
      expect(read).toContain('EIO')
      expect(m.stderr()).toMatch(/EIO .*s3:\/\/sets\/deleted\/\S+\.car does not exist/)
    } finally {
      await m.cleanup()
    }
  }, 120_000)

  it('a damaged CAR object: verify says CORRUPT naming it; unpack fails naming the s3:// key, and writes no wrong bytes', async () => {
    const damaged = cars(local)[0]!
    // one bit flipped in the middle of the CAR's largest block (not in a section's head)
    const whole = fs.readFileSync(path.join(local, damaged))
    let largest = { offset: 0, length: 0 }
    for await (const b of await CarIndexer.fromBytes(whole)) if (b.blockLength > largest.length) largest = { offset: b.blockOffset, length: b.blockLength }
    const at = largest.offset + Math.floor(largest.length / 2)
    await upload(local, 'damaged', (name, bytes) => {
      if (name === damaged) bytes[at] ^= 0x01
      return bytes
    })

    const v = await packer(['verify', 's3://sets/damaged', ...endpoint()], { env: env() })
    expect(v.code).toBe(1)
    expect(v.stdout).toMatch(new RegExp(`^CORRUPT +${damaged}: block \\S+ does not match its hash$`, 'm'))
    expect(v.stdout.split('\n').filter((l) => l.startsWith('OK ')).length).toBe(cars(local).length - 1)

    const dest = tmpDir()
    const u = await packer(['unpack', '-i', key, 's3://sets/damaged', '-o', dest, ...endpoint()], { env: env() })
    expect(u.code).toBe(1)
    expect(oneLine(u.stderr)).toMatch(new RegExp(`CAR s3://sets/damaged/${damaged} is damaged: block \\S+ at byte ${largest.offset} does not match its hash; upload a good copy of ${damaged} there again`))
    expectNoWrongBytes(dest)
  }, 120_000)
})

/** Every file unpack left in `dest` is the source's, byte for byte (an unpack that failed may leave some out). */
function expectNoWrongBytes (dest: string): void {
  const want = describeTree(src)
  for (const [p, e] of describeTree(dest)) {
    if (e.type === 'file') expect(e.sha256, p).toBe(want.get(p)?.sha256)
  }
}
