import path from 'node:path'
import { displayPath } from '../format/stored-path.js'
import type { CarSet } from './car-set.js'

/** Indexes of the manifest's CARs that the set's store does not have. */
export async function missingCars (set: CarSet): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < set.manifest.cars.length; i++) if (!await set.cars.has(i)) out.push(i)
  return out
}

/** The command that gives a set's CARs their own names, for messages. */
export function fixNamesCommand (set: CarSet): string {
  return `packer verify --fix-names ${set.dir}${set.cars.where !== set.dir ? ` --cars ${set.cars.where}` : ''}`
}

/**
 * One warning line for readers (unpack, ls, mount) when CARs are found under names other than their own, or null.
 * They read by content, so the set still reads; but deal tools and storage providers take a CAR by its name.
 */
export async function misnamedWarning (set: CarSet): Promise<string | null> {
  const cars = set.manifest.cars
  const wrong: string[] = []
  for (let i = 0; i < cars.length; i++) {
    const found = await set.cars.whole(i)
    if (found !== null && !found.ownName) wrong.push(`${cars[i].file} is found as ${path.basename(found.name)}`)
  }
  if (wrong.length === 0) return null
  const shown = wrong.slice(0, 3).join(', ') + (wrong.length > 3 ? ` and ${wrong.length - 3} more` : '')
  return `${wrong.length} CAR(s) are not under their own names (${shown}); they are read by content, but deal tools and storage providers go by the name: run '${fixNamesCommand(set)}'`
}

/**
 * `packer ls --missing`: the files that are not fully available (some CAR holding their blocks is absent), each with
 * the CAR files it still needs, in table order. Empty when every CAR is present.
 */
export async function * missingReport (set: CarSet): AsyncGenerator<{ path: string, cars: string[] }> {
  const missing = new Set(await missingCars(set))
  if (missing.size > 0) yield * filesIn(set, missing)
}

/** The files with blocks in any of `cars` (one pass over the table), each with those of its CARs, in table order. */
export async function * filesIn (set: CarSet, cars: Set<number>): AsyncGenerator<{ path: string, cars: string[] }> {
  for await (const e of set.files.entries()) {
    if (e.type !== 'file') continue
    const hit = e.cars!.filter((c) => cars.has(c))
    if (hit.length > 0) yield { path: displayPath(e.path), cars: hit.map((c) => set.manifest.cars[c]!.file) }
  }
}
