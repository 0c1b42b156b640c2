/**
 * `packer pack s3://BUCKET/PREFIX` and `packer plan s3://…` against a real S3 server (fauxqs, 127.0.0.1): the set
 * from a bucket equals the set from the same tree on disk, byte for byte; bad keys, pagination, an object replaced
 * while read, faults through a proxy, failures in one line, and a resumed pack.
 */
import fs from 'node:fs'
import path from 'node:path'
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { s3Client } from '../../src/s3/client.js'
import { bytes, describeTree, oneLine, packer, packerOk, setMtimeNs, tmpDir } from '../helpers.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { freePort } from '../servers/ports.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

const MiB = 1024 * 1024
const ENV = { ...TEST_ENV, ...NO_PROXY_ENV }

/** A file of a test tree: its path, bytes and mtime (x-amz-meta-mtime in the bucket). */
interface TreeFile { path: string, body: Buffer, mtimeNs: bigint }

let s3: S3Server
let state: string
const env = (): NodeJS.ProcessEnv => ({ ...ENV, XDG_STATE_HOME: state })

beforeAll(async () => {
  s3 = await startS3()
  state = tmpDir()
})
afterAll(async () => { await s3?.stop() })

/** Puts files (and directory markers: a path ending in '/') under `prefix`, 50 at a time. */
async function fill (bucket: string, prefix: string, files: TreeFile[]): Promise<void> {
  for (let i = 0; i < files.length; i += 50) {
    await Promise.all(files.slice(i, i + 50).map(async (f) => await s3.put(bucket, prefix + f.path, f.body, f.mtimeNs)))
  }
}

/**
 * The same tree on disk: files 0644, directories 0755, mtimes as in the bucket (a directory without a marker: 0, as
 * packer gives it).
 */
async function onDisk (files: TreeFile[]): Promise<string> {
  const root = tmpDir()
  const dirs = new Map<string, bigint>()
  for (const f of files) {
    const parts = f.path.replace(/\/$/, '').split('/')
    for (let i = 1; i < parts.length; i++) { const d = parts.slice(0, i).join('/'); if (!dirs.has(d)) dirs.set(d, 0n) }
    if (f.path.endsWith('/')) { dirs.set(f.path.slice(0, -1), f.mtimeNs); continue }
    fs.mkdirSync(path.join(root, ...parts.slice(0, -1)), { recursive: true })
    fs.writeFileSync(path.join(root, f.path), f.body)
    fs.chmodSync(path.join(root, f.path), 0o644)
    await setMtime(path.join(root, f.path), f.mtimeNs)
  }
  // deepest first: setting a directory's mtime after its children are done
  for (const [d, t] of [...dirs].sort((a, b) => b[0].length - a[0].length)) {
    fs.mkdirSync(path.join(root, d), { recursive: true })
    fs.chmodSync(path.join(root, d), 0o755)
    await setMtime(path.join(root, d), t)
  }
  return root
}

/** An exact mtime: whole seconds by utimes (no process), others by touch(1). */
async function setMtime (p: string, ns: bigint): Promise<void> {
  if (ns % 1_000_000_000n === 0n) fs.utimesSync(p, Number(ns / 1_000_000_000n), Number(ns / 1_000_000_000n))
  else await setMtimeNs(p, ns)
}

function manifestOf (dir: string): { root: string, table: { cid: string }, cars: Array<{ pieceCid: string }> } {
  return JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
}

/** What makes two sets the same set: root, set ID and every CAR's piece CID. */
function setOf (dir: string): unknown {
  const m = manifestOf(dir)
  return { root: m.root, set: m.table.cid, pieces: m.cars.map((c) => c.pieceCid) }
}

let t = 1_700_000_000_000_000_000n
const file = (p: string, body: Buffer | string): TreeFile => ({ path: p, body: Buffer.from(body), mtimeNs: (t += 1_234_567_891n) })

describe('pack s3://BUCKET/PREFIX', () => {
  const tree: TreeFile[] = [
    file('a-b', 'a-b sorts before a/ in the bucket, after a in the set'),
    file('a.txt', 'a.txt too'),
    file('a/c', 'c'),
    file('a/d/e.txt', 'deep'),
    file('big.bin', bytes(3 * MiB + 7, 11)),
    file('zero', ''),
    file('empty/', ''),
    file('marked/', ''),
    file('marked/f', 'in a directory with a marker'),
    file('unicode/naïve café ✓.txt', 'unicode'),
  ]
  // ('.', '..' and a leading '/': 'keys that cannot be paths' below, put through the SDK)
  const bad = ['x//y', 'clash', 'clash/inner']
  let local: string

  beforeAll(async () => {
    await s3.bucket('src')
    await fill('src', 'data/', tree)
    for (const k of bad) await s3.put('src', `data/${k}`, k, 1_600_000_000_000_000_000n)
    await s3.put('src', 'outside', 'not under the prefix')
    // what the bucket becomes on disk: bad keys skipped, but for the prefix that is also an object
    local = await onDisk([...tree, { path: 'x/', body: Buffer.alloc(0), mtimeNs: 0n }, { path: 'clash/inner', body: Buffer.from('clash/inner'), mtimeNs: 1_600_000_000_000_000_000n }])
  })

  it('--no-encrypt: the set equals the one packed from the same tree on disk; bad keys are reported one line each', async () => {
    const fromS3 = tmpDir()
    const fromDisk = tmpDir()
    const r = await packerOk(['pack', 's3://src/data', '-o', fromS3, '--no-encrypt', '--bin-size', '2MiB', '--s3-endpoint', s3.endpoint, '--s3-mtime', 'metadata'], { env: env() })
    await packerOk(['pack', local, '-o', fromDisk, '--no-encrypt', '--bin-size', '2MiB'], { env: env() })
    expect(setOf(fromS3)).toEqual(setOf(fromDisk))
    expect(manifestOf(fromS3).cars.length).toBeGreaterThan(1)
    const warnings = r.stderr.trim().split('\n').filter((l) => l.includes('warning:'))
    expect(warnings, r.stderr).toHaveLength(2)
    expect(warnings.find((w) => w.includes('s3://src/data/x/'))).toMatch(/empty path component/)
    expect(warnings.find((w) => w.includes('s3://src/data/clash'))).toMatch(/both an object and a prefix/)
    const restored = tmpDir()
    await packerOk(['unpack', fromS3, '-o', restored], { env: env() })
    expect(describeTree(restored, { mtimes: true })).toEqual(describeTree(local, { mtimes: true }))
  })

  it('encrypted: S3 → set → local tree, byte-identical, mtimes kept (AWS_ENDPOINT_URL_S3 names the store)', async () => {
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'k.txt')])).stdout.trim()
    const out = tmpDir()
    await packerOk(['pack', 's3://src/data/', '-o', out, '-r', recipient, '--s3-mtime', 'metadata'], { env: { ...env(), AWS_ENDPOINT_URL_S3: s3.endpoint } })
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored, '-i', path.join(keys, 'k.txt')], { env: env() })
    expect(describeTree(restored, { mtimes: true })).toEqual(describeTree(local, { mtimes: true }))
  })

  it('one object: s3://BUCKET/KEY packs that file as the root (proxies set: loopback is reached directly)', async () => {
    const out = tmpDir()
    const proxies = { HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', ALL_PROXY: 'http://127.0.0.1:9', NO_PROXY: '' }
    await packerOk(['pack', 's3://src/data/big.bin', '-o', out, '--no-encrypt', '--s3-endpoint', s3.endpoint], { env: { ...env(), ...proxies } })
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored], { env: env() })
    expect(fs.readFileSync(path.join(restored, 'big.bin')).equals(tree[4]!.body)).toBe(true)
  })

  it('plan s3://…: shards read the plan\'s list from the bucket (the plan names the store); the joined set unpacks to the tree', async () => {
    const out = tmpDir()
    const work = path.join(tmpDir(), 'work')
    await packerOk(['plan', 's3://src/data', '-o', out, '--work', work, '--no-encrypt', '--bin-size', '2MiB', '--shards', '2', '--s3-endpoint', s3.endpoint, '--s3-mtime', 'metadata'], { env: env() })
    const plan = JSON.parse(fs.readFileSync(path.join(work, 'plan.json'), 'utf8')) as { shards: unknown[] }
    expect(plan.shards.length).toBeGreaterThan(1)
    // no --s3-endpoint: the plan recorded the store (never credentials)
    for (let i = 0; i < plan.shards.length; i++) await packerOk(['pack', '--plan', work, '--shard', String(i)], { env: env() })
    await packerOk(['join', work], { env: env() })
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored], { env: env() })
    expect(describeTree(restored, { mtimes: true })).toEqual(describeTree(local, { mtimes: true }))
  })

  it('a missing bucket and an unreachable endpoint: one line naming it, exit 1, nothing that looks complete', async () => {
    const out = tmpDir()
    const missing = await packer(['pack', 's3://no-such-bucket/data', '-o', out, '--s3-endpoint', s3.endpoint, '--no-encrypt'], { env: env() })
    expect(missing.code).toBe(1)
    expect(oneLine(missing.stderr)).toMatch(/no-such-bucket/)
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
    const endpoint = `http://127.0.0.1:${await freePort()}`
    const out2 = tmpDir()
    const unreachable = await packer(['pack', 's3://src/data', '-o', out2, '--s3-endpoint', endpoint, '--no-encrypt', '--s3-timeout', '2'], { env: { ...env(), AWS_MAX_ATTEMPTS: '2' } })
    expect(unreachable.code).toBe(1)
    expect(oneLine(unreachable.stderr)).toContain(endpoint)
    expect(fs.existsSync(path.join(out2, 'manifest.json'))).toBe(false)
    const empty = await packer(['pack', 's3://src/nothing-here', '-o', tmpDir(), '--s3-endpoint', s3.endpoint, '--no-encrypt'], { env: env() })
    expect(empty.code).toBe(1)
    expect(oneLine(empty.stderr)).toMatch(/nothing to pack at s3:\/\/src\/nothing-here/)
  })
})

describe('keys that cannot be paths', () => {
  // Put through the SDK, which sends each key as it is: a URL the test's own PUT would build is normalised ('a/../b'
  // becoming 'b') before it leaves, but this server stores every one of these keys as sent.
  const odd = ['a/./b', 'a/../b', '/lead', 'x//y']
  const good = ['a/c', 'b', 'ok.txt', 'z/deep/f']

  it('a/./b, a/../b, /lead and x//y: one warning line each, skipped and never renamed; the rest of the tree packs', async () => {
    await s3.bucket('odd')
    const restore = setEnv(ENV)
    const store = await s3Client({ endpoint: s3.endpoint })
    let listed: string[]
    try {
      for (const key of [...odd, ...good]) await store.client.send(new PutObjectCommand({ Bucket: 'odd', Key: key, Body: `key ${key}` }))
      listed = ((await store.client.send(new ListObjectsV2Command({ Bucket: 'odd' }))).Contents ?? []).map((o) => o.Key!)
    } finally {
      store.client.destroy()
      restore()
    }
    // the store holds each key as written (none resolved or merged)
    expect(listed.sort()).toEqual([...odd, ...good].sort())
    const out = tmpDir()
    const r = await packer(['pack', 's3://odd', '-o', out, '--no-encrypt', '--s3-endpoint', s3.endpoint, '--json'], { env: env() })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr.trim().split('\n').sort()).toEqual([
      'packer: warning: skipping s3://odd//…: keys with an empty path component cannot be paths',
      'packer: warning: skipping s3://odd/a/../…: \'..\' cannot be a path component',
      'packer: warning: skipping s3://odd/a/./…: \'.\' cannot be a path component',
      'packer: warning: skipping s3://odd/x//…: keys with an empty path component cannot be paths',
    ])
    const done = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'done')
    expect(done.files).toBe(good.length)
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored], { env: env() })
    const tree = describeTree(restored)
    // x stays, empty (x//y named it); nothing else appears: no 'lead', no a/b, and b is the object b, not a/../b
    expect([...tree.keys()]).toEqual(['a', 'a/c', 'b', 'ok.txt', 'x', 'z', 'z/deep', 'z/deep/f'])
    for (const k of good) expect(fs.readFileSync(path.join(restored, k), 'utf8'), k).toBe(`key ${k}`)
  })
})

describe('the default mtime rule, --s3-mtime last-modified', () => {
  it('unpacked files and marked directories get their objects\' Last-Modified, not x-amz-meta-mtime', async () => {
    await s3.bucket('mtimes')
    // x-amz-meta-mtime far from any Last-Modified: the default must not read it
    const meta = 1_000_000_000_123_456_789n
    for (const key of ['one.txt', 'm/', 'm/two.bin', 'm/deeper/three']) await s3.put('mtimes', `t/${key}`, key.endsWith('/') ? '' : bytes(1000 + key.length, 3), meta)
    const restore = setEnv(ENV)
    const store = await s3Client({ endpoint: s3.endpoint })
    let listed: Map<string, bigint>
    try {
      const r = await store.client.send(new ListObjectsV2Command({ Bucket: 'mtimes', Prefix: 't/' }))
      listed = new Map((r.Contents ?? []).map((o) => [o.Key!.slice(2).replace(/\/$/, ''), BigInt(o.LastModified!.getTime()) * 1_000_000n]))
    } finally {
      store.client.destroy()
      restore()
    }
    expect(listed.size).toBe(4)
    const out = tmpDir()
    await packerOk(['pack', 's3://mtimes/t', '-o', out, '--no-encrypt', '--s3-endpoint', s3.endpoint], { env: env() })
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored], { env: env() })
    const tree = describeTree(restored, { mtimes: true })
    expect([...tree.keys()]).toEqual(['m', 'm/deeper', 'm/deeper/three', 'm/two.bin', 'one.txt'])
    for (const [p, ns] of listed) expect(tree.get(p)?.mtimeNs, p).toBe(ns)
    expect(tree.get('m/deeper')?.mtimeNs).toBe(0n) // no marker: no Last-Modified to give it
  })
})

describe('a bucket of 2,600 objects (listing pages of 1,000)', () => {
  // frame.0000…: names that wait on a directory `frame` (listed after them, as `frame/`) past the 1,000 held
  const second = (f: TreeFile): TreeFile => ({ ...f, mtimeNs: f.mtimeNs / 1_000_000_000n * 1_000_000_000n })
  const tree: TreeFile[] = [
    ...Array.from({ length: 1300 }, (_, i) => file(`frame.${String(i).padStart(5, '0')}`, `frame ${i}`)),
    ...Array.from({ length: 1200 }, (_, i) => file(`frame/${String(i).padStart(5, '0')}.txt`, `sub ${i}`)),
    ...Array.from({ length: 100 }, (_, i) => file(`z/${i}`, `z ${i}`)),
    file('frame-1', 'frame-1'),
  ].map(second)

  it('packs the same set as the tree on disk', async () => {
    await s3.bucket('many')
    await fill('many', '', tree)
    const local = await onDisk(tree)
    const fromS3 = tmpDir()
    const fromDisk = tmpDir()
    const r = await packerOk(['pack', 's3://many', '-o', fromS3, '--no-encrypt', '--s3-endpoint', s3.endpoint, '--s3-mtime', 'metadata', '--json'], { env: env() })
    await packerOk(['pack', local, '-o', fromDisk, '--no-encrypt'], { env: env() })
    expect(setOf(fromS3)).toEqual(setOf(fromDisk))
    const done = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'done')
    expect(done.files).toBe(tree.length)
  }, 300_000)
})

describe('faults between packer and the store (a proxy)', () => {
  let proxy: FaultProxy
  const tree = [file('one.bin', bytes(2 * MiB + 3, 31)), file('two.bin', bytes(3 * MiB, 32)), file('small', 'small')]
  let reference: string

  beforeAll(async () => {
    await s3.bucket('faulty')
    await fill('faulty', 'p/', tree)
    proxy = await startFaultProxy(s3.endpoint)
    reference = tmpDir()
    await packerOk(['pack', 's3://faulty/p', '-o', reference, '--no-encrypt', '--bin-size', '2MiB', '--s3-endpoint', s3.endpoint], { env: env() })
  })
  afterAll(async () => { await proxy?.stop() })

  it('throttling (503 SlowDown), dropped connections and a stall: retried, and the set is the same', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET', range: true }, times: 2, fault: { kind: 'status', status: 503, headers: { 'retry-after': '0' }, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' } })
    proxy.fault({ match: { method: 'GET', path: '/faulty/?' }, times: 1, fault: { kind: 'status', status: 503, body: '<Error><Code>SlowDown</Code><Message>slow down</Message></Error>' } })
    // cuts and the stall only on objects larger than where they cut: on the 5-byte one a stall after 10 bytes would
    // let the whole answer through (which object meets which fault depends on the order reads go out)
    proxy.fault({ match: { method: 'GET', path: '/faulty/p/one.bin', range: true }, times: 2, fault: { kind: 'reset', afterBytes: 1000 } })
    proxy.fault({ match: { method: 'GET', path: '/faulty/p/two.bin', range: true }, times: 1, fault: { kind: 'stall', afterBytes: 10 } })
    const out = tmpDir()
    const started = Date.now()
    await packerOk(['pack', 's3://faulty/p', '-o', out, '--no-encrypt', '--bin-size', '2MiB', '--s3-endpoint', proxy.url, '--s3-timeout', '2'], { env: env() })
    expect(Date.now() - started).toBeLessThan(60_000)
    expect(setOf(out)).toEqual(setOf(reference))
    const statuses = proxy.requests.map((r) => r.status)
    expect(statuses.filter((s) => s === 503).length).toBe(3)
    expect(statuses).toContain('reset')
    expect(statuses).toContain('stalled')
  }, 90_000)

  it('wrong credentials (403): one line naming the bucket and the credentials, exit 1', async () => {
    proxy.clear()
    proxy.fault({ fault: { kind: 'status', status: 403, body: '<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>' } })
    const out = tmpDir()
    const r = await packer(['pack', 's3://faulty/p', '-o', out, '--no-encrypt', '--s3-endpoint', proxy.url], { env: env() })
    proxy.clear()
    expect(r.code).toBe(1)
    const line = oneLine(r.stderr)
    expect(line).toMatch(/faulty/)
    expect(line).toMatch(/credential|access key/i)
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
  })

  it('an object replaced while it is read: --on-change fail stops, retry packs the new version whole', async () => {
    await s3.bucket('changing')
    const before = bytes(3 * MiB, 41)
    const after = bytes(3 * MiB, 42)
    for (const onChange of ['fail', 'retry']) {
      await s3.put('changing', 'd/obj.bin', before)
      proxy.clear()
      // the first ranged reads wait; meanwhile the object is replaced, so they meet another ETag
      proxy.fault({ match: { method: 'GET', path: '/changing/d/obj.bin', range: true }, times: 3, fault: { kind: 'latency', ms: 1500 } })
      const out = tmpDir()
      const running = packer(['pack', 's3://changing/d', '-o', out, '--no-encrypt', '--s3-endpoint', proxy.url, '--on-change', onChange], { env: env() })
      while (!proxy.requests.some((q) => q.path.startsWith('/changing/d/obj.bin'))) await new Promise((resolve) => setTimeout(resolve, 20))
      await s3.put('changing', 'd/obj.bin', after)
      const r = await running
      if (onChange === 'fail') {
        expect(r.code).toBe(1)
        expect(oneLine(r.stderr)).toMatch(/obj\.bin/)
        expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
      } else {
        expect(r.code, r.stderr).toBe(0)
        const restored = tmpDir()
        await packerOk(['unpack', out, '-o', restored], { env: env() })
        expect(fs.readFileSync(path.join(restored, 'obj.bin')).equals(after)).toBe(true)
      }
    }
  }, 60_000)

  it('resume: a pack stopped part-way (the store refuses an object) continues, and the set is the same', async () => {
    proxy.clear()
    proxy.fault({ match: { method: 'GET', path: '/faulty/p/two.bin' }, fault: { kind: 'status', status: 403, body: '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>' } })
    const out = tmpDir()
    const args = ['pack', 's3://faulty/p', '-o', out, '--no-encrypt', '--bin-size', '2MiB', '--json']
    const failed = await packer([...args, '--s3-endpoint', proxy.url], { env: env() })
    expect(failed.code).toBe(1)
    expect(fs.readdirSync(out).some((n) => n.endsWith('.car') && !n.startsWith('.'))).toBe(true)
    proxy.clear()
    const r = await packerOk([...args, '--s3-endpoint', proxy.url], { env: env() })
    const done = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'done')
    expect(done.resumed).not.toBeNull()
    expect(setOf(out)).toEqual(setOf(reference))
    expect(done.resumed.cars).toBeGreaterThan(0)
  }, 60_000)

  it('resume after the bucket changed: an object packed before the crash and overwritten since is read again, the one before it kept', async () => {
    await s3.bucket('resume')
    // one mtime for all (x-amz-meta-mtime) and the same size for the new b.bin: only its ETag tells the versions apart
    const mtime = 1_650_000_000_000_000_000n
    const a = bytes(3 * MiB, 51)
    const b = bytes(3 * MiB, 52)
    const newB = bytes(3 * MiB, 53)
    const c = bytes(3 * MiB, 54)
    for (const [k, body] of [['a.bin', a], ['b.bin', b], ['c.bin', c], ['small.txt', Buffer.from('small')]] as const) await s3.put('resume', `r/${k}`, body, mtime)
    const out = tmpDir()
    const args = ['pack', 's3://resume/r', '-o', out, '--no-encrypt', '--bin-size', '2MiB', '--s3-mtime', 'metadata', '--s3-endpoint', proxy.url]
    proxy.clear()
    // killed (SIGKILL) once the 6th CAR is journaled: all of a.bin and b.bin is in CARs the rerun keeps
    const killed = await packer(args, { env: { ...env(), PACKER_FAULT: 'car-journaled:6' } })
    expect(killed.code, killed.stderr).toBe(null)
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
    await s3.put('resume', 'r/b.bin', newB, mtime)
    proxy.clear()
    const r = await packerOk(args, { env: env() })
    expect(r.stdout).toContain('resumed: 6 CAR(s) and 1 files were already complete and kept')
    const gets = proxy.requests.filter((q) => q.method === 'GET' && q.path.startsWith('/resume/r/'))
    expect(gets.filter((q) => q.path.startsWith('/resume/r/a.bin'))).toEqual([]) // kept: not read again
    expect(gets.some((q) => q.path.startsWith('/resume/r/b.bin'))).toBe(true)
    const restored = tmpDir()
    await packerOk(['unpack', out, '-o', restored], { env: env() })
    expect([...describeTree(restored).keys()]).toEqual(['a.bin', 'b.bin', 'c.bin', 'small.txt'])
    expect(fs.readFileSync(path.join(restored, 'a.bin')).equals(a)).toBe(true)
    expect(fs.readFileSync(path.join(restored, 'b.bin')).equals(newB)).toBe(true)
    expect(fs.readFileSync(path.join(restored, 'c.bin')).equals(c)).toBe(true)
    await packerOk(['verify', out], { env: env() })
  }, 60_000)

  it('listing pages are consumed as they come: objects of the first page are read while the last page is held', async () => {
    await s3.bucket('pages')
    const n = 1100 // two pages of a ListObjectsV2 of one directory (1,000 keys a page)
    await fill('pages', 'p/', Array.from({ length: n }, (_, i) => file(`f${String(i).padStart(5, '0')}`, `object ${i}`)))
    proxy.clear()
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    const lastPage = /^\/pages\/\?.*continuation-token=/
    proxy.fault({ match: { method: 'GET', path: lastPage }, times: 1, fault: { kind: 'hold', until: held } })
    const out = tmpDir()
    const running = packer(['pack', 's3://pages/p', '-o', out, '--no-encrypt', '--s3-endpoint', proxy.url, '--json'], { env: env() })
    const isObjectGet = (q: { method: string, path: string }): boolean => q.method === 'GET' && q.path.startsWith('/pages/p/')
    const end = Date.now() + 20_000
    while (!(proxy.requests.some(isObjectGet) && proxy.requests.some((q) => lastPage.test(q.path))) && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
    const page = proxy.requests.find((q) => lastPage.test(q.path))
    const readWhileHeld = proxy.requests.filter(isObjectGet).length
    release()
    const r = await running
    expect(r.code, r.stderr).toBe(0)
    expect(page, 'the last page was asked for').toBeDefined()
    expect(readWhileHeld, 'objects read while the last listing page was held').toBeGreaterThan(0)
    // the first object GET came before the last page was answered
    expect(proxy.requests.find(isObjectGet)!.arrived).toBeLessThan(page!.over!)
    // it was the last page: no listing of the directory after it
    expect(proxy.requests.filter((q) => lastPage.test(q.path))).toHaveLength(1)
    const done = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'done')
    expect(done.files).toBe(n)
  }, 60_000)
})
