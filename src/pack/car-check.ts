import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import type { CarRecord } from '../format/manifest.js'
import { readCarRoots } from '../car/car-header.js'
import { decodeBlockRecord } from '../car/block-index.js'

/**
 * The cheap check a resumed pack makes of a CAR its journal says is complete: present under its name, the recorded
 * size, the recorded header root, and its last block (`lastRecord`, the record of the last block written to it) intact (a CAR cut short or never fully synced fails here).
 * It does not re-read the whole CAR: `verify` does that.
 */
export async function checkCompleteCar (dir: string, car: CarRecord, lastRecord: Buffer): Promise<boolean> {
  const file = path.join(dir, car.file)
  const st = await fs.stat(file).catch(() => null)
  if (st === null || st.size !== car.size) return false
  const roots = await readCarRoots(file)
  if (roots?.[0]?.toString() !== car.root) return false
  const last = decodeBlockRecord(lastRecord)
  if (last.offset + last.length !== car.size) return false
  const fh = await fs.open(file, 'r')
  try {
    const buf = Buffer.alloc(last.length)
    const { bytesRead } = await fh.read(buf, 0, last.length, last.offset)
    return bytesRead === last.length && crypto.createHash('sha256').update(buf).digest().equals(last.digest)
  } finally {
    await fh.close()
  }
}

/** How many of a journal's CARs are present and intact (cheap checks); the rest are redone. */
export async function keepCompleteCars (dir: string, state: { cars: CarRecord[], blockCounts: number[] }, record: (n: number) => Promise<Buffer>): Promise<number> {
  for (let i = 0; i < state.cars.length; i++) {
    if (!await checkCompleteCar(dir, state.cars[i]!, await record(state.blockCounts[i]! - 1))) return i
  }
  return state.cars.length
}
