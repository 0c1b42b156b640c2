import fs from 'node:fs/promises'
import path from 'node:path'
import { syncDir } from './durable-file.js'
import { partialCarName, type CarDraft, type CarSink, type CarSinkOptions } from './set-output.js'
import { WriteQueue } from './write-queue.js'

/**
 * CARs written into a local directory: each under a temporary name, written by a queue of positional writes (the
 * producer does not wait for each), fdatasync'ed, then renamed to its final name, the directory synced.
 */
export function dirCarSink (dir: string, opts: CarSinkOptions = {}): CarSink {
  return {
    begin: async (n) => {
      const tmp = path.join(dir, (opts.partialName ?? partialCarName)(n))
      const fh = await fs.open(tmp, 'w')
      const writes = new WriteQueue(fh)
      let size = 0
      const draft: CarDraft = {
        write: async (bytes, release) => {
          const at = size
          size += bytes.length
          await writes.write(bytes, at, release)
        },
        commit: async (name) => {
          await writes.drain()
          await fh.datasync()
          await fh.close()
          await fs.rename(tmp, path.join(dir, name))
          await syncDir(dir)
        },
        discard: async () => {
          await writes.drain().catch(() => {})
          await fh.close().catch(() => {})
          await fs.rm(tmp, { force: true })
        },
      }
      return draft
    },
  }
}
