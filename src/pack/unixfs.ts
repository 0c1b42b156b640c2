import './varint-fix.js' // before anything is encoded: see there
import { importer, type BufferImporter, type ImportCandidate, type ImporterOptions, type ImportResult } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { Leaf } from './leaves.js'

/**
 * The one place that sets how packer cuts data into UnixFS: the `unixfs-v1-2025` profile (1 MiB raw leaves, CIDv1,
 * balanced DAG of 1024 links), one file at a time and one block at a time so that block order, and so the CARs, are
 * deterministic. Changing any of this changes every CID: it is part of the format (docs/FORMAT.md).
 */
export const IMPORT_OPTIONS: ImporterOptions = {
  profile: 'unixfs-v1-2025',
  fileImportConcurrency: 1,
  blockWriteConcurrency: 1,
}

export interface BlockSink { put: (cid: CID, bytes: Uint8Array) => Promise<unknown> }

/*
 * A sink may let the bytes it was given go back to their maker once written (a leaf's buffer to the leaf workers,
 * src/pack/files.ts): then they are detached, read as empty. So nothing here reads a block after putting it.
 */

/** A file already imported: what a directory needs to link to it. */
export interface ImportedFile { cid: CID, dagSize: number }

function blockstoreOf (sink: BlockSink): any {
  return {
    put: async (cid: CID, bytes: Uint8Array) => { await sink.put(cid, bytes); return cid },
    get: () => { throw new Error('the importer does not read blocks') },
    has: async () => false,
  }
}

/** Imports one stream as a UnixFS file (the CID `ipfs-car pack --no-wrap FILE` gives). */
export async function importFile (content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, sink: BlockSink): Promise<ImportedFile> {
  let last: ImportResult | undefined
  for await (const e of importer([{ path: 'file', content }], blockstoreOf(sink), IMPORT_OPTIONS)) last = e
  return { cid: last!.cid, dagSize: Number(last!.size) }
}

/**
 * Imports a file given as its leaves, already cut as IMPORT_OPTIONS cuts (1 MiB, the last shorter, one empty leaf for
 * an empty file: src/pack/leaves.ts) and hashed: the importer's chunker passes them through and its buffer importer
 * uses their digests, so the CIDs, the DAG and the order of the blocks are those importFile gives for the same bytes.
 */
export async function importLeaves (leaves: AsyncIterable<Leaf>, sink: BlockSink): Promise<ImportedFile> {
  const it = leaves[Symbol.asyncIterator]()
  const first = await it.next()
  const second = first.done === true ? first : await it.next()
  if (first.done !== true && second.done === true) return singleLeaf(first.value, sink)
  const digests = new WeakMap<Uint8Array, Uint8Array>()
  const content = (async function * () {
    for (const r of [first, second]) {
      if (r.done === true) return
      digests.set(r.value.bytes, r.value.digest)
      yield r.value.bytes
    }
    for (let r = await it.next(); r.done !== true; r = await it.next()) {
      digests.set(r.value.bytes, r.value.digest)
      yield r.value.bytes
    }
  })()
  const bufferImporter: BufferImporter = async function * (file, blockstore) {
    for await (const block of file.content) {
      yield async () => {
        const digest = digests.get(block)
        if (digest === undefined) throw new Error('importLeaves: a leaf without its digest (the chunker must pass leaves through)')
        const cid = CID.createV1(raw.code, Digest.create(sha256.code, digest))
        const size = BigInt(block.length)
        await blockstore.put(cid, block)
        return { cid, size, block }
      }
    }
  }
  const options: ImporterOptions = {
    ...IMPORT_OPTIONS,
    chunker: async function * (source) { yield * source },
    bufferImporter,
  }
  let last: ImportResult | undefined
  for await (const e of importer([{ path: 'file', content }], blockstoreOf(sink), options)) last = e
  return { cid: last!.cid, dagSize: Number(last!.size) }
}

/**
 * A file of one leaf is that leaf, as the importer makes it (reduceSingleLeafToSelf, no metadata): most files of a
 * tree are that small, and the importer's pipeline cost more than the rest of their packing.
 */
export async function singleLeaf (leaf: Leaf, sink: BlockSink): Promise<ImportedFile> {
  const cid = CID.createV1(raw.code, Digest.create(sha256.code, leaf.digest))
  const dagSize = leaf.bytes.length
  await sink.put(cid, leaf.bytes)
  return { cid, dagSize }
}

/**
 * Builds the directory nodes over files imported earlier, in the order given: an entry with `file` is a file
 * (linked, not read again), one without is a directory (empty ones included). Returns the root directory's CID.
 */
export async function importDirectories (entries: Array<{ path: string, file?: ImportedFile }>, sink: BlockSink): Promise<CID> {
  const files = new Map<string, ImportedFile>()
  const candidates: ImportCandidate[] = entries.map(({ path, file }) => {
    if (file === undefined) return { path }
    files.set(path, file)
    return { path, content: [] as Uint8Array[] }
  })
  const fileBuilder = async (file: { path?: string }): Promise<any> => {
    const f = files.get(file.path!)!
    return { cid: f.cid, size: BigInt(f.dagSize), path: file.path }
  }
  let root: CID | undefined
  for await (const e of importer(candidates, blockstoreOf(sink), { ...IMPORT_OPTIONS, wrapWithDirectory: true, fileBuilder })) {
    if (e.path === '') root = e.cid
  }
  // An empty tree: the importer yields nothing, so store the empty UnixFS directory itself.
  if (root === undefined) for await (const e of importer([{ path: 'empty' }], blockstoreOf(sink), IMPORT_OPTIONS)) root = e.cid
  return root!
}
