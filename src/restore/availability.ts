import { displayPath } from '../format/stored-path.js'
import type { CarSet } from './car-set.js'

/** Indexes of the manifest's CARs that are not in the set's CAR directory (found by content, as readers find them). */
export async function missingCars (set: CarSet): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < set.manifest.cars.length; i++) {
    if (await set.locator.pathOf(i) === null) out.push(i)
  }
  return out
}

/**
 * `packer ls --missing`: the files that are not fully available (some CAR holding their blocks is absent), each with
 * the CAR files it still needs, in table order. Empty when every CAR is present.
 */
export async function missingReport (set: CarSet): Promise<Array<{ path: string, cars: string[] }>> {
  const missing = new Set(await missingCars(set))
  if (missing.size === 0) return []
  const out: Array<{ path: string, cars: string[] }> = []
  for (const e of set.entries) {
    if (e.type !== 'file') continue
    const need = (e.cars ?? []).filter((c) => missing.has(c))
    if (need.length > 0) out.push({ path: displayPath(e.path), cars: need.map((c) => set.manifest.cars[c].file) })
  }
  return out
}
