import { createHash } from 'node:crypto'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

/**
 * Directory nodes in dag-pb, encoded straight from bytes: the bytes @ipld/dag-pb's encode() gives (links first, each
 * with Hash, Name and Tsize, then Data), without its three UTF-8 encodings of every name (validation, sorting,
 * writing), which made most of the time of building a directory.
 */

export interface NodeLink {
  /** UTF-8; the caller gives links sorted by these bytes, as dag-pb requires. */
  name: Uint8Array
  /** The linked CID's bytes. */
  cid: Uint8Array
  tsize: number
}

function varintLength (n: number): number {
  let len = 1
  while (n >= 128) { n = Math.floor(n / 128); len++ }
  return len
}

function innerLinkBytes (nameLength: number, cidLength: number, tsize: number): number {
  return 1 + varintLength(cidLength) + cidLength + 1 + varintLength(nameLength) + nameLength + 1 + varintLength(tsize)
}

/** Bytes a link takes in a node (what the importer's size estimate counts for it: linkSerializedSize). */
export function linkBytes (nameLength: number, cidLength: number, tsize: number): number {
  const inner = innerLinkBytes(nameLength, cidLength, tsize)
  return 1 + varintLength(inner) + inner
}

export function encodeDirectoryNode (data: Uint8Array, links: NodeLink[]): Uint8Array {
  let size = 1 + varintLength(data.length) + data.length
  for (const l of links) size += linkBytes(l.name.length, l.cid.length, l.tsize)
  const out = new Uint8Array(size)
  let p = 0
  const varint = (n: number): void => {
    while (n >= 128) { out[p++] = (n % 128) | 0x80; n = Math.floor(n / 128) }
    out[p++] = n
  }
  const bytesField = (tag: number, bytes: Uint8Array): void => {
    out[p++] = tag
    varint(bytes.length)
    out.set(bytes, p)
    p += bytes.length
  }
  for (const l of links) {
    out[p++] = 0x12 // PBNode.Links
    varint(innerLinkBytes(l.name.length, l.cid.length, l.tsize))
    bytesField(0x0a, l.cid) // PBLink.Hash
    bytesField(0x12, l.name) // PBLink.Name
    out[p++] = 0x18 // PBLink.Tsize
    varint(l.tsize)
  }
  bytesField(0x0a, data) // PBNode.Data
  return out
}

/** The CID of a dag-pb block as the importer makes it (CIDv1, sha2-256). */
export function dagPbCid (block: Uint8Array): CID {
  return CID.createV1(dagPb.code, Digest.create(sha256.code, createHash('sha256').update(block).digest()))
}
