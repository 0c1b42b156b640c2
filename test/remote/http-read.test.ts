/**
 * Remote sets over HTTP, against real servers: nginx (Debian's nginx-light, on 127.0.0.1) serving a set directory,
 * and the fault proxy in front of it. ls, verify, unpack, mount and fetch over a URL give what they give locally;
 * broken servers give the outcomes the issue names (the next source, or one line naming the URL).
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CarIndexer } from '@ipld/car/indexer'
import { bytes, describeTree, oneLine, packer, packerOk, tmpDir } from '../helpers.js'
import { makeRoundTripTree } from '../fixtures.js'
import { startNginx, type NginxServer } from '../servers/nginx.js'
import { startFaultProxy, type FaultProxy, type SeenRequest } from '../servers/fault-proxy.js'
import { freePort } from '../servers/ports.js'
import { readEach, shOk, startMount, treeSums } from '../mount/mount-helpers.js'
import { HttpCars } from '../../src/remote/http-cars.js'
import { fetchBlocks, type FetchResult } from '../../src/remote/block-fetch-worker.js'
import { DEFAULT_TIMEOUTS } from '../../src/remote/http-get.js'
import { SegmentPool, newLeases, segmentLease } from '../../src/remote/segment-pool.js'
import type { CarRecord } from '../../src/format/manifest.js'
import type { BlockAt } from '../../src/store/car-store.js'

// Proxy variables as a user behind a proxy has them: requests to 127.0.0.1 must never go through it.
const env = { HTTP_PROXY: 'http://127.0.0.1:9', HTTPS_PROXY: 'http://127.0.0.1:9', http_proxy: 'http://127.0.0.1:9', NO_PROXY: '', no_proxy: '' }

let src: string
let root: string
let set: string
let key: string
let nginx: NginxServer
let proxy: FaultProxy
/** The set's URL on nginx, and through the proxy. */
let url: string
let viaProxy: string
/** A directory with only manifest.json and blocks.idx (CARs from --piece-url). */
let manifestOnly: string

beforeAll(async () => {
  src = tmpDir()
  await makeRoundTripTree(src)
  root = tmpDir()
  set = path.join(root, 'set')
  key = path.join(tmpDir(), 'key.txt')
  await packerOk(['keygen', '-o', key])
  const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(key, 'utf8'))![0]
  await packerOk(['pack', src, '-o', set, '-r', recipient, '--bin-size', '2MiB'], { env: { PACKER_STATE_DIR: tmpDir() } })
  manifestOnly = tmpDir()
  for (const f of ['manifest.json', 'blocks.idx']) fs.copyFileSync(path.join(set, f), path.join(manifestOnly, f))
  nginx = await startNginx({ root })
  proxy = await startFaultProxy(nginx.url)
  url = `${nginx.url}/set`
  viaProxy = `${proxy.url}/set`
}, 120_000)

afterAll(async () => {
  await proxy?.stop()
  await nginx?.stop()
})

/** The 1 MiB blocks of a CAR (a file's full leaves), in order. */
async function mibBlocks (carBytes: Uint8Array): Promise<BlockAt[]> {
  const blocks: BlockAt[] = []
  for await (const b of await CarIndexer.fromBytes(carBytes)) {
    if (b.blockLength === 1 << 20) blocks.push({ cid: b.cid, offset: b.blockOffset, length: b.blockLength })
  }
  return blocks
}

/** Sets of one random file of `mib` MiB packed in clear under root/`name` (once each): its CAR and 1 MiB blocks. */
const clearFileCars = new Map<string, Promise<{ record: CarRecord, carBytes: Buffer, blocks: BlockAt[] }>>()
async function clearFileCar (name: string, mib: number, seed: number): Promise<{ record: CarRecord, carBytes: Buffer, blocks: BlockAt[] }> {
  let made = clearFileCars.get(name)
  if (made === undefined) {
    made = (async () => {
      const dir = path.join(root, name)
      const srcDir = tmpDir()
      fs.writeFileSync(path.join(srcDir, 'f.bin'), bytes(mib << 20, seed))
      await packerOk(['pack', srcDir, '-o', dir, '--no-encrypt'], { env: { PACKER_STATE_DIR: tmpDir() } })
      const record = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).cars[0] as CarRecord
      const carBytes = fs.readFileSync(path.join(dir, record.file))
      return { record, carBytes, blocks: await mibBlocks(carBytes) }
    })()
    clearFileCars.set(name, made)
  }
  return await made
}

const cars = (): string[] => fs.readdirSync(set).filter((n) => n.endsWith('.car')).sort()

describe('a set directory on nginx reads as it does locally', () => {
  it('ls -l, verify and unpack give what they give on the local directory', async () => {
    expect(cars().length).toBeGreaterThan(2)
    const lsLocal = await packerOk(['ls', '-l', '-i', key, set])
    const lsRemote = await packerOk(['ls', '-l', '-i', key, url], { env })
    expect(lsRemote.stdout).toBe(lsLocal.stdout)

    // the same lines as on the directory, but for the time taken
    const untimed = (out: string): string => out.replace(/ in [\d.]+ s$/m, ' in T s')
    const verifiedLocal = await packerOk(['verify', set])
    const verified = await packerOk(['verify', url], { env })
    expect(untimed(verified.stdout)).toBe(untimed(verifiedLocal.stdout))
    expect(verified.stdout.split('\n').filter((l) => l.startsWith('OK ')).length).toBe(cars().length)
    expect(verified.stdout).toContain(`all ${cars().length} CAR(s) verified in `)

    const dest = tmpDir()
    const before = (await nginx.requests()).length
    await packerOk(['unpack', '-i', key, url, '-o', dest], { env })
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
    // unpack asked only for ranges of the CARs, never a whole CAR.
    const carGets = (await nginx.requests()).slice(before).filter((r) => r.path.endsWith('.car'))
    expect(carGets.length).toBeGreaterThan(0)
    expect(carGets.every((r) => r.range !== '' && r.status === 206)).toBe(true)
  })

  it('mount over the URL: every file byte for byte (read from a child process), then unmounted', async () => {
    const mnt = tmpDir()
    const m = await startMount(['-i', key, url, mnt], mnt, { env })
    try {
      expect(await treeSums(mnt)).toBe(await treeSums(src))
    } finally {
      await m.cleanup()
    }
  }, 120_000)

  it('fetch: every CAR under its own name, piece CIDs checked; the copy passes verify, and a second run resumes a partial CAR', async () => {
    const dest = tmpDir()
    const first = await packerOk(['fetch', url, '-o', dest, '--json'], { env })
    expect(first.stdout).toContain('"event":"car"')
    expect(fs.readdirSync(dest).filter((n) => n.endsWith('.car')).sort()).toEqual(cars())
    await packerOk(['verify', dest])

    // A partial download left by a killed run: continued by Range from where it stopped.
    const again = tmpDir()
    const car = cars()[1]!
    const whole = fs.readFileSync(path.join(set, car))
    fs.writeFileSync(path.join(again, `.${car}.part`), whole.subarray(0, 100_000))
    const second = await packerOk(['fetch', '--manifest', manifestOnly, '--piece-url', `${url}/{pieceCid}.car`, '-o', again, '--json'], { env })
    const resumed = second.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'car' && e.car === car)
    expect(resumed.resumedAt).toBe(100_000)
    expect(fs.readFileSync(path.join(again, car)).equals(whole)).toBe(true)
    await packerOk(['verify', again])
  }, 120_000)
})

describe('reading ahead over HTTP', () => {
  it('a file read through the mount from start to end: its leaves are asked for several to a request, the bytes right', async () => {
    const dir = tmpDir()
    const data = bytes(64 * 1024 * 1024 + 12345, 7)
    fs.writeFileSync(path.join(dir, 'big.bin'), data)
    const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(key, 'utf8'))![0]
    await packerOk(['pack', dir, '-o', path.join(root, 'long'), '-r', recipient], { env: { PACKER_STATE_DIR: tmpDir() } })
    proxy.clear()
    const mnt = tmpDir()
    const m = await startMount(['-i', key, `${proxy.url}/long`, mnt], mnt, { env })
    try {
      const sum = (await shOk(`sha256sum '${path.join(mnt, 'big.bin')}'`)).split(' ')[0]
      expect(sum).toBe(createHash('sha256').update(data).digest('hex'))
    } finally {
      await m.cleanup()
    }
    // The leaves are 1 MiB; a sequential reader's read-ahead asks for half its window at a time, which the store
    // fetches as runs of adjacent blocks: most bytes come in requests of several leaves.
    const lengths = proxy.requests.filter((r) => r.path.endsWith('.car') && r.range !== undefined).map((r) => {
      const [, from, to] = /bytes=(\d+)-(\d+)/.exec(r.range!)!
      return Number(to) - Number(from) + 1
    })
    const total = lengths.reduce((a, b) => a + b, 0)
    expect(total).toBeGreaterThanOrEqual(data.length)
    expect(lengths.filter((n) => n >= 3 * 1024 * 1024).reduce((a, b) => a + b, 0)).toBeGreaterThan(total / 2)
  }, 120_000)
})

describe('the memory blocks are received into', () => {
  /** A CAR of forty 1 MiB blocks on nginx. */
  async function fortyBlocks (): Promise<{ record: CarRecord, carBytes: Buffer, blocks: BlockAt[], url: string }> {
    const made = await clearFileCar('forty', 40, 9)
    expect(made.blocks.length).toBe(40)
    return { ...made, url: `${nginx.url}/forty/${made.record.file}` }
  }

  it('is reused, but never while a block lent from it is held: a held block and a copy stay right through 40 reads', async () => {
    const { record, carBytes, blocks } = await fortyBlocks()
    const want = (b: BlockAt): Buffer => carBytes.subarray(b.offset, b.offset + b.length)
    const cars = new HttpCars(`${url}/`, [record], (c) => [`${nginx.url}/forty/${c.file}`])
    try {
      const held = await cars.place(0, blocks[0]!)
      if (!('bytes' in held) || held.release === undefined) throw new Error('a block over HTTP is not lent')
      const [copy] = await cars.readBlocks(0, [blocks[1]!])
      const seen = new Set<string>()
      let reused = 0
      for (const b of blocks.slice(1)) {
        const lent = await cars.place(0, b) // one request each: each takes memory of the pool
        if (!('bytes' in lent)) throw new Error('not lent')
        expect(Buffer.compare(lent.bytes, want(b))).toBe(0)
        const where = `${lent.bytes.buffer.byteLength}:${lent.bytes.byteOffset}`
        if (seen.has(where)) reused++
        seen.add(where)
        lent.release?.()
      }
      expect(reused).toBeGreaterThan(0)
      expect(Buffer.compare(held.bytes, want(blocks[0]!))).toBe(0)
      expect(Buffer.compare(copy as Buffer, want(blocks[1]!))).toBe(0)
      held.release()
    } finally {
      await cars.close()
    }
  }, 120_000)

  it('with every segment of a fetching thread\'s pool lent, blocks come in memory of their own; a freed lease frees its segment', async () => {
    const { carBytes, blocks, url: carUrl } = await fortyBlocks()
    const leases = newLeases()
    const pool = new SegmentPool(leases)
    for (let s = pool.take(); s !== undefined; s = pool.take()) { pool.lend(s); pool.filled(s) }
    const run = blocks.slice(0, 4)
    const fetch = async (): Promise<FetchResult[]> => {
      const got: FetchResult[] = []
      const job = { id: 1, url: carUrl, from: run[0]!.offset, to: run[3]!.offset + run[3]!.length, timeouts: DEFAULT_TIMEOUTS,
        blocks: run.map((b) => ({ offset: b.offset, length: b.length, digest: b.cid.multihash.digest })) }
      await fetchBlocks(job, (r) => { got.push(r) }, pool)
      got.filter((r) => 'block' in r).forEach((r, i) => {
        const b = r as Extract<FetchResult, { block: number }>
        expect(Buffer.compare(Buffer.from(b.bytes, b.offset, b.length), carBytes.subarray(run[i]!.offset, run[i]!.offset + run[i]!.length))).toBe(0)
      })
      return got
    }
    const outcome = (got: FetchResult[]): unknown[] => got.map((r) => 'block' in r ? r.segment : r)
    expect(outcome(await fetch())).toEqual([-1, -1, -1, -1, { id: 1, ok: true }])
    segmentLease(leases, 0).free()
    // two 1 MiB blocks to a 2 MiB segment: the first two in segment 0, the other two (every other segment lent) not
    expect(outcome(await fetch())).toEqual([0, 0, -1, -1, { id: 1, ok: true }])
    expect(Atomics.load(leases, 0)).toBe(2)
  }, 120_000)
})

describe('piece URLs and broken servers', () => {
  it('--piece-url: a provider that is down is passed over for the next; {pieceCidV2} works too', async () => {
    const down = `http://127.0.0.1:${await freePort()}/piece/{pieceCid}`
    const dest = tmpDir()
    await packerOk(['unpack', '-i', key, manifestOnly, '--piece-url', down, '--piece-url', `${url}/{pieceCid}.car`, '-o', dest], { env })
    expect(describeTree(dest)).toEqual(describeTree(src))
    const v2 = await packer(['verify', manifestOnly, '--piece-url', `${url}/{pieceCidV2}.car`], { env })
    expect(v2.code).not.toBe(0) // the CARs are named by v1 CIDs on nginx: every CAR missing, each line naming its URL
    expect(v2.stdout).toMatch(/MISSING .*bafkzcib.*404/)
  })

  it('wrong bytes from one provider: dropped for the other, the files still right', async () => {
    proxy.clear()
    proxy.fault({ match: { path: /\.car$/ }, fault: { kind: 'flip', at: 50 } })
    try {
      const dest = tmpDir()
      await packerOk(['unpack', '-i', key, manifestOnly, '--piece-url', `${viaProxy}/{pieceCid}.car`, '--piece-url', `${url}/{pieceCid}.car`, '-o', dest], { env })
      expect(describeTree(dest)).toEqual(describeTree(src))
      expect(proxy.requests.some((r) => r.path.endsWith('.car'))).toBe(true)
    } finally { proxy.clear() }
  })

  /** A CAR of 1 MiB blocks, its record, bytes, and its first three blocks, side by side. */
  async function threeBlocks (): Promise<{ record: CarRecord, bytes: Buffer, three: BlockAt[] }> {
    const { record, carBytes, blocks } = await clearFileCar('big', 5, 7)
    const three = blocks.slice(0, 3)
    expect(three.length).toBe(3)
    expect(three[1]!.offset - (three[0]!.offset + three[0]!.length)).toBeLessThan(100) // side by side
    return { record, bytes: carBytes, three }
  }

  /**
   * The three blocks read in-process through HttpCars (one request) with `fault` on the first request: every block
   * right, and the requests' ranges and outcomes.
   */
  async function readThrough (fault: Parameters<FaultProxy['fault']>[0]['fault']): Promise<Array<[string | undefined, SeenRequest['status']]>> {
    const { record, bytes: carBytes, three } = await threeBlocks()
    proxy.clear()
    proxy.fault({ match: { path: /\.car$/ }, times: 1, fault })
    const cars = new HttpCars(`${viaProxy}/`, [record], (c) => [`${proxy.url}/big/${c.file}`], { timeouts: { connect: 10_000, firstByte: 10_000, stall: 2000 } })
    try {
      const got = await cars.readBlocks(0, three)
      got.forEach((g, i) => expect(Buffer.compare(g as Buffer, carBytes.subarray(three[i]!.offset, three[i]!.offset + three[i]!.length))).toBe(0))
      return proxy.requests.filter((r) => r.path.endsWith('.car')).map((r) => [r.range, r.status])
    } finally {
      await cars.close()
      proxy.clear()
    }
  }

  it('a request that stalls mid-body: the blocks already in are used, the rest asked for again from the first block not in', async () => {
    // stalled once, after the first block and half the second have passed (a stall, not a reset: a reset may discard
    // bytes the client had not read yet)
    const asked = await readThrough({ kind: 'stall', afterBytes: (1 << 20) + (1 << 19) })
    const { three } = await threeBlocks()
    const end = three[2]!.offset + three[2]!.length - 1
    expect(asked).toEqual([[`bytes=${three[0]!.offset}-${end}`, 'stalled'], [`bytes=${three[1]!.offset}-${end}`, 206]])
  }, 90_000)

  it('a body cut mid-way (a reset): asked again from the first block not in, the blocks byte for byte', async () => {
    // a reset may discard bytes sent but not yet read: the second request starts at the first or the second block
    const asked = await readThrough({ kind: 'reset', afterBytes: (1 << 20) + (1 << 19) })
    const { three } = await threeBlocks()
    const end = three[2]!.offset + three[2]!.length - 1
    expect(asked.length).toBe(2)
    expect(asked[0]).toEqual([`bytes=${three[0]!.offset}-${end}`, 'reset'])
    expect([`bytes=${three[0]!.offset}-${end}`, `bytes=${three[1]!.offset}-${end}`]).toContain(asked[1]![0])
    expect(asked[1]![1]).toBe(206)
  }, 90_000)

  const failures: Array<[string, Parameters<FaultProxy['fault']>[0]['fault'], RegExp]> = [
    ['a server that answers Range with 200', { kind: 'ignore-range' }, /answered a Range request with the whole file \(200, not 206\)/],
    ['gzip-encoded ranges', { kind: 'gzip' }, /Content-Encoding: gzip/],
    ['503 on every try', { kind: 'status', status: 503, headers: { 'retry-after': '0' } }, /503/],
    ['a stall mid-body', { kind: 'stall', afterBytes: 10 }, /stalled for 1 s/],
    ['wrong bytes', { kind: 'flip', at: 50 }, /sent wrong bytes \(block \S+ at byte \d+ does not match its hash\)/],
  ]
  for (const [what, fault, why] of failures) {
    it(`${what}, the only source: one line naming the URL and why`, async () => {
      proxy.clear()
      proxy.fault({ match: { path: /\.car$/ }, fault })
      try {
        const started = Date.now()
        const r = await packer(['unpack', '-i', key, viaProxy, '-o', tmpDir(), '--http-timeout', '1'], { env })
        expect(r.code).not.toBe(0)
        const line = oneLine(r.stderr)
        expect(line).toContain(`${viaProxy}/`)
        expect(line).toMatch(why)
        expect(Date.now() - started).toBeLessThan(60_000)
      } finally { proxy.clear() }
    }, 90_000)
  }

  it('429 once: tried again, then read', async () => {
    proxy.clear()
    proxy.fault({ match: { path: /\.car$/ }, times: 1, fault: { kind: 'status', status: 429, headers: { 'retry-after': '0' } } })
    try {
      await packerOk(['ls', '-i', key, viaProxy], { env })
      expect(proxy.requests.filter((r) => r.status === 429).length).toBe(1)
    } finally { proxy.clear() }
  })

  it('mount: a file whose CAR no source can give is EIO, the others still read', async () => {
    const mnt = tmpDir()
    proxy.clear()
    // the set's first CAR holds file data only (the table, index and directories are written last, at the set's end):
    // the last by name, chosen before, was now and then the one with the table, and the mount could not start at all
    const first = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8')).cars[0].file as string
    proxy.fault({ match: { path: new RegExp(`${first}$`) }, fault: { kind: 'status', status: 503 } })
    const m = await startMount(['-i', key, viaProxy, mnt, '--http-timeout', '1'], mnt, { env })
    try {
      const read = await readEach(mnt, [...describeTree(src)].filter(([, e]) => e.type === 'file').map(([p, e]) => [p, e.sha256!]))
      expect(read.every((r) => r === 'ok' || r === 'EIO')).toBe(true)
      expect(read).toContain('ok')
      expect(read).toContain('EIO')
    } finally {
      await m.cleanup()
      proxy.clear()
    }
  }, 120_000)
})

describe('fetch: each CAR checked against its piece CID, from the next source when one sends wrong bytes', () => {
  const records = (): CarRecord[] => JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8')).cars
  const carsIn = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.endsWith('.car')).sort()
  const sameCars = (dir: string): void => {
    for (const c of cars()) expect(fs.readFileSync(path.join(dir, c)).equals(fs.readFileSync(path.join(set, c))), c).toBe(true)
  }

  it('a set of several CARs over its URL: every one under its own name, byte for byte, and verify passes', async () => {
    expect(cars().length).toBeGreaterThanOrEqual(4)
    const dest = tmpDir()
    await packerOk(['fetch', url, '-o', dest, '-q'], { env })
    expect(carsIn(dest)).toEqual(cars())
    expect(fs.readdirSync(dest).filter((n) => n.endsWith('.part'))).toEqual([])
    sameCars(dest)
    await packerOk(['verify', dest])
  })

  it('two providers, the first sending wrong bytes: each CAR fetched again from byte 0 from the second; the set verifies, byte for byte', async () => {
    proxy.clear()
    proxy.fault({ match: { path: /\.car$/ }, fault: { kind: 'flip', at: 50 } })
    try {
      const dest = tmpDir()
      await packerOk(['fetch', '--manifest', manifestOnly, '--piece-url', `${viaProxy}/{pieceCid}.car`, '--piece-url', `${url}/{pieceCid}.car`, '-o', dest, '-q'], { env })
      // the first provider was asked for every CAR (and each was dropped for its wrong bytes)
      expect(new Set(proxy.requests.filter((r) => r.path.endsWith('.car')).map((r) => path.basename(r.path)))).toEqual(new Set(cars()))
      expect(carsIn(dest)).toEqual(cars())
      expect(fs.readdirSync(dest).filter((n) => n.endsWith('.part'))).toEqual([])
      sameCars(dest)
      await packerOk(['verify', dest])
    } finally { proxy.clear() }
  })

  it('a CAR whose bytes fail its piece CID, the only source: one line naming the URL and the CAR, nothing under its name', async () => {
    const bad = records()[1]!
    proxy.clear()
    proxy.fault({ match: { path: new RegExp(`${bad.file}$`) }, fault: { kind: 'flip', at: 50 } })
    try {
      const dest = tmpDir()
      const r = await packer(['fetch', viaProxy, '-o', dest, '-q'], { env })
      expect(r.code).not.toBe(0)
      const line = oneLine(r.stderr)
      expect(line).toContain(`${viaProxy}/${bad.file}`)
      expect(line).toContain(`CAR ${bad.file}`)
      expect(line).toMatch(/sent wrong bytes \(their piece CID is \S+, not /)
      expect(fs.existsSync(path.join(dest, bad.file))).toBe(false)
      expect(fs.existsSync(path.join(dest, `.${bad.file}.part`))).toBe(false)
    } finally { proxy.clear() }
  })

  it('a .part an earlier run left with wrong bytes in it: the CAR fetched again from byte 0 from the same source, not blamed on it', async () => {
    const car = cars()[2]!
    const whole = fs.readFileSync(path.join(set, car))
    const dest = tmpDir()
    const damaged = Buffer.from(whole.subarray(0, 100_000))
    damaged[5000] ^= 0xff
    fs.writeFileSync(path.join(dest, `.${car}.part`), damaged)
    proxy.clear()
    const r = await packerOk(['fetch', viaProxy, '-o', dest, '--json'], { env })
    const done = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'car' && e.car === car)
    expect(done.resumedAt).toBe(0)
    // asked first from where the .part ended, then again whole
    expect(proxy.requests.filter((r) => r.path.endsWith(`/${car}`)).map((r) => r.range)).toEqual(['bytes=100000-', undefined])
    expect(fs.readFileSync(path.join(dest, car)).equals(whole)).toBe(true)
    await packerOk(['verify', dest])
  })

  it('a provider stalling mid-body: the next goes on by Range from where it stopped, the piece CID checked over both', async () => {
    const car = records()[1]!
    proxy.clear()
    // a stall, not a reset: every byte sent before it reaches packer (a reset may discard some), so where the next
    // source starts is known
    proxy.fault({ match: { path: new RegExp(`${car.file}\\?from=a$`) }, fault: { kind: 'stall', afterBytes: 300_000 } })
    try {
      const dest = tmpDir()
      await packerOk(['fetch', '--manifest', manifestOnly, '--piece-url', `${viaProxy}/{pieceCid}.car?from=a`, '--piece-url', `${viaProxy}/{pieceCid}.car?from=b`,
        '-o', dest, '-q', '--http-timeout', '1'], { env })
      const asked = proxy.requests.filter((r) => r.path.includes(car.file)).map((r) => [r.path.replace(/.*\?/, ''), r.range, r.status])
      expect(asked).toEqual([['from=a', undefined, 'stalled'], ['from=b', 'bytes=300000-', 206]])
      expect(fs.readFileSync(path.join(dest, car.file)).equals(fs.readFileSync(path.join(set, car.file)))).toBe(true)
      await packerOk(['verify', dest])
    } finally { proxy.clear() }
  })

  it('every provider sending wrong bytes for a CAR: one line naming each URL, nothing under its name', async () => {
    const bad = records()[2]!
    proxy.clear()
    proxy.fault({ match: { path: new RegExp(`${bad.file}\\?`) }, fault: { kind: 'flip', at: 50 } })
    try {
      const dest = tmpDir()
      const first = `${viaProxy}/{pieceCid}.car?from=a`
      const second = `${viaProxy}/{pieceCid}.car?from=b`
      const r = await packer(['fetch', '--manifest', manifestOnly, '--piece-url', first, '--piece-url', second, '-o', dest, '-q'], { env })
      expect(r.code).not.toBe(0)
      const line = oneLine(r.stderr)
      expect(line).toContain(`CAR ${bad.file}`)
      for (const u of [first, second]) expect(line).toContain(`GET ${u.replace('{pieceCid}', bad.pieceCid)}: sent wrong bytes`)
      expect(fs.existsSync(path.join(dest, bad.file))).toBe(false)
      expect(fs.existsSync(path.join(dest, `.${bad.file}.part`))).toBe(false)
    } finally { proxy.clear() }
  })
})

describe('packer\'s own requests, as the fault proxy sees them', () => {
  const identity = (seen: SeenRequest[]): void => {
    expect(seen.length).toBeGreaterThan(0)
    for (const r of seen) expect(r.headers['accept-encoding'], `${r.method} ${r.path}`).toBe('identity')
  }

  it('200 ms before every answer: unpack and fetch still give every byte right', async () => {
    proxy.clear()
    proxy.fault({ fault: { kind: 'latency', ms: 200 } })
    try {
      const dest = tmpDir()
      await packerOk(['unpack', '-i', key, viaProxy, '-o', dest], { env })
      expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
      const copy = tmpDir()
      await packerOk(['fetch', viaProxy, '-o', copy, '-q'], { env })
      for (const c of cars()) expect(fs.readFileSync(path.join(copy, c)).equals(fs.readFileSync(path.join(set, c))), c).toBe(true)
      // every request was delayed and answered: none cut, none asked twice for want of patience
      expect(proxy.requests.every((r) => r.status === 200 || r.status === 206)).toBe(true)
      identity(proxy.requests)
    } finally { proxy.clear() }
  })

  it('every request ls, verify and fetch send (set files, ranges, whole CARs, piece URLs) says Accept-Encoding: identity', async () => {
    proxy.clear()
    await packerOk(['ls', '-i', key, viaProxy], { env })
    await packerOk(['verify', viaProxy], { env })
    await packerOk(['fetch', '--manifest', viaProxy, '--piece-url', `${viaProxy}/{pieceCid}.car`, '-o', tmpDir(), '-q'], { env })
    // manifest, index and CARs were all asked for, some by Range, some whole
    const paths = proxy.requests.map((r) => r.path)
    expect(paths).toContain('/set/manifest.json')
    expect(paths.some((p) => p.endsWith('.idx'))).toBe(true)
    expect(proxy.requests.some((r) => r.path.endsWith('.car') && r.range !== undefined)).toBe(true)
    expect(proxy.requests.some((r) => r.path.endsWith('.car') && r.range === undefined)).toBe(true)
    identity(proxy.requests)
    proxy.clear()
  })
})
