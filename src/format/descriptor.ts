import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { MANIFEST_VERSION } from './manifest.js'

/**
 * The set descriptor: the last block of every set, a dag-cbor map that lets the CARs alone say what the set is
 * (docs/FORMAT.md §7): the tree's root, the file table, how it is encrypted, the bin size, and every CAR's root in
 * write order (each CAR's root is its first block, so all are known when this block is written into the last CAR).
 * With it, `packer rebuild` remakes manifest.json and blocks.idx from the CARs.
 */
export interface SetDescriptor {
  root: CID
  table: CID
  encrypted: boolean
  names: 'hidden' | 'plain' | 'clear'
  binSize: number
  cars: CID[]
}

export const DESCRIPTOR_FORMAT = 'packer-car-set'

export async function encodeDescriptor (d: SetDescriptor): Promise<{ cid: CID, bytes: Uint8Array }> {
  const bytes = dagCbor.encode({
    format: DESCRIPTOR_FORMAT, version: MANIFEST_VERSION, root: d.root, table: d.table, encrypted: d.encrypted, names: d.names, binSize: d.binSize, cars: d.cars,
  })
  return { cid: CID.create(1, dagCbor.code, await sha256.digest(bytes)), bytes }
}

/** The descriptor in a block, or null when the block is not one (any other dag-cbor block, or garbage). */
export function decodeDescriptor (bytes: Uint8Array): (SetDescriptor & { version: number }) | null {
  let o: any
  try { o = dagCbor.decode(bytes) } catch { return null }
  if (o === null || typeof o !== 'object' || o.format !== DESCRIPTOR_FORMAT) return null
  const cid = (v: unknown): CID | null => CID.asCID(v)
  if (cid(o.root) === null || cid(o.table) === null || typeof o.encrypted !== 'boolean' || typeof o.version !== 'number') return null
  if (!Array.isArray(o.cars) || !o.cars.every((c: unknown) => cid(c) !== null) || !Number.isSafeInteger(o.binSize)) return null
  if (o.names !== 'hidden' && o.names !== 'plain' && o.names !== 'clear') return null
  return { version: o.version, root: o.root, table: o.table, encrypted: o.encrypted, names: o.names, binSize: o.binSize, cars: o.cars }
}
