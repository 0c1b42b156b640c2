import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, packerOk, run, sha256, tmpDir } from '../helpers.js'
import { heliaFetch, heliaNode, heliaVerifiedFetch } from './helia.js'
import { startServe, type RunningServe } from './packer-serve.js'
import { freePort } from './ports.js'

/** What a client asked the stand-in gateway. */
interface GatewayRequest { method: string, url: string, accept: string | undefined }

/**
 * The least a trustless gateway must do (https://specs.ipfs.tech/http-gateways/trustless-gateway/): one block by CID
 * as `application/vnd.ipld.raw`, asked for with `?format=raw` or the Accept header; 404 for a block it lacks. It
 * serves a directory of blocks named by CID, records every request, and answers anything else 400, so a request
 * `packer serve` would need to answer shows up in `requests`.
 */
async function standInGateway (blocksDir: string, opts: { corrupt?: string } = {}): Promise<{ url: string, requests: GatewayRequest[], close: () => Promise<void> }> {
  const requests: GatewayRequest[] = []
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, accept: req.headers.accept })
    const url = new URL(req.url!, 'http://gateway')
    const raw = url.searchParams.get('format') === 'raw' || (req.headers.accept ?? '').includes('application/vnd.ipld.raw')
    const match = /^\/ipfs\/([a-z0-9]+)$/.exec(url.pathname)
    let cid: CID | undefined
    try { cid = match === null ? undefined : CID.parse(match[1]) } catch {}
    if (!raw || cid === undefined || !['GET', 'HEAD'].includes(req.method!)) {
      res.writeHead(400).end()
      return
    }
    let block: Buffer
    try {
      block = fs.readFileSync(path.join(blocksDir, cid.toString()))
    } catch {
      res.writeHead(404).end()
      return
    }
    if (cid.toString() === opts.corrupt) block = Buffer.concat([block.subarray(0, -1), Buffer.from([block.at(-1)! ^ 1])])
    res.writeHead(200, {
      'Content-Type': 'application/vnd.ipld.raw',
      'Content-Length': block.length,
      ETag: `"${cid.toString()}.raw"`,
      'Cache-Control': 'public, max-age=29030400, immutable',
      'X-Content-Type-Options': 'nosniff',
    })
    res.end(req.method === 'HEAD' ? undefined : block)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

const TIMEOUT_MS = 30_000
// 1 MiB leaves, as packer's sets have them (docs/FORMAT.md)
const CHUNK = 1024 * 1024
const big = bytes(3 * CHUNK + 12_345, 11) // four leaves under one dag-pb node
const small = bytes(CHUNK + 1, 12) // two leaves
const note = Buffer.from('a note, one raw block\n')
let blocksDir: string
const cids = new Map<string, string>() // importer path ('' for the root) → CID
const blocksOf = new Map<string, string[]>() // importer path → CIDs of the blocks the importer wrote for that file

beforeAll(async () => {
  blocksDir = tmpDir()
  let written: string[] = []
  const blockstore = {
    put: async (cid: CID, block: Uint8Array) => {
      fs.writeFileSync(path.join(blocksDir, cid.toString()), block)
      written.push(cid.toString())
      return cid
    },
  }
  const entries = [
    { path: 'big.bin', content: big },
    { path: 'docs/note.txt', content: note },
    { path: 'docs/sub/small.bin', content: small },
  ]
  for await (const entry of importer(entries, blockstore, {
    wrapWithDirectory: true, cidVersion: 1, rawLeaves: true, chunker: fixedSize({ chunkSize: CHUNK }), fileImportConcurrency: 1,
  })) {
    cids.set(entry.path ?? '', entry.cid.toString())
    blocksOf.set(entry.path ?? '', written)
    written = []
  }
  await heliaNode() // fetches Node 24 once (when this Node is too old for Helia), outside the tests' timings
})

describe('Helia fetching from a trustless gateway', () => {
  let gateway: Awaited<ReturnType<typeof standInGateway>>
  beforeAll(async () => { gateway = await standInGateway(blocksDir) })
  afterAll(async () => { await gateway.close() })

  it('fetches a file of several blocks by CID, asking only GET /ipfs/{cid}?format=raw for each block', async () => {
    const fileCid = cids.get('big.bin')!
    expect(blocksOf.get('big.bin')).toHaveLength(5)
    gateway.requests.length = 0
    const got = await heliaFetch(gateway.url, fileCid, { timeoutMs: TIMEOUT_MS })
    expect(got.equals(big)).toBe(true)
    // each block once, the root node first
    expect(gateway.requests[0].url).toBe(`/ipfs/${fileCid}?format=raw`)
    expect(sorted(gateway.requests)).toEqual(sorted(blocksOf.get('big.bin')!.map((cid) => ({
      method: 'GET', url: `/ipfs/${cid}?format=raw`, accept: 'application/vnd.ipld.raw',
    }))))
  })

  it('fetches files inside a directory by path', async () => {
    const root = cids.get('')!
    expect((await heliaFetch(gateway.url, root, { path: 'docs/sub/small.bin', timeoutMs: TIMEOUT_MS })).equals(small)).toBe(true)
    expect((await heliaFetch(gateway.url, root, { path: 'docs/note.txt', timeoutMs: TIMEOUT_MS })).equals(note)).toBe(true)
    await expect(heliaFetch(gateway.url, root, { path: 'docs/missing.txt', timeoutMs: TIMEOUT_MS }))
      .rejects.toThrow(/^helia-fetch: file does not exist$/)
  })

  it('reports a CID the gateway does not have, in one line', async () => {
    const unknown = 'bafkreigkg4ckucyg6wkuy6poqn72ufjnqtllfvbihdygg6qv5wudg7n5zy' // sha-256 of "nope"
    gateway.requests.length = 0
    await expect(heliaFetch(gateway.url, unknown, { timeoutMs: TIMEOUT_MS })).rejects.toThrow(
      `helia-fetch: Failed to load block for ${unknown}: Unable to fetch raw block for CID ${unknown} from any gateway`)
    expect(gateway.requests).toEqual([{ method: 'GET', url: `/ipfs/${unknown}?format=raw`, accept: 'application/vnd.ipld.raw' }])
  })

  it('talks to nothing but the gateway: passes with proxy variables pointing at a closed port, refuses other hosts', async () => {
    const trap = await proxyTrap()
    const got = await heliaFetch(gateway.url, cids.get('')!, { path: 'docs/sub/small.bin', timeoutMs: TIMEOUT_MS, env: trap })
    expect(got.equals(small)).toBe(true)

    // the trap works: a fetch to another host under it goes to the closed port and fails at once
    const node = await heliaNode()
    const probe = await run(node, ['-e', 'fetch("http://192.0.2.1/").then(() => process.exit(0), (e) => { console.error(e.cause?.code); process.exit(1) })'], { env: trap })
    expect(probe).toMatchObject({ code: 1, stderr: 'ECONNREFUSED\n' })
    // and the client itself connects to 127.0.0.1 only (here without a proxy, which the test's own environment may set)
    const noProxy = { NODE_USE_ENV_PROXY: '', HTTP_PROXY: '', HTTPS_PROXY: '', http_proxy: '', https_proxy: '' }
    await expect(heliaFetch('http://192.0.2.1', cids.get('big.bin')!, { timeoutMs: TIMEOUT_MS, env: noProxy }))
      .rejects.toThrow('helia-fetch: refused to connect to 192.0.2.1:80: this client talks to 127.0.0.1 only')
  })
})

it('rejects a block whose bytes do not match its CID (@helia/unixfs and @helia/verified-fetch)', async () => {
  const corrupt = blocksOf.get('big.bin')![3]
  const gateway = await standInGateway(blocksDir, { corrupt })
  try {
    // Helia says no more than for a missing block (its broker drops a block that fails validation), but without the
    // check it would have written the altered bytes and exited 0
    await expect(heliaFetch(gateway.url, cids.get('big.bin')!, { timeoutMs: TIMEOUT_MS })).rejects.toThrow(
      `helia-fetch: Failed to load block for ${corrupt}: Unable to fetch raw block for CID ${corrupt} from any gateway`)
    expect(gateway.requests.filter((r) => r.url === `/ipfs/${corrupt}?format=raw`)).toHaveLength(1)

    // verified-fetch, given the same altered block, never gives the file: it answers 502 when the block fails before
    // the first byte is out, else its body stream fails there (a leaf after the first, as here: the usual case)
    const outcome = await heliaVerifiedFetch(gateway.url, cids.get('big.bin')!, { timeoutMs: TIMEOUT_MS })
      .then((r) => `${r.status} ${r.body.toString()}`, (err: Error) => err.message)
    expect(outcome).toMatch(/^(502 |helia-fetch: )/)
    expect(outcome).toContain(`Failed to load block for ${corrupt}`)
  } finally {
    await gateway.close()
  }
})

describe('@helia/verified-fetch reading packer serve', () => {
  const unknown = 'bafkreigkg4ckucyg6wkuy6poqn72ufjnqtllfvbihdygg6qv5wudg7n5zy' // sha-256 of "nope"
  const source = new Map([['big.bin', big], ['docs/note.txt', note], ['docs/sub/small.bin', small]])
  const setCids = new Map<string, string>() // path in the set → CID (packer ls --json)
  let setRoot: string
  let s: RunningServe
  let trap: NodeJS.ProcessEnv
  beforeAll(async () => {
    const src = tmpDir()
    for (const [p, content] of source) {
      fs.mkdirSync(path.dirname(path.join(src, p)), { recursive: true })
      fs.writeFileSync(path.join(src, p), content)
    }
    const setDir = path.join(tmpDir(), 'set')
    await packerOk(['pack', src, '-o', setDir, '--no-encrypt', '-q'])
    setRoot = JSON.parse(fs.readFileSync(path.join(setDir, 'manifest.json'), 'utf8')).root
    for (const line of (await packerOk(['ls', setDir, '--json'])).stdout.trim().split('\n')) {
      const e = JSON.parse(line)
      if (e.cid !== undefined) setCids.set(e.path, e.cid)
    }
    s = await startServe(setDir)
    trap = await proxyTrap()
  })
  afterAll(async () => { await s?.stop() })

  /** verified-fetch under the proxy trap; then what packer serve logged for it, once the log has caught up. */
  async function fetchLogged (cid: string, p?: string): Promise<[Awaited<ReturnType<typeof heliaVerifiedFetch>>, Array<Record<string, any>>]> {
    const from = s.log.length
    const response = await heliaVerifiedFetch(s.url, cid, { path: p, timeoutMs: TIMEOUT_MS, env: trap })
    await new Promise((resolve) => setTimeout(resolve, 200))
    return [response, s.log.slice(from)]
  }

  it('fetches ipfs://{cid} of each file, and its bytes are the source file\'s; every request is GET /ipfs/{cid}?format=raw from 127.0.0.1', async () => {
    // packer lays files out as ipfs-unixfs-importer does with 1 MiB raw leaves: the same CIDs as the stand-in's blocks
    expect(setCids.get('big.bin')).toBe(cids.get('big.bin'))
    for (const [p, content] of source) {
      const [response, log] = await fetchLogged(setCids.get(p)!)
      expect(response.status, p).toBe(200)
      expect(response.headers.etag, p).toBe(`"${setCids.get(p)}"`)
      expect(sha256(response.body), p).toBe(sha256(content))
      // the file's blocks, of packer serve and of nothing else (the child cannot reach past 127.0.0.1); a block may be
      // asked twice (Helia's broker asks again when an answer is slow: seen on a loaded machine)
      expect(log.every((e) => e.event === 'request' && e.remote === '127.0.0.1' && e.method === 'GET' && e.status === 200), p).toBe(true)
      expect([...new Set(log.map((e) => e.url))].sort(), p).toEqual(blocksOf.get(p)!.map((cid) => `/ipfs/${cid}?format=raw`).sort())
    }
  })

  it('fetches ipfs://{root}/path/in/dir and gets the source file\'s bytes', async () => {
    for (const p of ['docs/sub/small.bin', 'docs/note.txt']) {
      const [response, log] = await fetchLogged(setRoot, p)
      expect(response.status, p).toBe(200)
      expect(response.headers['x-ipfs-path'], p).toBe(`/ipfs/${setRoot}/${p}`)
      expect(sha256(response.body), p).toBe(sha256(source.get(p)!))
      expect(log.length, p).toBeGreaterThan(0)
      expect(log.every((e) => e.remote === '127.0.0.1' && /^\/ipfs\/[a-z0-9]+\?format=raw$/.test(e.url) && e.status === 200), p).toBe(true)
    }
  })

  it('answers 404 for a path not in the directory, and 500 (LoadBlockFailedError) for a CID the set lacks, which packer serve answered 404', async () => {
    const [missingPath] = await fetchLogged(setRoot, 'docs/missing.txt')
    expect(missingPath.status).toBe(404)
    const [missingCid, log] = await fetchLogged(unknown)
    // verified-fetch 4 says 500 for a block no gateway has: what packer serve said is in its log
    expect(missingCid.status).toBe(500)
    expect(JSON.parse(missingCid.body.toString()).error).toMatchObject({ name: 'LoadBlockFailedError', message: `Failed to load block for ${unknown}` })
    expect(log.length).toBeGreaterThan(0)
    expect(log.every((e) => e.url === `/ipfs/${unknown}?format=raw` && e.status === 404)).toBe(true)
  })
})

/** Proxy variables pointing at a closed port: a client that used them for anything would fail. */
async function proxyTrap (): Promise<NodeJS.ProcessEnv> {
  const closed = await freePort()
  return {
    NODE_USE_ENV_PROXY: '1', // Node 24's fetch uses the variables below only when asked to
    HTTP_PROXY: `http://127.0.0.1:${closed}`,
    HTTPS_PROXY: `http://127.0.0.1:${closed}`,
    http_proxy: `http://127.0.0.1:${closed}`,
    https_proxy: `http://127.0.0.1:${closed}`,
    NO_PROXY: '', // heliaFetch adds 127.0.0.1
    no_proxy: '',
  }
}

/** Requests as a sorted list: Helia fetches a file's leaves several at a time. */
function sorted (requests: GatewayRequest[]): GatewayRequest[] {
  return [...requests].sort((a, b) => a.url.localeCompare(b.url))
}
