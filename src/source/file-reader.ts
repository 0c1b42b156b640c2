import fs from 'node:fs/promises'
import { constants } from 'node:fs'
import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import type { SourceEntry } from './walk.js'

const CHUNK = 1024 * 1024

/** Thrown when a listed file is gone by the time it is read. */
export class SourceVanishedError extends PackerError {
  constructor (entry: SourceEntry) {
    const shown = displayPath(entry.abs)
    super('SOURCE', `${shown}: vanished while packing (it was listed, then removed); rerun, or use --on-change=skip to leave it out`, { subject: shown })
  }
}

/** Thrown when a file's size, mtime or inode differs between listing and reading: its bytes cannot be trusted. */
export class SourceChangedError extends PackerError {
  constructor (entry: SourceEntry, what: string) {
    const shown = displayPath(entry.abs)
    super('SOURCE', `${shown}: changed while being packed (${what}); rerun when it is stable, or use --on-change=retry or skip`, { subject: shown })
  }
}

/**
 * Streams a source file's bytes in 1 MiB chunks (fresh buffers: downstream stages keep them, and a
 * chunk of 1 MiB owns its ArrayBuffer, so that it can be transferred to a leaf worker, src/pack/leaf-workers.ts). Opens without following
 * symlinks and checks, before and after reading, that the file is the one listed and unchanged; the bytes read must
 * equal the listed size. So the pack never records bytes the file did not hold.
 */
export async function * readSourceFile (entry: SourceEntry, onRead?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(entry.abs, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const shown = displayPath(entry.abs)
    if (e.code === 'ENOENT') throw new SourceVanishedError(entry)
    if (e.code === 'ELOOP') throw new SourceChangedError(entry, 'it became a symlink')
    throw new PackerError('SOURCE', `${shown}: cannot open (${e.code ?? e.message}); make it readable or move it out of the source`, { subject: shown, cause: err })
  }
  try {
    const check = async (when: string): Promise<void> => {
      const st = await fh.stat({ bigint: true })
      if (st.ino !== entry.stat.ino || st.dev !== entry.stat.dev) throw new SourceChangedError(entry, `replaced ${when}`)
      if (st.size !== entry.stat.size) throw new SourceChangedError(entry, `size ${entry.stat.size} became ${st.size} ${when}`)
      if (st.mtimeNs !== entry.stat.mtimeNs) throw new SourceChangedError(entry, `modified ${when}`)
    }
    await check('before reading')
    const size = Number(entry.stat.size)
    // One read ahead: the next chunk is on its way from the disk while this one is processed.
    const readAt = async (pos: number): Promise<Buffer> => {
      const want = Math.min(CHUNK, size - pos)
      const buf = Buffer.allocUnsafe(want)
      let n: number
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, want, pos))
      } catch (err) {
        const shown = displayPath(entry.abs)
        throw new PackerError('SOURCE', `${shown}: read failed at byte ${pos} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { subject: shown, cause: err })
      }
      if (n === 0) throw new SourceChangedError(entry, `only ${pos} of ${size} bytes could be read`)
      return n === want ? buf : buf.subarray(0, n)
    }
    let pos = 0
    let next = size > 0 ? readAt(0) : null
    try {
      while (next !== null) {
        const chunk = await next
        pos += chunk.length
        next = pos < size ? readAt(pos) : null
        onRead?.(chunk.length)
        yield chunk
      }
    } finally {
      await next?.catch(() => {}) // never close the file under a read in flight
    }
    await check('while being read')
  } finally {
    await fh.close()
  }
}
