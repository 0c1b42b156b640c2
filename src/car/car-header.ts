import fs from 'node:fs/promises'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'

/** Reads a CARv1 header's roots from the start of a file; null when the file is not a readable CARv1. */
export async function readCarRoots (file: string): Promise<CID[] | null> {
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(file, 'r')
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
    await fh?.close()
  }
}
