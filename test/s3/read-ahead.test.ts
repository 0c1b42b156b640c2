/**
 * Packing from S3 reads ahead across objects (src/s3/read-ahead.ts): the next objects' first GETs go out while the
 * object before them is still read, the bytes asked for ahead stay bounded, and the set is byte for byte the one
 * packed from the same tree on disk, with faults on the way and with an object replaced after its first bytes were
 * read ahead. Against a real S3 server (fauxqs, 127.0.0.1) through a fault proxy that records every request.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GroupedReads } from '../../src/s3/grouped-reads.js'
import { ReadAhead } from '../../src/s3/read-ahead.js'
import type { SourceEntry } from '../../src/source/walk.js'
import { bytes, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { startFaultProxy, type FaultProxy, type SeenRequest } from '../servers/fault-proxy.js'
import { startS3, type S3Server } from '../servers/s3.js'
import { NO_PROXY_ENV, TEST_ENV } from './s3-env.js'

const MiB = 1024 * 1024
/** What the S3 tree may ask for ahead of the objects' turns (src/s3/s3-tree.ts: AHEAD_BYTES, AHEAD_OBJECTS). */
const AHEAD_BYTES = 32 * MiB
const AHEAD_OBJECTS = 8

let s3: S3Server
let proxy: FaultProxy
let state: string
const env = (): NodeJS.ProcessEnv => ({ ...TEST_ENV, ...NO_PROXY_ENV, XDG_STATE_HOME: state })
const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')

beforeAll(async () => {
  s3 = await startS3()
  proxy = await startFaultProxy(s3.endpoint)
  state = tmpDir()
})
afterAll(async () => {
  await proxy?.stop()
  await s3?.stop()
})

/** The object a request is for: its path without the query (the SDK adds `?x-id=GetObject`). */
const objectOf = (r: SeenRequest): string => r.path.replace(/\?.*$/, '')

/** Bytes a ranged GET asks for ('bytes=A-B'). */
function rangeBytes (r: SeenRequest): number {
  const m = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '')
  if (m === null) throw new Error(`unexpected range ${r.range ?? '(none)'}`)
  return Number(m[2]) - Number(m[1]) + 1
}

/** The most bytes ranged GETs had asked for and not yet been answered at once, and the most objects they were of. */
function mostInFlight (gets: SeenRequest[]): { bytes: number, objects: number } {
  const events = gets.flatMap((r) => [{ at: r.arrived, r, d: 1 }, { at: r.over!, r, d: -1 }]).sort((a, b) => a.at - b.at)
  const open = new Map<SeenRequest, number>()
  let most = { bytes: 0, objects: 0 }
  for (const { r, d } of events) {
    if (d > 0) open.set(r, rangeBytes(r))
    else open.delete(r)
    const now = { bytes: [...open.values()].reduce((a, b) => a + b, 0), objects: new Set([...open.keys()].map(objectOf)).size }
    most = { bytes: Math.max(most.bytes, now.bytes), objects: Math.max(most.objects, now.objects) }
  }
  return most
}

/** Restores a --no-encrypt set and hashes every file of it. */
async function restoredHashes (set: string): Promise<Map<string, string>> {
  const out = tmpDir()
  await packerOk(['unpack', set, '-o', out], { env: env() })
  return new Map(fs.readdirSync(out).sort().map((n) => [n, sha256(fs.readFileSync(path.join(out, n)))]))
}

describe('pack s3://… reads ahead across objects', () => {
  // 8 objects of 10 MiB (80 MiB: more than may be in flight), each its own bytes, and small ones among them; each
  // object is two GETs (8 MiB, then the rest): the first can be read ahead, the second waits for the object's turn
  const names = Array.from({ length: 8 }, (_, i) => `o${String(i).padStart(2, '0')}.bin`)
  const bodies = new Map<string, Buffer>([
    ...names.map((n, i): [string, Buffer] => [n, bytes(10 * MiB + i, 100 + i)]),
    ['a-small', Buffer.from('small, read whole')],
    ['p-small', bytes(300_000, 7)],
  ])
  let local: string

  beforeAll(async () => {
    await s3.bucket('ahead')
    local = tmpDir()
    for (const [n, b] of bodies) {
      await s3.put('ahead', `t/${n}`, b)
      fs.writeFileSync(path.join(local, n), b)
    }
  })

  it('the next objects\' GETs start before the one before them is read; bytes in flight stay bounded; the set is the tree\'s, with faults on the way', async () => {
    proxy.clear()
    // every ranged GET waits, so that reads ahead would show as GETs of several objects at once
    proxy.fault({ match: { method: 'GET', path: '/ahead/t/o03.bin', range: true }, times: 1, fault: { kind: 'reset', afterBytes: 1000 } })
    proxy.fault({ match: { method: 'GET', path: '/ahead/t/o05.bin', range: true }, times: 1, fault: { kind: 'status', status: 503, headers: { 'retry-after': '0' }, body: '<Error><Code>SlowDown</Code><Message>slow down</Message></Error>' } })
    proxy.fault({ match: { method: 'GET', range: true }, fault: { kind: 'latency', ms: 100 } })
    const out = tmpDir()
    await packerOk(['pack', 's3://ahead/t', '-o', out, '--no-encrypt', '--s3-endpoint', proxy.url], { env: env() })
    const gets = proxy.requests.filter((r) => r.method === 'GET' && r.range !== undefined)
    expect(gets.map((r) => r.status)).toContain('reset')
    expect(gets.map((r) => r.status)).toContain(503)
    for (let i = 1; i < names.length; i++) {
      const previous = gets.filter((r) => objectOf(r) === `/ahead/t/${names[i - 1]!}`)
      const first = gets.find((r) => objectOf(r) === `/ahead/t/${names[i]!}`)!
      expect(first.arrived, `${names[i]!}'s first GET`).toBeLessThan(Math.max(...previous.map((r) => r.over!)))
    }
    // read ahead, but within bounds: the objects ahead's, the open object's and the small files'
    const most = mostInFlight(gets)
    expect(most.objects).toBeGreaterThanOrEqual(4)
    expect(most.objects).toBeLessThanOrEqual(AHEAD_OBJECTS + 1 + 2)
    expect(most.bytes).toBeLessThanOrEqual(AHEAD_BYTES + 10 * MiB + 400_000)
    // the same set as the tree on disk, and its files are the objects' bytes
    const fromDisk = tmpDir()
    await packerOk(['pack', local, '-o', fromDisk, '--no-encrypt'], { env: env() })
    const manifest = (dir: string): unknown => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).root
    expect(manifest(out)).toEqual(manifest(fromDisk))
    expect(await restoredHashes(out)).toEqual(new Map([...bodies].sort((a, b) => a[0] < b[0] ? -1 : 1).map(([n, b]) => [n, sha256(b)])))
  }, 120_000)
})

describe('an object replaced after its first bytes were read ahead', () => {
  const first = bytes(3 * MiB, 51)
  const before = bytes(10 * MiB, 52) // two GETs: 8 MiB read ahead, the rest when its turn comes
  const after = bytes(10 * MiB, 53)

  for (const onChange of ['retry', 'fail', 'skip']) {
    it(`--on-change ${onChange}: the versions are never mixed`, async () => {
      const bucket = await s3.bucket(`replaced-${onChange}`)
      await s3.put(bucket, 'd/a.bin', first)
      await s3.put(bucket, 'd/b.bin', before)
      proxy.clear()
      // a.bin's read waits; meanwhile b.bin's first 8 MiB are read ahead, then b.bin is replaced
      proxy.fault({ match: { method: 'GET', path: `/${bucket}/d/a.bin`, range: true }, times: 1, fault: { kind: 'latency', ms: 1500 } })
      const out = tmpDir()
      const running = packer(['pack', `s3://${bucket}/d`, '-o', out, '--no-encrypt', '--s3-endpoint', proxy.url, '--on-change', onChange], { env: env() })
      const readAhead = (): boolean => proxy.requests.some((q) => objectOf(q) === `/${bucket}/d/b.bin` && q.range === `bytes=0-${8 * MiB - 1}` && q.status === 206 && q.over !== undefined)
      while (!readAhead()) {
        if (proxy.requests.some((q) => objectOf(q) === `/${bucket}/d/a.bin` && q.over !== undefined)) throw new Error('a.bin was read before b.bin was read ahead')
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      await s3.put(bucket, 'd/b.bin', after)
      const r = await running
      // b.bin's first GET was over before a.bin's: it was read ahead, not in its turn
      const aOver = proxy.requests.find((q) => objectOf(q) === `/${bucket}/d/a.bin`)!.over!
      expect(proxy.requests.find((q) => objectOf(q) === `/${bucket}/d/b.bin`)!.over!).toBeLessThan(aOver)
      if (onChange === 'fail') {
        expect(r.code).toBe(1)
        expect(oneLine(r.stderr)).toMatch(/b\.bin: changed while being packed \(replaced: its ETag changed\)/)
        expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(false)
        return
      }
      expect(r.code, r.stderr).toBe(0)
      const restored = await restoredHashes(out)
      if (onChange === 'retry') {
        expect(restored).toEqual(new Map([['a.bin', sha256(first)], ['b.bin', sha256(after)]]))
      } else {
        expect(r.stderr).toMatch(/skipping .*b\.bin: changed while being packed/)
        expect(restored).toEqual(new Map([['a.bin', sha256(first)]]))
      }
    }, 60_000)
  }
})

describe('ReadAhead', () => {
  const entry = (size: number): SourceEntry => ({ path: Buffer.from('x'), abs: Buffer.from('x'), type: 'file', stat: { dev: 0n, ino: 0n, size: BigInt(size), mtimeNs: 0n, mode: 0o644n, uid: 0n, gid: 0n } })

  it('starts first GETs in the order announced within its bounds; one passed over counts until its GET settles', async () => {
    const gets: Array<{ e: SourceEntry, start: number, end: number, answer: () => void }> = []
    const reads = (e: SourceEntry): GroupedReads => new GroupedReads(async (start, end) => {
      await new Promise<void>((resolve) => gets.push({ e, start, end, answer: resolve }))
      return Buffer.alloc(end - start, 1)
    }, Number(e.stat.size), 8 * MiB)
    const ahead = new ReadAhead(reads, { maxBytes: 20 * MiB, maxObjects: 3, firstBytes: 8 * MiB })
    const [a, b, c, d, e] = [entry(10 * MiB), entry(9 * MiB), entry(2 * MiB), entry(MiB), entry(MiB)]
    ahead.announce([a, b, entry(0), c, d, e])
    // a and b (8 MiB each); c (2 MiB) fits in 20 MiB as well, but d would be a fourth object; the empty one is never read
    expect(gets.map((g) => [g.e, g.start, g.end])).toEqual([[a, 0, 8 * MiB], [b, 0, 8 * MiB], [c, 0, 2 * MiB]])
    expect(ahead.bytes).toBe(18 * MiB)
    // taken in its turn: its reads are the ones already under way, and the next object starts
    const readsOfA = ahead.take(a)!
    expect(gets.map((g) => g.e)).toEqual([a, b, c, d])
    gets[0]!.answer()
    expect((await readsOfA.read(MiB, 2 * MiB)).equals(Buffer.alloc(MiB, 1))).toBe(true)
    expect(gets).toHaveLength(4)
    // c opened out of turn: b is passed over, and its 8 MiB count until its GET is over
    expect(ahead.take(c)).not.toBeNull()
    expect(ahead.bytes).toBe(10 * MiB) // b 8, d 1, and e, started now
    expect(gets.map((g) => g.e)).toEqual([a, b, c, d, e])
    gets[1]!.answer()
    await new Promise((resolve) => setImmediate(resolve))
    expect(ahead.bytes).toBe(2 * MiB)
    // not announced, or taken already: nothing read ahead
    expect(ahead.take(b)).toBeNull()
    expect(ahead.take(entry(MiB))).toBeNull()
    for (const g of gets) g.answer()
  })
})
