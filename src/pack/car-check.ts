import crypto from 'node:crypto'
import type { CarRecord } from '../format/manifest.js'
import { CAR_HEADER_READ, carRootsOf } from '../car/car-header.js'
import { decodeBlockRecord } from '../car/block-index.js'
import type { SetOutput } from '../car/set-output.js'

/**
 * The cheap check a resumed pack makes of a CAR its journal says is complete: present under its name, the recorded
 * size, the recorded header root, and its last block (`lastRecord`, the record of the last block written to it)
 * intact (a CAR cut short or never fully synced fails here). It does not re-read the whole CAR: `verify` does that.
 */
export async function checkCompleteCar (out: SetOutput, car: CarRecord, lastRecord: Buffer): Promise<boolean> {
  if (await out.size(car.file) !== car.size) return false
  const roots = carRootsOf(await out.readAt(car.file, 0, Math.min(CAR_HEADER_READ, car.size)))
  if (roots?.[0]?.toString() !== car.root) return false
  const last = decodeBlockRecord(lastRecord)
  if (last.offset + last.length !== car.size) return false
  const block = await out.readAt(car.file, last.offset, last.length)
  return block.length === last.length && crypto.createHash('sha256').update(block).digest().equals(last.digest)
}

/** How many of a journal's CARs are present and intact (cheap checks); the rest are redone. */
export async function keepCompleteCars (out: SetOutput, state: { cars: CarRecord[], blockCounts: number[] }, record: (n: number) => Promise<Buffer>): Promise<number> {
  for (let i = 0; i < state.cars.length; i++) {
    if (!await checkCompleteCar(out, state.cars[i]!, await record(state.blockCounts[i]! - 1))) return i
  }
  return state.cars.length
}
