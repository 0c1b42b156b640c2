import fs from 'node:fs/promises'
import path from 'node:path'
import { adviseWillNeed } from '../native-addon.js'
import { SourceChangedError, SourceVanishedError, openSourceFile } from './file-reader.js'
import type { TreeSource } from './tree-source.js'
import { sourceStat, walkSource } from './walk.js'

const SLASH = Buffer.from('/')

/**
 * A directory or file on disk. Leaf jobs read it themselves: a small file whole by path, a large one by pread on a
 * descriptor opened here (the measured fast path: no bytes cross threads on the way in).
 */
export function localTree (source: string): TreeSource {
  const root = path.resolve(source)
  const rootBytes = Buffer.from(root)
  return {
    name: root,
    spec: { source: root },
    readsInFlight: 0,
    walk: async (opts) => await walkSource(root, opts),
    locate: (p, single) => single ? rootBytes : Buffer.concat([rootBytes, SLASH, p]),
    open: async (e) => {
      const f = await openSourceFile(e)
      return { size: Number(e.stat.size), input: () => ({ fd: f.fd }), check: f.check, close: f.close }
    },
    wholeFile: (e) => ({
      path: e.abs, // posted to a worker as a copy, with the other paths of its message (LeafWorkers)
      expect: { dev: e.stat.dev, ino: e.stat.ino, size: e.stat.size, mtimeNs: e.stat.mtimeNs },
    }),
    // The disk reads these files ahead while the workers, one synchronous read at a time, are busy with earlier ones.
    willRead: (entries) => adviseWillNeed(entries.map((e) => e.abs)),
    // A large file's leaf jobs pread it in order, and the disk's own readahead follows them.
    willOpen: () => {},
    refresh: async (e) => {
      let now: import('node:fs').BigIntStats
      try { now = await fs.lstat(e.abs, { bigint: true }) } catch { throw new SourceVanishedError(e) }
      if (!now.isFile()) throw new SourceChangedError(e, 'it is no longer a regular file')
      e.stat = sourceStat(now)
    },
    close: async () => {},
  }
}
