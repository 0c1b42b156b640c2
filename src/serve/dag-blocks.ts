import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import type { BlockSource } from '../read/block-source.js'

/** How much of the DAG below a CID a CAR response holds (trustless gateway `dag-scope`). */
export type DagScope = 'block' | 'entity' | 'all'

/** An `entity-bytes=from:to` range: inclusive offsets, negative ones from the end, `to` null for `*`. */
export interface EntityBytes { from: number, to: number | null }

export interface Block { cid: CID, bytes: Uint8Array }

/**
 * The set's blocks by CID, each checked against its CID (BlockSource hashes every block it reads); identity CIDs
 * carry their bytes in the CID. `has` says whether the set holds a block at all (without reading it).
 */
export class SetBlocks {
  readonly #source: BlockSource

  constructor (source: BlockSource) { this.#source = source }

  async has (cid: CID): Promise<boolean> {
    if (cid.multihash.code === identity.code) return true
    return cid.multihash.code === sha256.code && cid.multihash.size === 32 && (await this.#source.carsOf(cid)).length > 0
  }

  async get (cid: CID): Promise<Uint8Array> {
    return cid.multihash.code === identity.code ? cid.multihash.digest : await this.#source.get(cid)
  }
}

/**
 * The blocks of a CAR response for the DAG at `root`, depth first, links in order: the root alone (`block`); every
 * block below it (`all`); or (`entity`) for a UnixFS file all its blocks, or with `range` only those holding those
 * bytes, for a UnixFS directory its node (a sharded one's shard nodes too), for anything else the root alone.
 * With `dups` false a block is sent once (`seen` holds what was sent before). Identity blocks are never sent.
 */
export async function * dagBlocks (blocks: SetBlocks, root: CID, o: { scope: DagScope, range?: EntityBytes, dups: boolean, seen: Set<string> }): AsyncGenerator<Block> {
  const visit = async function * (cid: CID, within?: { from: number, to: number }): AsyncGenerator<Block> {
    const bytes = await blocks.get(cid)
    if (cid.multihash.code !== identity.code && (o.dups || !o.seen.has(cid.toString()))) {
      o.seen.add(cid.toString())
      yield { cid, bytes }
    }
    if (o.scope === 'block') return
    if (o.scope === 'all') {
      for (const link of linksOf(cid, bytes)) yield * visit(link)
      return
    }
    if (cid.code !== dagPb.code) return
    const node = dagPb.decode(bytes)
    const unixfs = node.Data === undefined ? undefined : UnixFS.unmarshal(node.Data)
    if (unixfs?.type === 'file' || unixfs?.type === 'raw') {
      // children cover the bytes after the node's own data, each its blockSizes entry long
      let at = unixfs.data?.length ?? 0
      for (const [i, link] of node.Links.entries()) {
        const size = Number(unixfs.blockSizes[i] ?? 0n)
        const child = { from: at, to: at + size - 1 }
        at += size
        if (within !== undefined && (child.to < within.from || child.from > within.to)) continue
        yield * visit(link.Hash, within === undefined ? undefined : { from: Math.max(0, within.from - child.from), to: Math.min(size - 1, within.to - child.from) })
      }
    } else if (unixfs?.type === 'hamt-sharded-directory') {
      const prefix = ((unixfs.fanout ?? 256n) - 1n).toString(16).length
      for (const link of node.Links) if (link.Name?.length === prefix) yield * visit(link.Hash)
    }
  }
  if (o.scope === 'entity' && o.range !== undefined) {
    const within = await fileRange(blocks, root, o.range)
    if (within === null) {
      yield * dagBlocks(blocks, root, { ...o, scope: 'block', range: undefined })
      return
    }
    yield * visit(root, within)
    return
  }
  yield * visit(root)
}

/**
 * The bytes `range` asks for of the UnixFS file (or raw block) at `root`, as inclusive offsets in it; undefined when
 * `root` is not a file (the range is ignored); null when the range holds no byte of the file.
 */
async function fileRange (blocks: SetBlocks, root: CID, range: EntityBytes): Promise<{ from: number, to: number } | undefined | null> {
  let size: number
  if (root.code === raw.code) {
    size = (await blocks.get(root)).length
  } else if (root.code === dagPb.code) {
    const node = dagPb.decode(await blocks.get(root))
    const unixfs = node.Data === undefined ? undefined : UnixFS.unmarshal(node.Data)
    if (unixfs?.type !== 'file' && unixfs?.type !== 'raw') return undefined
    size = Number(unixfs.fileSize())
  } else {
    return undefined
  }
  const from = range.from < 0 ? Math.max(0, size + range.from) : range.from
  const to = range.to === null ? size - 1 : range.to < 0 ? size + range.to : Math.min(range.to, size - 1)
  return from > to || from >= size ? null : { from, to }
}

/** The CIDs a block links to, in order (dag-pb links, CIDs anywhere in dag-cbor); none for raw and other codecs. */
function linksOf (cid: CID, bytes: Uint8Array): CID[] {
  if (cid.code === dagPb.code) return dagPb.decode(bytes).Links.map((l) => l.Hash)
  if (cid.code !== dagCbor.code) return []
  const out: CID[] = []
  const walk = (v: unknown): void => {
    const link = CID.asCID(v)
    if (link !== null) out.push(link)
    else if (Array.isArray(v)) v.forEach(walk)
    else if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) Object.values(v).forEach(walk)
  }
  walk(dagCbor.decode(bytes))
  return out
}
