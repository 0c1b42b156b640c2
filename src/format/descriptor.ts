import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { MANIFEST_VERSION } from './manifest.js'

/**
 * The set descriptor: the last block of every set, a dag-cbor map that lets the CARs alone say what the set is
 * (docs/FORMAT.md §7): the tree's root, the table, how it is encrypted, the bin size, and the root of every CAR in set
 * order (each CAR's root is its first block) — inline, or in CAR-list blocks when there are many. With it,
 * `packer rebuild` remakes manifest.json and blocks.idx from the CARs.
 */
export interface SetDescriptor {
  root: CID
  /** Version 2: the table index; version 1: the whole file table. */
  table: CID
  encrypted: boolean
  names: 'hidden' | 'plain' | 'clear'
  single: boolean
  binSize: number
  cars: CID[]
  /** CAR-list blocks holding the CARs' roots instead of `cars` (version 2, more than MAX_INLINE_CARS CARs). */
  carLists: CID[]
}

export const DESCRIPTOR_FORMAT = 'packer-car-set'
/** Most CAR roots in one block (the descriptor or a CAR-list block): ~40 bytes each, well under a block's 1 MiB. */
export const MAX_INLINE_CARS = 16_384

async function block (value: unknown): Promise<{ cid: CID, bytes: Uint8Array }> {
  const bytes = dagCbor.encode(value)
  return { cid: CID.create(1, dagCbor.code, await sha256.digest(bytes)), bytes }
}

export async function encodeDescriptor (d: SetDescriptor): Promise<{ cid: CID, bytes: Uint8Array }> {
  return await block({
    format: DESCRIPTOR_FORMAT,
    version: MANIFEST_VERSION,
    root: d.root,
    table: d.table,
    encrypted: d.encrypted,
    names: d.names,
    single: d.single,
    binSize: d.binSize,
    cars: d.cars,
    carLists: d.carLists,
  })
}

/** A CAR-list block: `{cars: [CID, …]}`. */
export async function encodeCarList (cars: CID[]): Promise<{ cid: CID, bytes: Uint8Array }> {
  return await block({ cars })
}

const cid = (v: unknown): CID | null => CID.asCID(v)
const cidList = (v: unknown): v is CID[] => Array.isArray(v) && v.every((c) => cid(c) !== null)

/** The roots a CAR-list block holds, or null when the block is not one. */
export function decodeCarList (bytes: Uint8Array): CID[] | null {
  let o: any
  try { o = dagCbor.decode(bytes) } catch { return null }
  return o !== null && typeof o === 'object' && Object.keys(o).length === 1 && cidList(o.cars) ? o.cars : null
}

/** The descriptor in a block, or null when the block is not one (any other dag-cbor block, or garbage). */
export function decodeDescriptor (bytes: Uint8Array): (SetDescriptor & { version: number }) | null {
  let o: any
  try { o = dagCbor.decode(bytes) } catch { return null }
  if (o === null || typeof o !== 'object' || o.format !== DESCRIPTOR_FORMAT) return null
  if (cid(o.root) === null || cid(o.table) === null || typeof o.encrypted !== 'boolean' || typeof o.version !== 'number') return null
  if (!cidList(o.cars) || !Number.isSafeInteger(o.binSize)) return null
  if (o.names !== 'hidden' && o.names !== 'plain' && o.names !== 'clear') return null
  const v2 = o.version >= 2
  if (v2 && (typeof o.single !== 'boolean' || !cidList(o.carLists))) return null
  return {
    version: o.version, root: o.root, table: o.table, encrypted: o.encrypted, names: o.names, binSize: o.binSize, cars: o.cars,
    single: v2 ? o.single : false,
    carLists: v2 ? o.carLists : [],
  }
}
