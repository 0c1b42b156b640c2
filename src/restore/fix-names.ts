import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError } from '../errors.js'
import { syncDir } from '../car/durable-file.js'
import type { CarReport } from './verifier.js'

/** A CAR given its own name: `from` and `to` are file names in the CAR directory. */
export interface Rename { from: string, to: string }

export interface NameFix {
  renamed: Rename[]
  /** CARs left under the wrong name because a file that stays holds their name. */
  blocked: Array<Rename & { why: string }>
}

const exists = async (file: string): Promise<boolean> => await fs.lstat(file).then(() => true, () => false)

/** rename(2) that refuses to replace a file (checked just before; the directory is assumed not to change meanwhile). */
async function renameFresh (from: string, to: string): Promise<void> {
  if (await exists(to)) throw new PackerError('OUTPUT', `${to} appeared while CAR names were being put right; nothing was overwritten: rerun 'packer verify --fix-names'`, { subject: to })
  await fs.rename(from, to)
}

/**
 * verify --fix-names: gives every MISNAMED CAR (a file whose piece CID verify has just recomputed) its own name. Each
 * step is one rename into a name no file has, in the same directory, so nothing is overwritten or deleted, and after
 * a crash every CAR is whole under some .car name (found by content; a rerun finishes). A cycle (two CARs swapped, or
 * longer) first parks one CAR under a temporary name: a swap takes three renames. A name held by a file that is not
 * moved (not one of the set's CARs, or an extra copy) is left alone, and so is the CAR that should take it.
 */
export async function fixNames (dir: string, reports: CarReport[], onRename?: (r: Rename) => void): Promise<NameFix> {
  const name = (file: string): string => path.basename(file)
  const moves = reports.filter((r) => r.status === 'misnamed' && r.file !== null)
    .map((r) => ({ origin: r.file!, from: r.file!, to: path.join(dir, r.car.file) }))
  const blocked: NameFix['blocked'] = []
  // A move into a name held by a file that stays cannot happen; nor, then, can the move into that move's source.
  for (let changed = true; changed;) {
    changed = false
    const leaving = new Set(moves.map((m) => m.from))
    for (const m of [...moves]) {
      if (leaving.has(m.to) || !await exists(m.to)) continue
      const stuck = blocked.some((b) => path.join(dir, b.from) === m.to)
      blocked.push({ from: name(m.from), to: name(m.to), why: stuck ? `${name(m.to)} cannot be renamed first` : `${name(m.to)} holds another file; move it away, then rerun` })
      moves.splice(moves.indexOf(m), 1)
      changed = true
    }
  }
  const renamed: Rename[] = []
  while (moves.length > 0) {
    const leaving = new Set(moves.map((m) => m.from))
    const ready = moves.filter((m) => !leaving.has(m.to))
    if (ready.length === 0) {
      // Only cycles are left: parking one CAR frees its name and opens its cycle. The .car suffix keeps it findable.
      let tmp: string
      do tmp = path.join(dir, `.packer-rename-${crypto.randomBytes(6).toString('hex')}.car`); while (await exists(tmp))
      await renameFresh(moves[0].from, tmp)
      moves[0].from = tmp
      continue
    }
    for (const m of ready) {
      await renameFresh(m.from, m.to)
      moves.splice(moves.indexOf(m), 1)
      const r = { from: name(m.origin), to: name(m.to) }
      renamed.push(r)
      onRename?.(r)
    }
  }
  if (renamed.length > 0) await syncDir(dir)
  return { renamed, blocked }
}
