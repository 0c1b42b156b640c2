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

/**
 * Reads a CARv1 header's roots from the start of a file (a path, or a file already open, which stays open); null
 * when the file is not a readable CARv1.
 */
export async function readCarRoots (file: string | fs.FileHandle): Promise<CID[] | null> {
  let fh: fs.FileHandle | undefined
  try {
    fh = typeof file === 'string' ? await fs.open(file, 'r') : file
    const buf = Buffer.alloc(4096)
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
    const [len, n] = varint.decode(buf.subarray(0, Math.min(bytesRead, 10)))
    if (len <= 0 || n + len > bytesRead) return null
    const header = dagCbor.decode(buf.subarray(n, n + len)) as { version?: number, roots?: unknown[] }
    if (header.version !== 1 || !Array.isArray(header.roots)) return null
    const roots = header.roots.map((r) => CID.asCID(r))
    return roots.every((r) => r !== null) ? roots as CID[] : null
  } catch {
    return null
  } finally {
    if (typeof file === 'string') await fh?.close()
  }
}
