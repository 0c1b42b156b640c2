import fs from 'node:fs/promises'
import path from 'node:path'
import { isErrno } from '../errors.js'
import { BlockIndex } from '../car/block-index.js'
import { MANIFEST_FILE, readManifest, type Manifest } from '../format/manifest.js'

/**
 * Where a set's own files are read from: manifest.json, the block index (by ranges) and a version-1 table's copy.
 * A directory (LocalSetFiles) or a URL (src/remote/http-set-files.ts).
 */
export interface SetFiles {
  /** The directory or URL, for messages. */
  readonly where: string
  /** The manifest, and when it was written (the mount's root shows it). */
  manifest: () => Promise<{ manifest: Manifest, mtimeMs: number }>
  /** The block index, read by pages. */
  index: (m: Manifest) => Promise<BlockIndex & { close: () => Promise<void> }>
  /** A small file of the set (a version-1 table's copy), or null when there is none. */
  read: (name: string) => Promise<Buffer | null>
}

/** A set directory on this machine. */
export class LocalSetFiles implements SetFiles {
  readonly where: string
  constructor (dir: string) { this.where = dir }

  async manifest (): Promise<{ manifest: Manifest, mtimeMs: number }> {
    const manifest = await readManifest(this.where)
    return { manifest, mtimeMs: (await fs.stat(path.join(this.where, MANIFEST_FILE))).mtimeMs }
  }

  async index (m: Manifest): Promise<BlockIndex & { close: () => Promise<void> }> {
    return await BlockIndex.read(path.join(this.where, m.index.file), m.cars.length)
  }

  async read (name: string): Promise<Buffer | null> {
    try {
      return await fs.readFile(path.join(this.where, name))
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null
      throw err
    }
  }
}
