import { importer, type ImportCandidate, type ImporterOptions } from 'ipfs-unixfs-importer'
import type { CID } from 'multiformats/cid'

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

export interface BlockSink { put: (cid: CID, bytes: Uint8Array) => Promise<void> }

export function importTree (candidates: AsyncIterable<ImportCandidate> | Iterable<ImportCandidate>, sink: BlockSink, wrap: boolean) {
  const blockstore = {
    put: async (cid: CID, bytes: Uint8Array) => { await sink.put(cid, bytes); return cid },
    get: () => { throw new Error('the importer does not read blocks') },
    has: async () => false,
  }
  return importer(candidates, blockstore as any, { ...IMPORT_OPTIONS, wrapWithDirectory: wrap })
}

/** Imports one stream as a UnixFS file and returns its CID and size. */
export async function importFile (content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, sink: BlockSink): Promise<{ cid: CID, size: number }> {
  let last: { cid: CID, size: bigint } | undefined
  for await (const e of importTree([{ path: 'file', content }], sink, false)) last = e as any
  return { cid: last!.cid, size: Number(last!.size) }
}
