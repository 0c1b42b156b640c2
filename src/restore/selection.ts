import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import { compareTableOrder, isWithin, splitEntryPath } from '../format/table.js'
import type { NumberedEntry, SetTable } from '../read/set-table.js'

/** A path as the user gave it, as stored: no leading or trailing slashes ('' is the whole set). */
export function cleanPath (p: Buffer): Buffer {
  return Buffer.from(p.toString('latin1').replace(/^\/+|\/+$/g, ''), 'latin1')
}

/**
 * What `unpack SET PATH…` restores, streamed: each path's subtree, preceded by the directories above it (found by
 * lookups, so that they are restored with their stored metadata), each entry once. A directory always comes before
 * the entries below it; the whole tree comes in table order. Memory holds the paths and their parents, never the
 * selection. A path that is not in the set is a USAGE error; a parent that is not a directory refuses the set.
 */
export async function * selection (table: SetTable, paths: Buffer[]): AsyncGenerator<NumberedEntry> {
  const wanted = paths.map(cleanPath).sort(compareTableOrder)
  if (wanted.length === 0 || wanted.some((p) => p.length === 0)) { yield * table.entries(); return }
  const dirs: Buffer[] = [] // chosen directories: a path below one of them is already restored with it
  const parents = new Set<string>()
  const covered = (p: Buffer): boolean => dirs.some((d) => isWithin(p, d))
  for (const [i, p] of wanted.entries()) {
    if ((i > 0 && p.equals(wanted[i - 1]!)) || covered(p)) continue
    const top = await table.lookup(p)
    if (top === undefined) throw new PackerError('USAGE', `${displayPath(p)} is not in the set (see 'packer ls')`, { subject: displayPath(p) })
    const chain: Buffer[] = []
    for (let q = splitEntryPath(p).dir; q.length > 0; q = splitEntryPath(q).dir) chain.unshift(q)
    for (const q of chain) {
      const key = q.toString('latin1')
      if (parents.has(key) || covered(q)) continue
      const e = await table.lookup(q)
      if (e?.type !== 'dir') {
        throw new PackerError('UNSAFE_PATH', `${JSON.stringify(displayPath(p))} lies below ${JSON.stringify(displayPath(q))}, which is not a directory of the set; refusing this set`)
      }
      parents.add(key)
      yield e
    }
    yield top
    if (top.type === 'dir') {
      dirs.push(p)
      yield * table.below(p)
    }
  }
}
