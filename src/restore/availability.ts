import path from 'node:path'
import { displayPath } from '../format/stored-path.js'
import type { CarSet } from './car-set.js'

/** Where each of the manifest's CARs is (found by content, as readers find them); null when absent. */
export async function locateCars (set: CarSet): Promise<Array<string | null>> {
  const out: Array<string | null> = []
  for (let i = 0; i < set.manifest.cars.length; i++) out.push(await set.locator.pathOf(i))
  return out
}

/** Indexes of the manifest's CARs that are not in the set's CAR directory. */
export async function missingCars (set: CarSet): Promise<number[]> {
  return (await locateCars(set)).flatMap((f, i) => f === null ? [i] : [])
}

/** The command that gives a set's CARs their own names, for messages. */
export function fixNamesCommand (set: CarSet): string {
  return `packer verify --fix-names ${set.dir}${set.locator.dir !== set.dir ? ` --cars ${set.locator.dir}` : ''}`
}

/**
 * One warning line for readers (unpack, ls, mount) when CARs are found under names other than their own, or null.
 * They read by content, so the set still reads; but deal tools and storage providers take a CAR by its name.
 */
export async function misnamedWarning (set: CarSet): Promise<string | null> {
  const cars = set.manifest.cars
  const wrong = (await locateCars(set)).flatMap((f, i) => f === null || path.basename(f) === cars[i].file ? [] : [`${cars[i].file} is found as ${path.basename(f)}`])
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
