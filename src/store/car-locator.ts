import fs from 'node:fs/promises'
import path from 'node:path'
import type { CarRecord } from '../format/manifest.js'
import { readCarRoots } from '../car/car-header.js'

/**
 * Finds a set's CARs in a directory by their content, not their names: a CAR is the file whose header root and size
 * are the manifest's (a renamed CAR is still found; `verify` reports it, since deal tools go by the name). A CAR that
 * is absent is looked for again, at most once a second, so one copied in later (e.g. under a running mount) is
 * picked up.
 */
export class CarLocator {
  readonly dir: string
  readonly #cars: CarRecord[]
  readonly #found = new Map<number, string>()
  #lastScan = 0
  #scanning?: Promise<void>

  constructor (dir: string, cars: CarRecord[]) {
    this.dir = dir
    this.#cars = cars
  }

  /** Path of CAR `i`, or null when no file in the directory is that CAR. */
  async pathOf (i: number): Promise<string | null> {
    const known = this.#found.get(i)
    if (known !== undefined) {
      if (await this.#isCar(known, i)) return known
      this.#found.delete(i)
    }
    const byName = path.join(this.dir, this.#cars[i].file)
    if (await this.#isCar(byName, i)) { this.#found.set(i, byName); return byName }
    await this.#rescan()
    return this.#found.get(i) ?? null
  }

  /**
   * The directory's .car files whose header names the root of one of the set's CARs but that are not where pathOf
   * found that CAR (extra copies, or files under a name not theirs), each with that CAR's index. Call it after
   * pathOf for every CAR.
   */
  async extraCopies (): Promise<Array<{ file: string, car: number }>> {
    const found = new Set(this.#found.values())
    const byRoot = new Map(this.#cars.map((c, i) => [c.root, i]))
    const out: Array<{ file: string, car: number }> = []
    for await (const { file, root } of this.#carFiles()) {
      const car = byRoot.get(root)
      if (car !== undefined && !found.has(file)) out.push({ file, car })
    }
    return out
  }

  /** Concurrent misses share one scan (the exporter reads blocks in parallel); a new scan starts at most once a second. */
  async #rescan (): Promise<void> {
    if (this.#scanning) return await this.#scanning
    if (Date.now() - this.#lastScan < 1000) return
    this.#scanning = this.#scan().finally(() => { this.#scanning = undefined })
    await this.#scanning
  }

  /** Size check only by stat; a damaged or truncated CAR with the right header is still "found" and fails its block checks. */
  async #isCar (file: string, i: number): Promise<boolean> {
    const roots = await readCarRoots(file)
    return roots !== null && roots.length > 0 && roots[0].toString() === this.#cars[i].root
  }

  /** The directory's readable .car files with the root their header names. */
  async * #carFiles (): AsyncGenerator<{ file: string, root: string }> {
    let names: string[]
    try { names = await fs.readdir(this.dir) } catch { return }
    for (const name of names) {
      if (!name.endsWith('.car')) continue
      const file = path.join(this.dir, name)
      const roots = await readCarRoots(file)
      if (roots?.[0]) yield { file, root: roots[0].toString() }
    }
  }

  async #scan (): Promise<void> {
    this.#lastScan = Date.now()
    const byRoot = new Map<string, number[]>()
    this.#cars.forEach((c, i) => { if (!this.#found.has(i)) byRoot.set(c.root, [...(byRoot.get(c.root) ?? []), i]) })
    for await (const { file, root } of this.#carFiles()) {
      if (byRoot.size === 0) break
      const candidates = byRoot.get(root)
      if (!candidates) continue
      // Identical first blocks are possible: prefer the CAR whose size matches.
      const st = await fs.stat(file).catch(() => null)
      const i = candidates.find((c) => this.#cars[c].size === st?.size) ?? candidates[0]
      this.#found.set(i, file)
      const rest = candidates.filter((c) => c !== i)
      if (rest.length) byRoot.set(root, rest)
      else byRoot.delete(root)
    }
  }
}
