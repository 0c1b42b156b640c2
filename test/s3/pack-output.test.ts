/**
 * `packer pack SOURCE -o s3://BUCKET/PREFIX` against a real S3 server (fauxqs, 127.0.0.1): CARs uploaded in parts and
 * copied to their `<pieceCid>.car` names, the set equal to the one written to disk, a crash's upload aborted by the
 * rerun, the lock object.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ListObjectsV2Command, GetObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { s3Client, type S3Store } from '../../src/s3/client.js'
import { CLI, bytes, describeTree, oneLine, packer, packerOk, tmpDir, type Run } from '../helpers.js'
import { makeRoundTripTree } from '../fixtures.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { freePort } from '../servers/ports.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

const MiB = 1024 * 1024

let s3: S3Server
let store: S3Store
let proxy: FaultProxy
let restoreEnv: () => void
let src: string
let reference: string
/** The same pack with 10 MiB bins: three CARs, the first two uploaded in parts (8 MiB, then the rest), the last put whole. */
let reference10: string
let state: string
const env = (): NodeJS.ProcessEnv => ({ ...TEST_ENV, ...NO_PROXY_ENV, XDG_STATE_HOME: state })
// 20 MiB bins: the first CAR is three parts of 8 MiB (uploaded in parts, then copied), the last one part (put whole)
const PACK = ['--no-encrypt', '--bin-size', '20MiB']
const PACK10 = ['--no-encrypt', '--bin-size', '10MiB']

/** packer started as a process the test can kill; `done` is how it ended. */
function start (args: string[], env: NodeJS.ProcessEnv): { pid: number, kill: () => void, done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  return { pid: child.pid!, kill: () => { child.kill('SIGKILL') }, done }
}

async function until (what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!await cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

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
  reference10 = tmpDir()
  await packerOk(['pack', src, '-o', reference10, ...PACK10], { env: env() })
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

  it('no flexible checksums for a store that is not AWS: no x-amz-checksum-* header, aws-chunked body or trailer on any upload; no GET asks for validation', async () => {
    // the SDK's own default (WHEN_SUPPORTED) would send a CRC32 with every upload; nothing in the environment asks for it
    const plain = { ...env(), AWS_REQUEST_CHECKSUM_CALCULATION: undefined, AWS_RESPONSE_CHECKSUM_VALIDATION: undefined }
    proxy.clear()
    onTestFinished(() => { proxy.clear() }) // the next test reads what the proxy saw from its own first run
    await packerOk(['pack', src, '-o', 's3://out/plain', ...PACK10, '--s3-endpoint', proxy.url], { env: plain })
    const uploads = proxy.requests.filter((q) => q.method === 'PUT' || q.method === 'POST')
    const parts = uploads.filter((q) => q.method === 'PUT' && /[?&]partNumber=/.test(q.path))
    const puts = uploads.filter((q) => q.method === 'PUT' && !q.path.includes('uploadId='))
    // the CARs uploaded in parts (two of them, 8 MiB and the rest), the last CAR and the manifest put whole
    expect(parts.length).toBeGreaterThanOrEqual(4)
    expect(puts.some((q) => q.path.split('?')[0] === '/out/plain/manifest.json')).toBe(true)
    const restored = tmpDir()
    await packerOk(['verify', 's3://out/plain', '--s3-endpoint', proxy.url], { env: plain })
    await packerOk(['unpack', 's3://out/plain', '-o', restored, '--s3-endpoint', proxy.url], { env: plain })
    expect(describeTree(restored, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
    const gets = proxy.requests.filter((q) => q.method === 'GET' && !q.path.includes('list-type=2'))
    expect(gets.length).toBeGreaterThan(0)
    const flexible = (q: { headers: Record<string, unknown> }): string[] => Object.entries(q.headers).flatMap(([name, value]) =>
      name.startsWith('x-amz-checksum-') || name === 'x-amz-sdk-checksum-algorithm' || name === 'x-amz-trailer' || name === 'x-amz-decoded-content-length' ||
      (name === 'content-encoding' && String(value).includes('aws-chunked')) || (name === 'x-amz-content-sha256' && /STREAMING|TRAILER/.test(String(value)))
        ? [`${name}: ${String(value)}`]
        : [])
    for (const q of proxy.requests) expect(flexible(q), `${q.method} ${q.path}`).toEqual([])
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

  it('killed while the second CAR uploads, the first one complete: the rerun keeps that CAR, aborts the open upload, ends with the same set', async () => {
    // The second CAR's first part reaches the store but its answer never comes: the pack is then killed (SIGKILL),
    // the first CAR complete under its <pieceCid>.car name and journaled (CARs are closed one after the other)
    proxy.clear()
    const secondPart = /^\/out\/resume\/\.partial-1\.car\?.*partNumber=1(&|$)/
    proxy.fault({ match: { method: 'PUT', path: secondPart }, times: 1, fault: { kind: 'stall', afterBytes: 0 } })
    const args = ['pack', src, '-o', 's3://out/resume', ...PACK10, '--s3-endpoint', proxy.url]
    const killed = start(args, env())
    await until('the second CAR\'s first part', () => proxy.requests.some((q) => q.method === 'PUT' && secondPart.test(q.path)))
    killed.kill()
    const k = await killed.done
    expect(k.code, k.stderr).toBeNull() // killed, not ended
    const uploadId = new URL(proxy.requests.find((q) => q.method === 'PUT' && secondPart.test(q.path))!.path, 'http://s3').searchParams.get('uploadId')!
    const cars = names(reference10).filter((n) => n.endsWith('.car'))
    expect(cars).toHaveLength(3)
    const left = await keys('resume/')
    // the first CAR complete, the rest not there; the lock left behind (its process is gone)
    const first = left.filter((n) => !n.startsWith('.'))
    expect(first).toHaveLength(1)
    expect(cars).toContain(first[0])
    expect(left.filter((n) => n.startsWith('.packer.lock.'))).toHaveLength(1)
    const firstBytes = await store.client.send(new GetObjectCommand({ Bucket: 'out', Key: `resume/${first[0]!}` }))
    expect(Buffer.from(await firstBytes.Body!.transformToByteArray()).equals(fs.readFileSync(path.join(reference10, first[0]!)))).toBe(true)

    proxy.clear()
    const rerun = await packerOk(args, { env: env() })
    expect(rerun.stdout).toMatch(/resumed: 1 CAR\(s\) and \d+ files were already complete and kept/)
    // the killed upload aborted (the store no longer takes parts for it), the kept CAR neither written nor copied again
    expect(proxy.requests.filter((q) => q.method === 'DELETE' && q.path.includes(`uploadId=${encodeURIComponent(uploadId)}`))).toHaveLength(1)
    await expect(store.client.send(new UploadPartCommand({ Bucket: 'out', Key: 'resume/.partial-1.car', UploadId: uploadId, PartNumber: 2, Body: 'x' })))
      .rejects.toMatchObject({ name: 'NoSuchUpload' })
    expect(proxy.requests.filter((q) => q.method === 'PUT' && q.path.startsWith(`/out/resume/${first[0]!}`))).toEqual([])
    expect(await keys('resume/')).toEqual(names(reference10))
    const got = await download('resume/')
    for (const n of names(reference10)) expect(fs.readFileSync(path.join(got, n)).equals(fs.readFileSync(path.join(reference10, n))), n).toBe(true)
  }, 120_000)

  it('another pack\'s lock object: refused in one line naming it, exit 1', async () => {
    await s3.put('out', 'locked/.packer.lock.otherhost_4242_0badcafe', '{}\n')
    const r = await packer(['pack', src, '-o', 's3://out/locked/', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/another packer \(pid 4242 on otherhost\) is writing s3:\/\/out\/locked\//)
    expect(await keys('locked/')).toEqual(['.packer.lock.otherhost_4242_0badcafe'])
  })

  it('a missing bucket and an unreachable endpoint: one line naming it, exit 1, nothing written', async () => {
    const missing = await packer(['pack', src, '-o', 's3://no-such-bucket/set', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(missing.code).toBe(1)
    expect(oneLine(missing.stderr)).toBe(`packer: bucket no-such-bucket does not exist at ${s3.endpoint}: check the bucket name and the endpoint (--s3-endpoint or AWS_ENDPOINT_URL_S3)`)
    expect(missing.stdout).toBe('')
    // nothing made it: the bucket is still missing (no set, no lock, no upload)
    await expect(store.client.send(new ListObjectsV2Command({ Bucket: 'no-such-bucket' }))).rejects.toMatchObject({ name: 'NoSuchBucket' })

    const endpoint = `http://127.0.0.1:${await freePort()}`
    const unreachable = await packer(['pack', src, '-o', 's3://out/unreachable', ...PACK, '--s3-endpoint', endpoint, '--s3-timeout', '2'], { env: { ...env(), AWS_MAX_ATTEMPTS: '2' } })
    expect(unreachable.code).toBe(1)
    expect(oneLine(unreachable.stderr)).toBe(`packer: cannot reach ${endpoint} (ECONNREFUSED) after 2 attempts, for s3://out/unreachable/: check the endpoint (--s3-endpoint or AWS_ENDPOINT_URL_S3) and that the store is running`)
    expect(unreachable.stdout).toBe('')
    expect(await keys('unreachable/')).toEqual([])
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

describe('the lock object (FORMAT.md §9)', () => {
  let tiny: string
  let tinyReference: string
  const host = os.hostname().replace(/[^A-Za-z0-9.-]/g, '-')
  beforeAll(async () => {
    tiny = tmpDir()
    fs.writeFileSync(path.join(tiny, 'a.txt'), 'a small tree: one CAR, put whole\n')
    fs.writeFileSync(path.join(tiny, 'b.bin'), bytes(300_000, 9))
    tinyReference = tmpDir()
    await packerOk(['pack', tiny, '-o', tinyReference, ...PACK], { env: env() })
  })

  /** The set under `prefix` is the reference, object for object, byte for byte, and no lock is left. */
  async function expectComplete (prefix: string): Promise<void> {
    expect(await keys(prefix)).toEqual(names(tinyReference))
    const got = await download(prefix)
    for (const n of names(tinyReference)) expect(fs.readFileSync(path.join(got, n)).equals(fs.readFileSync(path.join(tinyReference, n))), n).toBe(true)
  }

  it('a stale lock is taken over: one left by a process of this host that is gone, one not rewritten for the stale age', async () => {
    const gone = await new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
      child.on('error', reject)
      child.on('exit', () => resolve(child.pid!))
    })
    await s3.put('out', `dead/.packer.lock.${host}_${gone}_0badcafe`, '{}\n')
    const r = await packer(['pack', tiny, '-o', 's3://out/dead', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
    expect(r.code, r.stderr).toBe(0)
    await expectComplete('dead/')

    // another host's lock, written 2.5 s ago, with locks stale after 1 s (PACKER_TEST_S3_LOCK_STALE_MS)
    await s3.put('out', 'old/.packer.lock.otherhost_4242_0badcafe', '{}\n')
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const old = await packer(['pack', tiny, '-o', 's3://out/old', ...PACK, '--s3-endpoint', s3.endpoint], { env: { ...env(), PACKER_TEST_S3_LOCK_STALE_MS: '1000' } })
    expect(old.code, old.stderr).toBe(0)
    await expectComplete('old/')
  })

  it('a second pack into a prefix while the first holds its lock: refused in one line naming the first, exit 1; the first completes', async () => {
    // the first pack's CAR upload is held at the proxy until the second has been refused: it holds its lock throughout
    let release = (): void => {}
    const held = new Promise<void>((resolve) => { release = resolve })
    proxy.clear()
    const carPut = /^\/out\/race\/[^.]/
    proxy.fault({ match: { method: 'PUT', path: carPut }, times: 1, fault: { kind: 'hold', until: held } })
    const first = start(['pack', tiny, '-o', 's3://out/race', ...PACK, '--s3-endpoint', proxy.url], env())
    try {
      await until('the first pack\'s CAR upload', () => proxy.requests.some((q) => q.method === 'PUT' && carPut.test(q.path)))
      const second = await packer(['pack', tiny, '-o', 's3://out/race', ...PACK, '--s3-endpoint', s3.endpoint], { env: env() })
      expect(second.code).toBe(1)
      expect(oneLine(second.stderr)).toMatch(new RegExp(`^packer: another packer \\(pid ${first.pid} on ${host.replace(/\./g, '\\.')}\\) is writing s3://out/race/ \\(its lock s3://out/race/\\.packer\\.lock\\.${host.replace(/\./g, '\\.')}_${first.pid}_[0-9a-f]+ was written \\d+ s ago\\)`))
      // the refused pack removed its own lock: only the first one's is there
      expect((await keys('race/')).filter((n) => n.startsWith('.packer.lock.'))).toEqual([expect.stringMatching(new RegExp(`_${first.pid}_`))])
    } finally {
      release()
    }
    const r = await first.done
    expect(r.code, r.stderr).toBe(0)
    await expectComplete('race/')
  })

  it('two packs started at once into one prefix, each writing its lock before either lists: exactly one proceeds and writes the whole set, the other is refused in one line', async () => {
    // the worst case for the lock: both packs' first listings of the locks are held until both locks are written
    let release = (): void => {}
    const held = new Promise<void>((resolve) => { release = resolve })
    proxy.clear()
    const lockPut = (q: { method: string, path: string }): boolean => q.method === 'PUT' && q.path.startsWith('/out/both/.packer.lock.')
    proxy.fault({ match: { method: 'GET', path: /prefix=both%2F\.packer\.lock\./ }, times: 2, fault: { kind: 'hold', until: held } })
    // and the CAR of a pack that proceeds is held until the other has ended: the two overlap throughout
    let releaseCar = (): void => {}
    const carHeld = new Promise<void>((resolve) => { releaseCar = resolve })
    proxy.fault({ match: { method: 'PUT', path: /^\/out\/both\/[^.]/ }, times: 1, fault: { kind: 'hold', until: carHeld } })
    const args = ['pack', tiny, '-o', 's3://out/both', ...PACK, '--s3-endpoint', proxy.url]
    const a = start(args, env())
    const b = start(args, env())
    try {
      await until('both locks written', () => proxy.requests.filter(lockPut).length === 2)
      release()
      await Promise.race([a.done, b.done])
    } finally {
      release()
      releaseCar()
    }
    const runs = await Promise.all([a.done, b.done])
    expect(runs.filter((r) => r.code === 0).length, runs.map((r) => r.stderr).join('\n')).toBe(1)
    const refused = runs.find((r) => r.code !== 0)!
    const winner = runs[0] === refused ? b : a
    expect(refused.code).toBe(1)
    expect(oneLine(refused.stderr)).toMatch(new RegExp(`^packer: another packer \\(pid ${winner.pid} on ${host.replace(/\./g, '\\.')}\\) is writing s3://out/both/ `))
    await expectComplete('both/')
  })

})
