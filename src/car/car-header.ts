import fs from 'node:fs/promises'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'

/** A CARv1 header with one root: varint length, then dag-cbor {roots, version: 1} (as @ipld/car writes it). */
export function encodeCarHeader (root: CID): Uint8Array {
  const body = dagCbor.encode({ roots: [root], version: 1 })
  const out = new Uint8Array(varint.encodingLength(body.length) + body.length)
  varint.encodeTo(body.length, out, 0)
  out.set(body, out.length - body.length)
  return out
}

/** What comes before a block's bytes in a CAR section: varint of the section's length (CID and data), then the CID. */
export function encodeSectionHead (cid: CID, dataLength: number): Uint8Array {
  const head = new Uint8Array(varint.encodingLength(cid.bytes.length + dataLength) + cid.bytes.length)
  varint.encodeTo(cid.bytes.length + dataLength, head, 0)
  head.set(cid.bytes, head.length - cid.bytes.length)
  return head
}

/** Bytes from a CAR's start that hold any header packer reads (one root; others' headers with a few roots). */
export const CAR_HEADER_READ = 4096

/** A CARv1 header's roots from the first bytes of a CAR; null when they are not a readable CARv1 header. */
export function carRootsOf (buf: Uint8Array): CID[] | null {
  try {
    const [len, n] = varint.decode(buf.subarray(0, Math.min(buf.length, 10)))
    if (len <= 0 || n + len > buf.length) return null
    const header = dagCbor.decode(buf.subarray(n, n + len)) as { version?: number, roots?: unknown[] }
    if (header.version !== 1 || !Array.isArray(header.roots)) return null
    const roots = header.roots.map((r) => CID.asCID(r))
    return roots.every((r) => r !== null) ? roots as CID[] : null
  } catch {
    return null
  }
}

/**
 * Reads a CARv1 header's roots from the start of a file (a path, or a file already open, which stays open); null
 * when the file is not a readable CARv1.
 */
export async function readCarRoots (file: string | fs.FileHandle): Promise<CID[] | null> {
  let fh: fs.FileHandle | undefined
  try {
    fh = typeof file === 'string' ? await fs.open(file, 'r') : file
    const buf = Buffer.alloc(CAR_HEADER_READ)
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
    return carRootsOf(buf.subarray(0, bytesRead))
  } catch {
    return null
  } finally {
    if (typeof file === 'string') await fh?.close()
  }
}
