import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { CarBufferReader } from '@ipld/car'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Manifest } from '../../src/format/manifest.js'
import { bytes, describeTree, oneLine, packer, packerOk, run, sha256, tmpDir } from '../helpers.js'
import { heliaFetch, heliaNode } from './helia.js'
import { request, startServe, unproxiedEnv, type RunningServe } from './packer-serve.js'

const MiB = 1024 * 1024
const big = bytes(3 * MiB + 12_345, 21) // four 1 MiB leaves under one dag-pb node
const small = bytes(MiB + 1, 22)
const note = Buffer.from('a note, one raw block\n')
let setDir: string
/** The tree the set was packed from. */
let srcDir: string
let manifest: Manifest
const cidOf = new Map<string, string>() // path in the set → CID (packer ls --json)

beforeAll(async () => {
  const src = srcDir = tmpDir()
  fs.mkdirSync(path.join(src, 'docs/sub'), { recursive: true })
  fs.writeFileSync(path.join(src, 'big.bin'), big)
  fs.writeFileSync(path.join(src, 'docs/note.txt'), note)
  fs.writeFileSync(path.join(src, 'docs/sub/small.bin'), small)
  setDir = path.join(tmpDir(), 'set')
  // 2 MiB CARs: several of them, so that one can be misnamed
  await packerOk(['pack', src, '-o', setDir, '--no-encrypt', '-b', '2MiB', '-q'])
  manifest = JSON.parse(fs.readFileSync(path.join(setDir, 'manifest.json'), 'utf8'))
  const ls = await packerOk(['ls', setDir, '--json'])
  for (const line of ls.stdout.trim().split('\n')) {
    const e = JSON.parse(line)
    if (e.cid !== undefined) cidOf.set(e.path, e.cid)
  }
})

/** curl as a piece client would run it, never through a proxy. */
async function curl (args: string[]): Promise<{ status: number, headers: Record<string, string>, body: Buffer }> {
  const dir = tmpDir()
  const r = await run('curl', ['-sS', '--noproxy', '*', '-D', path.join(dir, 'h'), '-o', path.join(dir, 'b'), ...args], { env: unproxiedEnv() })
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`)
  const lines = fs.readFileSync(path.join(dir, 'h'), 'latin1').trim().split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
  return { status: Number(lines[0]!.split(' ')[1]), headers, body: fs.existsSync(path.join(dir, 'b')) ? fs.readFileSync(path.join(dir, 'b')) : Buffer.alloc(0) }
}

/** The blocks of a CAR response, each checked against its CID. */
async function carBlocks (body: Buffer): Promise<{ roots: string[], blocks: Array<{ cid: CID, bytes: Uint8Array }> }> {
  const car = CarBufferReader.fromBytes(body)
  const blocks = [...car.blocks()]
  for (const b of blocks) expect(Buffer.from(b.cid.multihash.digest).equals(crypto.createHash('sha256').update(b.bytes).digest())).toBe(true)
  return { roots: car.getRoots().map(String), blocks }
}

/** A UnixFS file read from a CAR response's blocks alone. */
async function fileFromCar (blocks: Array<{ cid: CID, bytes: Uint8Array }>, cid: string): Promise<Buffer> {
  const store = new Map(blocks.map((b) => [b.cid.toString(), b.bytes]))
  const blockstore = { get: async function * (c: CID) { const b = store.get(c.toString()); if (b === undefined) throw new Error(`block ${c} is not in the CAR`); yield b } }
  const entry = await exporter(CID.parse(cid), blockstore as any)
  const parts: Uint8Array[] = []
  for await (const p of entry.content()) parts.push(p as Uint8Array)
  return Buffer.concat(parts)
}

describe('packer serve', () => {
  let s: RunningServe
  beforeAll(async () => { s = await startServe(setDir) })
  afterAll(async () => { await s?.stop() })

  it('serves each piece at /piece/{v1 and v2 piece CID}: HEAD, curl -r ranges, 416, never compressed', async () => {
    expect(manifest.cars.length).toBeGreaterThanOrEqual(3)
    for (const car of manifest.cars) {
      const file = fs.readFileSync(path.join(setDir, car.file))
      const head = await curl(['-I', '-H', 'Accept-Encoding: gzip, br', `${s.url}/piece/${car.pieceCid}`])
      expect(head.status).toBe(200)
      expect(head.headers).toMatchObject({
        'content-length': String(car.size),
        'content-type': 'application/vnd.ipld.car; version=1',
        etag: `"${car.pieceCid}"`,
        'cache-control': 'public, max-age=29030400, immutable',
        'accept-ranges': 'bytes',
      })
      expect(head.headers['content-encoding']).toBeUndefined()
      for (const cid of [car.pieceCid, car.pieceCidV2]) {
        const whole = await curl(['-H', 'Accept-Encoding: gzip', `${s.url}/piece/${cid}`])
        expect(whole.status).toBe(200)
        expect(whole.body.equals(file)).toBe(true)
        const first = await curl(['-r', '0-99', `${s.url}/piece/${cid}`])
        expect(first).toMatchObject({ status: 206, headers: { 'content-range': `bytes 0-99/${car.size}`, 'content-length': '100' } })
        expect(first.body.equals(file.subarray(0, 100))).toBe(true)
        const middle = await curl(['-r', '1000-', `${s.url}/piece/${cid}`])
        expect(middle.headers['content-range']).toBe(`bytes 1000-${car.size - 1}/${car.size}`)
        expect(middle.body.equals(file.subarray(1000))).toBe(true)
        const suffix = await curl(['-r', '-50', '-H', 'Accept-Encoding: gzip', `${s.url}/piece/${cid}`])
        expect(suffix.status).toBe(206)
        expect(suffix.headers['content-encoding']).toBeUndefined()
        expect(suffix.body.equals(file.subarray(-50))).toBe(true)
        const past = await curl(['-r', `${car.size}-`, `${s.url}/piece/${cid}`])
        expect(past).toMatchObject({ status: 416, headers: { 'content-range': `bytes */${car.size}` } })
      }
    }
  })

  it('answers the piece locator /piece?id= with 200 and the bytes, or 404', async () => {
    const car = manifest.cars[1]!
    const file = fs.readFileSync(path.join(setDir, car.file))
    const head = await curl(['-I', `${s.url}/piece?id=${car.pieceCidV2}`])
    expect(head).toMatchObject({ status: 200, headers: { 'content-length': String(car.size) } })
    const get = await curl([`${s.url}/piece?id=${car.pieceCid}`])
    expect(get.status).toBe(200)
    expect(get.body.equals(file)).toBe(true)
    // a piece of no CAR here, a CID that is not a piece CID, and no CID at all
    const other = 'baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq'
    for (const target of [`/piece?id=${other}`, `/piece/${other}`, `/piece?id=${manifest.root}`, '/piece?id=nonsense', '/piece', '/piece/']) {
      expect((await request(s.url, target)).status, target).toBe(404)
      expect((await request(s.url, target, { method: 'HEAD' })).status, target).toBe(404)
    }
  })

  it('serves the set\'s own files by name, as a static server would, and nothing else', async () => {
    for (const name of ['manifest.json', 'blocks.idx', ...manifest.cars.map((c) => c.file)]) {
      const r = await request(s.url, `/${name}`)
      expect(r.status, name).toBe(200)
      expect(r.body.equals(fs.readFileSync(path.join(setDir, name))), name).toBe(true)
    }
    const car = manifest.cars[0]!
    const range = await request(s.url, `/${car.file}`, { headers: { Range: 'bytes=5-9' } })
    expect(range).toMatchObject({ status: 206, headers: { 'content-range': `bytes 5-9/${car.size}`, etag: `"${car.pieceCid}"` } })
    expect((await request(s.url, '/manifest.json')).headers['content-type']).toBe('application/json')
    expect((await request(s.url, '/')).status).toBe(404)
    expect((await request(s.url, '/manifest.json', { method: 'POST' })).status).toBe(405)
  })

  it('reaches nothing outside the set: .., encoded slashes and dots, //, symlinks, files beside the set', async () => {
    const outside = path.join(path.dirname(setDir), 'secret.txt')
    fs.writeFileSync(outside, 'SECRET outside the set\n')
    fs.writeFileSync(path.join(setDir, 'beside.txt'), 'SECRET beside the set\n')
    fs.symlinkSync(outside, path.join(setDir, 'link.car'))
    fs.symlinkSync(outside, path.join(setDir, 'link.json'))
    try {
      const targets = [
        '/../secret.txt', '/..%2fsecret.txt', '/..%2Fsecret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/.%2e/secret.txt',
        '//secret.txt', '/set/../secret.txt', '/beside.txt', '/link.car', '/link.json', '/./manifest.json/../../secret.txt',
        '/manifest.json/', '/%2fetc%2fpasswd', '//etc/passwd', '/..\\secret.txt', '/ipfs/../secret.txt', '/ipfs/..%2fsecret.txt',
        '/piece/..%2fsecret.txt', '/piece/../../secret.txt', '/piece?id=../secret.txt', `/ipfs/${manifest.root}/..%2f..%2fsecret.txt?format=car`,
        `/ipfs/${manifest.root}/../../secret.txt?format=car`, '/%00manifest.json', '/manifest.json%00', '/blocks.idx%2f..%2f..%2fsecret.txt',
      ]
      for (const target of targets) {
        const r = await request(s.url, target)
        expect([400, 404], target).toContain(r.status)
        expect(r.body.toString('latin1'), target).not.toContain('SECRET')
      }
      // a request target that is not a path at all
      const absolute = await request(s.url, `http://127.0.0.1/${'..'}/secret.txt`)
      expect(absolute.status).toBe(404)
    } finally {
      for (const f of ['beside.txt', 'link.car', 'link.json']) fs.rmSync(path.join(setDir, f))
    }
  })

  describe('trustless gateway', () => {
    it('answers the bafkqaaa probe (raw: empty; car: a CAR whose root is bafkqaaa)', async () => {
      const raw = await request(s.url, '/ipfs/bafkqaaa?format=raw', { headers: { Accept: 'application/vnd.ipld.raw' } })
      expect(raw).toMatchObject({ status: 200, headers: { 'content-type': 'application/vnd.ipld.raw', 'content-length': '0' } })
      expect((await request(s.url, '/ipfs/bafkqaaa', { method: 'HEAD', headers: { Accept: 'application/vnd.ipld.raw' } })).status).toBe(200)
      const car = await request(s.url, '/ipfs/bafkqaaa?format=car')
      expect(car.status).toBe(200)
      expect(await carBlocks(car.body)).toEqual({ roots: ['bafkqaaa'], blocks: [] })
    })

    it('serves every block of a file as a raw block with the spec\'s headers, checked against its CID', async () => {
      const fileCid = cidOf.get('big.bin')!
      const all = await carBlocks((await request(s.url, `/ipfs/${fileCid}?format=car`)).body)
      expect(all.blocks).toHaveLength(5)
      for (const { cid, bytes } of all.blocks) {
        const r = await request(s.url, `/ipfs/${cid}?format=raw`)
        expect(r.status).toBe(200)
        expect(r.headers).toMatchObject({
          'content-type': 'application/vnd.ipld.raw',
          'content-length': String(bytes.length),
          etag: `"${cid}.raw"`,
          'cache-control': 'public, max-age=29030400, immutable',
          'content-disposition': `attachment; filename="${cid}.bin"`,
          'x-content-type-options': 'nosniff',
        })
        expect(r.body.equals(bytes)).toBe(true)
        // by the Accept header alone too
        expect((await request(s.url, `/ipfs/${cid}`, { headers: { Accept: 'application/vnd.ipld.raw' } })).body.equals(bytes)).toBe(true)
      }
    })

    it('refuses what is not in the set (404) and requests it does not serve (400, 406)', async () => {
      const unknown = 'bafkreigkg4ckucyg6wkuy6poqn72ufjnqtllfvbihdygg6qv5wudg7n5zy'
      for (const target of [`/ipfs/${unknown}?format=raw`, `/ipfs/${unknown}?format=car`, `/ipfs/${manifest.root}/docs/missing.txt?format=car`]) {
        expect((await request(s.url, target)).status, target).toBe(404)
        expect((await request(s.url, target, { method: 'HEAD' })).status, target).toBe(404)
      }
      expect((await request(s.url, '/ipfs/not-a-cid?format=raw')).status).toBe(400)
      expect((await request(s.url, `/ipfs/${manifest.root}`)).status).toBe(400) // no format: this gateway does not deserialize
      expect((await request(s.url, `/ipfs/${manifest.root}/docs?format=raw`)).status).toBe(400)
      expect((await request(s.url, `/ipfs/${manifest.root}?format=tar`)).status).toBe(406)
      expect((await request(s.url, `/ipfs/${manifest.root}?format=car&dag-scope=some`)).status).toBe(400)
      expect((await request(s.url, `/ipfs/${manifest.root}?format=car&entity-bytes=9:3`)).status).toBe(400)
    })

    it('serves CARs: dag-scope all, entity and block, entity-bytes, paths, dups', async () => {
      const root = manifest.root
      const all = await request(s.url, `/ipfs/${root}?format=car`)
      expect(all.headers).toMatchObject({
        'content-type': 'application/vnd.ipld.car; version=1; order=dfs; dups=n',
        'content-disposition': `attachment; filename="${root}.car"`,
        'cache-control': 'public, max-age=29030400, immutable',
      })
      const everything = await carBlocks(all.body)
      expect(everything.roots).toEqual([root])
      expect(everything.blocks[0]!.cid.toString()).toBe(root)
      expect(new Set(everything.blocks.map((b) => b.cid.toString())).size).toBe(everything.blocks.length)
      expect((await fileFromCar(everything.blocks, cidOf.get('big.bin')!)).equals(big)).toBe(true)
      expect((await fileFromCar(everything.blocks, cidOf.get('docs/sub/small.bin')!)).equals(small)).toBe(true)

      // a path: the blocks that prove it, then the file
      const byPath = await request(s.url, `/ipfs/${root}/docs/sub/small.bin?format=car&dag-scope=entity`)
      const proven = await carBlocks(byPath.body)
      // root, docs, docs/sub, then the file's node and its two leaves
      expect(proven.blocks).toHaveLength(6)
      expect(proven.blocks[0]!.cid.toString()).toBe(root)
      expect(proven.blocks[3]!.cid.toString()).toBe(cidOf.get('docs/sub/small.bin'))
      expect((await fileFromCar(proven.blocks, cidOf.get('docs/sub/small.bin')!)).equals(small)).toBe(true)
      expect(byPath.headers.etag).not.toBe(all.headers.etag)

      // a directory as an entity: its node alone, not what is in it
      const dir = await carBlocks((await request(s.url, `/ipfs/${root}?format=car&dag-scope=entity`)).body)
      expect(dir.blocks.map((b) => b.cid.toString())).toEqual([root])
      const block = await carBlocks((await request(s.url, `/ipfs/${cidOf.get('big.bin')}?format=car&dag-scope=block`)).body)
      expect(block.blocks).toHaveLength(1)

      // entity-bytes: the blocks that hold those bytes (the file's node, then leaves)
      const file = cidOf.get('big.bin')!
      const leaves = (await carBlocks((await request(s.url, `/ipfs/${file}?format=car`)).body)).blocks.slice(1)
      const range = async (q: string): Promise<string[]> => (await carBlocks((await request(s.url, `/ipfs/${file}?format=car&entity-bytes=${q}`)).body)).blocks.map((b) => b.cid.toString())
      expect(await range('0:99')).toEqual([file, leaves[0]!.cid.toString()])
      expect(await range(`${MiB - 1}:${MiB}`)).toEqual([file, leaves[0]!.cid.toString(), leaves[1]!.cid.toString()])
      expect(await range('-10:*')).toEqual([file, leaves[3]!.cid.toString()])
      expect(await range(`${2 * MiB}:-1`)).toEqual([file, leaves[2]!.cid.toString(), leaves[3]!.cid.toString()])
      expect(await range(`${10 * MiB}:*`)).toEqual([file]) // past the end: the file's node, which says its size

      // dups=y asked in Accept: said in Content-Type
      const dups = await request(s.url, `/ipfs/${root}`, { headers: { Accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=y' } })
      expect(dups.headers['content-type']).toBe('application/vnd.ipld.car; version=1; order=dfs; dups=y')
      expect((await request(s.url, `/ipfs/${root}`, { headers: { Accept: 'application/vnd.ipld.car; version=2' } })).status).toBe(406)
    })

    it('Helia fetches the files by CID and by path and gets their bytes', async () => {
      await heliaNode()
      const source = new Map([['big.bin', big], ['docs/note.txt', note], ['docs/sub/small.bin', small]])
      for (const [p, content] of source) {
        const byCid = await heliaFetch(s.url, cidOf.get(p)!, { timeoutMs: 60_000 })
        expect(sha256(byCid), p).toBe(sha256(content))
      }
      const byPath = await heliaFetch(s.url, manifest.root, { path: 'docs/sub/small.bin', timeoutMs: 60_000 })
      expect(sha256(byPath)).toBe(sha256(small))
    })

    it('logs every request, as JSON lines with --json', async () => {
      await request(s.url, '/manifest.json')
      await new Promise((resolve) => setTimeout(resolve, 200))
      const last = s.log.at(-1)!
      expect(last).toMatchObject({ event: 'request', method: 'GET', url: '/manifest.json', status: 200, complete: true, remote: '127.0.0.1' })
      expect(last.bytes).toBeGreaterThan(fs.statSync(path.join(setDir, 'manifest.json')).size)
    })
  })
})

describe('packer reads a set packer serve serves, as any hosted set', () => {
  let s: RunningServe
  /** A directory with only the set's manifest.json and blocks.idx (the CARs from --piece-url). */
  let manifestOnly: string
  beforeAll(async () => {
    s = await startServe(setDir)
    manifestOnly = tmpDir()
    for (const f of ['manifest.json', 'blocks.idx']) fs.copyFileSync(path.join(setDir, f), path.join(manifestOnly, f))
  })
  afterAll(async () => { await s?.stop() })
  const env = unproxiedEnv()
  /** The paths of requests to /piece/ logged since `from` (an index into the access log). */
  const pieceGets = async (from: number): Promise<string[]> => {
    await new Promise((resolve) => setTimeout(resolve, 200)) // the log line comes after the answer
    return s.log.slice(from).map((e) => e.url as string).filter((u) => u.startsWith('/piece/'))
  }

  it('ls, unpack and fetch over the served set\'s URL give what they give on the directory', async () => {
    expect((await packerOk(['ls', '-l', s.url], { env })).stdout).toBe((await packerOk(['ls', '-l', setDir])).stdout)
    const dest = tmpDir()
    await packerOk(['unpack', s.url, '-o', dest], { env })
    expect(describeTree(dest)).toEqual(describeTree(srcDir))
    const copy = tmpDir()
    await packerOk(['fetch', s.url, '-o', copy, '-q'], { env })
    expect(fs.readdirSync(copy).filter((n) => n.endsWith('.car')).sort()).toEqual(manifest.cars.map((c) => c.file).sort())
    for (const c of manifest.cars) expect(fs.readFileSync(path.join(copy, c.file)).equals(fs.readFileSync(path.join(setDir, c.file))), c.file).toBe(true)
    await packerOk(['verify', copy])
  })

  for (const [name, field] of [['{pieceCid}', 'pieceCid'], ['{pieceCidV2}', 'pieceCidV2']] as const) {
    it(`unpack with --piece-url .../piece/${name}, the manifest from the set's URL or a local directory: the tree byte for byte`, async () => {
      for (const from of [s.url, manifestOnly]) {
        const before = s.log.length
        const dest = tmpDir()
        await packerOk(['unpack', from, '--piece-url', `${s.url}/piece/${name}`, '-o', dest], { env })
        expect(describeTree(dest), from).toEqual(describeTree(srcDir))
        // the CARs were read at /piece/ under the CIDs the template names, and under no other
        const asked = new Set(await pieceGets(before))
        expect(asked.size, from).toBeGreaterThan(0)
        const named = new Set(manifest.cars.map((c) => `/piece/${c[field]}`))
        for (const u of asked) expect(named.has(u), u).toBe(true)
      }
    })
  }
})

describe('packer serve finds pieces by content', () => {
  it('serves a misnamed CAR under its own piece CID and name, never another, and a truncated one not at all', async () => {
    const dir = path.join(tmpDir(), 'set')
    fs.cpSync(setDir, dir, { recursive: true })
    const [a, b, c] = manifest.cars
    const bytesOf = (car: typeof a): Buffer => fs.readFileSync(path.join(setDir, car!.file))
    // a and b swap names; c is cut short
    fs.renameSync(path.join(dir, a!.file), path.join(dir, 'tmp.car'))
    fs.renameSync(path.join(dir, b!.file), path.join(dir, a!.file))
    fs.renameSync(path.join(dir, 'tmp.car'), path.join(dir, b!.file))
    fs.truncateSync(path.join(dir, c!.file), c!.size - 1)
    const s = await startServe(dir)
    try {
      for (const car of [a!, b!]) {
        for (const target of [`/piece/${car.pieceCid}`, `/piece/${car.pieceCidV2}`, `/piece?id=${car.pieceCid}`, `/${car.file}`]) {
          const r = await request(s.url, target)
          expect(r.status, target).toBe(200)
          expect(r.body.equals(bytesOf(car)), target).toBe(true)
        }
        const range = await curl(['-r', '100-199', `${s.url}/piece/${car.pieceCid}`])
        expect(range.body.equals(bytesOf(car).subarray(100, 200))).toBe(true)
      }
      for (const target of [`/piece/${c!.pieceCid}`, `/piece?id=${c!.pieceCidV2}`, `/${c!.file}`]) {
        expect((await request(s.url, target)).status, target).toBe(404)
      }
    } finally {
      await s.stop()
    }
  })
})

describe('packer serve under load', () => {
  it('answers 429 past --max-requests, and closes connections idle past --timeout', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'large.bin'), bytes(48 * MiB, 23))
    const dir = path.join(tmpDir(), 'set')
    await packerOk(['pack', src, '-o', dir, '--no-encrypt', '-b', '64MiB', '-q'])
    const car = (JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest).cars[0]!
    const s = await startServe(dir, ['--max-requests', '2', '--timeout', '2'])
    const stalled: net.Socket[] = []
    try {
      // two clients ask for the whole piece and read nothing: their responses stay in flight
      const port = Number(new URL(s.url).port)
      for (let i = 0; i < 2; i++) {
        const socket = net.connect(port, '127.0.0.1')
        socket.on('error', () => {})
        await new Promise((resolve) => socket.once('connect', resolve))
        socket.write(`GET /piece/${car.pieceCid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
        socket.pause()
        stalled.push(socket)
      }
      await new Promise((resolve) => setTimeout(resolve, 300))
      const busy = await request(s.url, `/piece/${car.pieceCid}`, { method: 'HEAD' })
      expect(busy).toMatchObject({ status: 429, headers: { 'retry-after': '1' } })
      // both stalled readers are cut off after 2 s without progress, which frees their places (they cannot tell:
      // a paused socket sees the end only after the bytes before it)
      const started = Date.now()
      let status = busy.status
      while (status === 429 && Date.now() - started < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 250))
        status = (await request(s.url, `/piece/${car.pieceCid}`, { method: 'HEAD' })).status
      }
      expect(status).toBe(200)
      expect(Date.now() - started).toBeGreaterThan(1_000)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const cut = s.log.filter((e) => e.method === 'GET' && !e.complete)
      expect(cut).toHaveLength(2)
      expect(cut.every((e) => e.status === 200 && e.bytes < car.size && e.remote === '127.0.0.1')).toBe(true)
    } finally {
      for (const socket of stalled) socket.destroy()
      await s.stop()
    }
  })
})

describe('serve() from the library', () => {
  it('serves an encrypted set: its pieces and its blocks (ciphertext, as in the CARs), no paths through hidden names', async () => {
    const work = tmpDir()
    const src = path.join(work, 'src')
    fs.mkdirSync(path.join(src, 'docs'), { recursive: true })
    fs.writeFileSync(path.join(src, 'docs/note.txt'), note)
    const key = await packerOk(['keygen', '-o', path.join(work, 'key.txt')])
    const recipient = /age1[0-9a-z]+/.exec(key.stdout + key.stderr)![0]
    const dir = path.join(work, 'set')
    await packerOk(['pack', src, '-o', dir, '-r', recipient, '-q'])
    const m: Manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
    const { serve } = await import('../../src/index.js')
    const server = await serve(dir, { port: 0 })
    try {
      expect(server).toMatchObject({ host: '127.0.0.1', setId: m.table.cid, cars: m.cars.length })
      const piece = await request(server.url, `/piece/${m.cars[0]!.pieceCidV2}`)
      expect(piece.body.equals(fs.readFileSync(path.join(dir, m.cars[0]!.file)))).toBe(true)
      // the set ID is the table index's CID: an age file, served as the CARs hold it
      const index = await carBlocks((await request(server.url, `/ipfs/${m.table.cid}?format=car`)).body)
      expect(index.blocks.length).toBeGreaterThan(0)
      expect(Buffer.from((await fileFromCar(index.blocks, m.table.cid)).subarray(0, 21)).toString()).toBe('age-encryption.org/v1')
      expect((await request(server.url, `/ipfs/${m.root}/docs/note.txt?format=car`)).status).toBe(404)
    } finally {
      await server.close()
    }
  })
})

describe('packer serve refuses', () => {
  it('a --listen that is not HOST:PORT, an address in use, and a directory that is not a set, each in one line', async () => {
    const bad = await packer(['serve', setDir, '--listen', 'localhost'])
    expect(bad.code).toBe(2)
    expect(oneLine(bad.stderr)).toMatch(/^packer: --listen: 'localhost' is not HOST:PORT/)
    const s = await startServe(setDir)
    try {
      const taken = await packer(['serve', setDir, '--listen', new URL(s.url).host])
      expect(taken.code).toBe(2)
      expect(oneLine(taken.stderr)).toMatch(/^packer: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/)
    } finally {
      await s.stop()
    }
    const notSet = await packer(['serve', tmpDir()])
    expect(notSet.code).toBe(1)
    expect(oneLine(notSet.stderr)).toMatch(/manifest\.json not found/)
  })
})

describe('packer serve: paths through a sharded (HAMT) directory', () => {
  it('proves a path through the shards in a CAR, lists a sharded directory as its shard nodes, and Helia follows it', async () => {
    const src = tmpDir()
    fs.mkdirSync(path.join(src, 'many'))
    // names long enough that the directory passes the 256 KiB shard-split threshold
    for (let i = 0; i < 4000; i++) fs.writeFileSync(path.join(src, 'many', `a-file-with-a-rather-long-name-${String(i).padStart(5, '0')}.txt`), `file ${i}\n`)
    const dir = path.join(tmpDir(), 'set')
    await packerOk(['pack', src, '-o', dir, '--no-encrypt', '-q'])
    const m: Manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
    const s = await startServe(dir)
    try {
      const name = 'a-file-with-a-rather-long-name-01234.txt'
      const car = await carBlocks((await request(s.url, `/ipfs/${m.root}/many/${name}?format=car`)).body)
      // root, the sharded directory's root node, at least one sub-shard, then the file: a client checks the path with these
      expect(car.blocks.length).toBeGreaterThanOrEqual(4)
      expect(Buffer.from(car.blocks.at(-1)!.bytes).toString()).toBe('file 1234\n')
      const shards = await carBlocks((await request(s.url, `/ipfs/${m.root}/many?format=car&dag-scope=entity`)).body)
      expect(shards.blocks.length).toBeGreaterThan(1)
      expect(shards.blocks.every((b) => b.cid.code === 0x70)).toBe(true) // dag-pb shard nodes, none of the files
      expect((await heliaFetch(s.url, m.root, { path: `many/${name}`, timeoutMs: 60_000 })).toString()).toBe('file 1234\n')
    } finally {
      await s.stop()
    }
  })
})
