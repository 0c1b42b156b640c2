import fs from 'node:fs/promises'
import { constants } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import path from 'node:path'
import { readCarRoots } from '../car/car-header.js'
import { MANIFEST_FILE } from '../format/manifest.js'
import type { CarSet } from '../read/car-set.js'
import { CAR_CONTENT_TYPE, IMMUTABLE, sendFile, sendText, type OpenedFile } from './file-response.js'

/**
 * The files a served set is made of, by the names a static server would give them (`manifest.json`, the block index,
 * a version-1 table's copy, every CAR under its manifest name), and nothing else: a name is looked up in this list,
 * never joined to a directory, so no request reaches a file outside it, and a directory is never listed. A CAR is
 * found by its content (CarLocator: the file whose header root is the CAR's, wherever `<pieceCid>.car` is) and served
 * only when its size is the manifest's: a misnamed CAR is served under its own name, a truncated one not at all.
 */
export class ServedFiles {
  readonly #set: CarSet
  /** URL name → the set file it is: a CAR's index, or a path in the set directory. */
  readonly #names = new Map<string, number | string>()

  constructor (set: CarSet) {
    this.#set = set
    const m = set.manifest
    this.#names.set(MANIFEST_FILE, path.join(set.dir, MANIFEST_FILE))
    this.#names.set(m.index.file, path.join(set.dir, m.index.file))
    if (m.table.file !== undefined) this.#names.set(m.table.file, path.join(set.dir, m.table.file))
    m.cars.forEach((c, i) => this.#names.set(c.file, i))
  }

  /**
   * Answers `/{name}` (`name` decoded) as a static server holding the set would: the file's bytes (ranges, HEAD), or
   * 404 for a name that is not one of the set's files or a file that is not here. A CAR's ETag is its piece CID and it
   * never changes; the other files' ETags are their size and mtime, revalidated on every use (a rebuild remakes them).
   */
  async serve (req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const which = this.#names.get(name)
    const file = which === undefined ? null : typeof which === 'number' ? await this.openCar(which) : await openRegular(which)
    if (file === null) {
      sendText(req, res, 404, 'not found')
      return
    }
    if (typeof which === 'number') {
      await sendFile(req, res, file, { contentType: CAR_CONTENT_TYPE, etag: `"${this.#set.manifest.cars[which]!.pieceCid}"`, cacheControl: IMMUTABLE })
      return
    }
    await sendFile(req, res, file, {
      contentType: name === MANIFEST_FILE ? 'application/json' : 'application/octet-stream',
      etag: `"${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}"`,
      cacheControl: 'no-cache',
    })
  }

  /** CAR `i` of the manifest, found by content; null when no file in the CAR directory is that CAR, whole. */
  async openCar (i: number): Promise<OpenedFile | null> {
    const record = this.#set.manifest.cars[i]!
    const file = (await this.#set.cars.whole(i))?.name
    if (file === undefined) return null
    const opened = await openRegular(file)
    if (opened === null) return null
    // checked again on what was opened: the file may have been replaced since the locator looked
    const roots = await readCarRoots(opened.fh)
    if (opened.size !== record.size || roots?.[0]?.toString() !== record.root) {
      await opened.fh.close()
      return null
    }
    return opened
  }
}

async function openRegular (file: string): Promise<OpenedFile | null> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch {
    return null
  }
  const st = await fh.stat()
  if (!st.isFile()) {
    await fh.close()
    return null
  }
  return { fh, size: st.size, mtimeMs: st.mtimeMs }
}
