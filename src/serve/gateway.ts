import crypto from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { NotFoundError, walkPath } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { encodeCarHeader, encodeSectionHead } from '../car/car-header.js'
import { PackerError } from '../errors.js'
import { dagBlocks, type Block, type DagScope, type EntityBytes, type SetBlocks } from './dag-blocks.js'
import { IMMUTABLE, sendText } from './file-response.js'

const RAW = 'application/vnd.ipld.raw'
const CAR = 'application/vnd.ipld.car'

/** A request the gateway refuses, with its status and one line saying why. */
class GatewayError extends Error {
  constructor (readonly status: number, message: string) { super(message) }
}

/** What a CAR response was asked to be. */
interface CarRequest { scope: DagScope, range?: EntityBytes, dups: boolean }

/**
 * An IPFS trustless gateway over the set's blocks (https://specs.ipfs.tech/http-gateways/trustless-gateway/):
 * `/ipfs/{cid}` as one block (`format=raw` or `Accept: application/vnd.ipld.raw`) and `/ipfs/{cid}[/path]` as a CAR
 * (`format=car`, `dag-scope`, `entity-bytes`, `order=dfs`, `dups`), where the path goes through the UnixFS tree
 * (names in clear: `--no-encrypt` and `--plain-names` sets). Every block is checked against its CID before it is sent;
 * a CID the set does not hold is 404. Nothing is deserialized for the client: it gets blocks and checks them itself.
 * `pathname` is the URL's path after `/ipfs/`, still percent-encoded.
 */
export async function serveGateway (req: IncomingMessage, res: ServerResponse, blocks: SetBlocks, pathname: string, query: URLSearchParams): Promise<void> {
  try {
    const [cidText = '', ...encoded] = pathname.split('/')
    const segments = encoded.filter((s) => s !== '').map(decodeSegment)
    let root: CID
    try { root = CID.parse(cidText) } catch { throw new GatewayError(400, `'${cidText}' is not a CID`) }
    const format = responseFormat(query, req.headers.accept)
    if (format === RAW) {
      if (segments.length > 0) throw new GatewayError(400, 'a raw block is asked for by CID alone: /ipfs/{cid}?format=raw (a path needs format=car)')
      await sendRaw(req, res, blocks, root, query)
    } else {
      await sendCar(req, res, blocks, root, segments, carRequest(query, req.headers.accept), query)
    }
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err
    if (res.headersSent) { res.destroy(); return }
    sendText(req, res, err.status, err.message)
  }
}

/** One path component, percent-decoded. */
function decodeSegment (s: string): string {
  try { return decodeURIComponent(s) } catch { throw new GatewayError(400, `'${s}' is not a valid percent-encoded path component`) }
}

/** RAW or CAR: `format` first, then the first type of Accept this gateway serves (spec: format takes precedence). */
function responseFormat (query: URLSearchParams, accept: string | undefined): string {
  const format = query.get('format')
  if (format === 'raw') return RAW
  if (format === 'car') return CAR
  if (format !== null) throw new GatewayError(406, `format=${format} is not served here: this is a trustless gateway (format=raw or format=car)`)
  for (const type of (accept ?? '').split(',').map((t) => t.split(';')[0]!.trim())) {
    if (type === RAW || type === CAR) return type
  }
  throw new GatewayError(400, 'this is a trustless gateway: ask for format=raw or format=car (or Accept: application/vnd.ipld.raw or application/vnd.ipld.car)')
}

/** dag-scope, entity-bytes and the CAR's order and dups, from the query (first) or the Accept header's CAR type. */
function carRequest (query: URLSearchParams, accept: string | undefined): CarRequest {
  const params = new Map<string, string>()
  const car = (accept ?? '').split(',').find((t) => t.split(';')[0]!.trim() === CAR)
  for (const p of car?.split(';').slice(1) ?? []) {
    const [k, v] = p.split('=').map((s) => s.trim())
    if (k !== undefined && v !== undefined) params.set(k, v)
  }
  for (const k of ['version', 'order', 'dups']) {
    const v = query.get(`car-${k}`)
    if (v !== null) params.set(k, v)
  }
  if ((params.get('version') ?? '1') !== '1') throw new GatewayError(406, `CAR version ${params.get('version')} is not served here (version=1)`)
  if (!['dfs', 'unk'].includes(params.get('order') ?? 'dfs')) throw new GatewayError(406, `CAR order ${params.get('order')} is not served here (order=dfs)`)
  const dups = params.get('dups') ?? 'n'
  if (dups !== 'y' && dups !== 'n') throw new GatewayError(400, `dups=${dups}: give y or n`)
  const scope = query.get('dag-scope') ?? 'all'
  if (scope !== 'block' && scope !== 'entity' && scope !== 'all') throw new GatewayError(400, `dag-scope=${scope}: give block, entity or all`)
  const bytes = query.get('entity-bytes')
  if (bytes === null) return { scope, dups: dups === 'y' }
  const m = /^(-?\d+):(-?\d+|\*)$/.exec(bytes)
  const range = m === null ? null : { from: Number(m[1]), to: m[2] === '*' ? null : Number(m[2]) }
  if (range === null || (range.to !== null && range.from >= 0 && range.to >= 0 && range.to < range.from)) {
    throw new GatewayError(400, `entity-bytes=${bytes}: give FROM:TO (byte offsets, negative from the end, TO may be *)`)
  }
  return { scope: 'entity', range, dups: dups === 'y' }
}

async function sendRaw (req: IncomingMessage, res: ServerResponse, blocks: SetBlocks, cid: CID, query: URLSearchParams): Promise<void> {
  const bytes = await blockOf(blocks, cid)
  res.writeHead(200, {
    ...commonHeaders(cid, `"${cid}.raw"`, attachment(query, `${cid}.bin`)),
    'Content-Type': RAW,
    'Content-Length': bytes.length,
  })
  res.end(req.method === 'HEAD' ? undefined : bytes)
}

async function sendCar (req: IncomingMessage, res: ServerResponse, blocks: SetBlocks, root: CID, segments: string[], car: CarRequest, query: URLSearchParams): Promise<void> {
  // the path is resolved before any byte goes out, so a missing root or name is a 404, not a cut CAR
  const { terminal, pathBlocks } = await resolvePath(blocks, root, segments)
  await blockOf(blocks, terminal) // 404 now rather than a CAR cut short after its header
  const variant = JSON.stringify([segments, car.scope, car.range ?? null, car.dups])
  const etag = `"${root}.car.${crypto.createHash('sha256').update(variant).digest('hex').slice(0, 16)}"`
  res.writeHead(200, {
    ...commonHeaders(root, etag, attachment(query, `${root}.car`)),
    'Content-Type': `${CAR}; version=1; order=dfs; dups=${car.dups ? 'y' : 'n'}`,
  })
  if (req.method === 'HEAD') { res.end(); return }
  const seen = new Set<string>()
  const sections = async function * (): AsyncGenerator<Uint8Array> {
    yield encodeCarHeader(root)
    for (const b of pathBlocks) {
      if (!car.dups && seen.has(b.cid.toString())) continue
      seen.add(b.cid.toString())
      yield * section(b)
    }
    for await (const b of dagBlocks(blocks, terminal, { ...car, seen })) yield * section(b)
  }
  // a block that cannot be read mid-stream ends the response early: the client sees a CAR cut short (spec: streaming)
  await pipeline(Readable.from(sections()), res)
}

function * section (b: Block): Generator<Uint8Array> {
  yield encodeSectionHead(b.cid, b.bytes.length)
  yield b.bytes
}

/**
 * The CID `segments` lead to from `root` through UnixFS directories (sharded ones too), and the blocks read on the
 * way (the client needs them to check the path), in order; the terminal's own block is left to the CAR's DAG.
 */
async function resolvePath (blocks: SetBlocks, root: CID, segments: string[]): Promise<{ terminal: CID, pathBlocks: Block[] }> {
  if (!await blocks.has(root)) throw new GatewayError(404, `${root} is not in this set`)
  if (segments.length === 0) return { terminal: root, pathBlocks: [] }
  // a name holds no '/': an encoded one (%2F) names nothing
  if (segments.some((s) => s.includes('/'))) throw new GatewayError(404, `/${segments.join('/')} is not in ${root}`)
  const read: Block[] = []
  const recording = {
    get: async function * (cid: CID) {
      const bytes = await blockOf(blocks, cid)
      read.push({ cid, bytes })
      yield bytes
    },
  }
  let terminal = root
  let remainder = segments
  try {
    for await (const entry of walkPath(`${root}/${segments.join('/')}`, recording as any)) {
      terminal = entry.cid
      remainder = entry.remainder
    }
  } catch (err) {
    if (err instanceof NotFoundError) throw new GatewayError(404, `/${segments.join('/')} is not in ${root}`)
    throw err
  }
  if (remainder.length > 0) throw new GatewayError(404, `/${segments.join('/')} is not in ${root}`)
  return { terminal, pathBlocks: read.filter((b) => !b.cid.equals(terminal)) }
}

/** A block of the set (checked against its CID), or 404 when the set does not hold it or its CAR is absent. */
async function blockOf (blocks: SetBlocks, cid: CID): Promise<Uint8Array> {
  if (!await blocks.has(cid)) throw new GatewayError(404, `${cid} is not in this set`)
  try {
    return await blocks.get(cid)
  } catch (err) {
    if (err instanceof PackerError && err.code === 'MISSING_CAR') throw new GatewayError(404, `${cid} is in a CAR that is not here`)
    if (err instanceof PackerError) throw new GatewayError(500, err.message)
    throw err
  }
}

function commonHeaders (cid: CID, etag: string, disposition: string): Record<string, string> {
  return {
    ETag: etag,
    'Cache-Control': IMMUTABLE,
    'Content-Disposition': disposition,
    'X-Content-Type-Options': 'nosniff',
    'X-Ipfs-Roots': cid.toString(),
    Vary: 'Accept',
  }
}

/** `attachment` with the `filename` parameter (printable ASCII, no quotes or backslashes) or the default name. */
function attachment (query: URLSearchParams, fallback: string): string {
  const asked = query.get('filename')
  const name = asked !== null && /^[\x20-\x7e]+$/.test(asked) && !/["\\]/.test(asked) ? asked : fallback
  return `attachment; filename="${name}"`
}
