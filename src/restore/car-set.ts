import fs from 'node:fs/promises'
import path from 'node:path'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { PackerError, isErrno } from '../errors.js'
import { readManifest, setIdOf, type Manifest } from '../format/manifest.js'
import { parseTable, type TableEntry, type TableHeader } from '../format/file-table.js'
import { BlockIndex } from '../car/block-index.js'
import { importFile } from '../pack/unixfs.js'
import { decryptStream, type Identity } from '../crypto/index.js'
import { CarLocator } from './car-locator.js'
import { BlockSource } from './block-source.js'

export interface OpenOptions {
  /** Identities that may open an encrypted set. */
  identities?: Identity[]
  /** The set ID the user kept apart from the CARs; the set is refused if it differs. */
  expect?: string
  /** Where the CARs are, when not beside manifest.json. */
  carDir?: string
  /** Read only the manifest and index (verify, pieces): the file table is not needed or cannot be decrypted. */
  skipTable?: boolean
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/**
 * An opened CAR set: manifest, file table and block index, read without scanning CAR data. Every reader of a set
 * (unpack, ls, verify, mount) starts here.
 */
export class CarSet {
  readonly dir: string
  readonly manifest: Manifest
  readonly header: TableHeader
  readonly entries: TableEntry[]
  readonly locator: CarLocator
  readonly blocks: BlockSource
  readonly #byPath = new Map<string, TableEntry>()

  private constructor (dir: string, manifest: Manifest, index: BlockIndex, locator: CarLocator, header: TableHeader, entries: TableEntry[]) {
    this.dir = dir
    this.manifest = manifest
    this.locator = locator
    this.blocks = new BlockSource(index, locator, manifest.cars)
    this.header = header
    this.entries = entries
    for (const e of entries) this.#byPath.set(e.path.toString('latin1'), e)
  }

  get setId (): string { return setIdOf(this.manifest) }
  get encrypted (): boolean { return this.manifest.encryption !== null }

  static async open (dir: string, opts: OpenOptions = {}): Promise<CarSet> {
    const manifest = await readManifest(dir)
    if (opts.expect !== undefined && opts.expect !== setIdOf(manifest)) {
      throw new PackerError('CORRUPT', `set ID mismatch: ${dir} holds set ${setIdOf(manifest)}, expected ${opts.expect}; this is not the set you packed (or it was tampered with)`, { subject: dir })
    }
    const index = await BlockIndex.read(path.join(dir, manifest.index.file), manifest.cars.length)
    const locator = new CarLocator(opts.carDir ?? dir, manifest.cars)
    const set = new CarSet(dir, manifest, index, locator, {}, [])
    if (opts.skipTable) return set
    const text = await set.#readTable(opts.identities ?? [])
    const { header, entries } = parseTable(text, `file table of ${dir}`, manifest.cars.length)
    const opened = new CarSet(dir, manifest, index, locator, header, entries)
    await set.close()
    return opened
  }

  /** The table's stored bytes: from the file beside the manifest (checked against the table CID), else from the CARs. */
  async #storedTable (): Promise<Buffer> {
    const m = this.manifest
    const sidecar = path.join(this.dir, m.table.file)
    try {
      const bytes = await fs.readFile(sidecar)
      const { cid } = await importFile([bytes], { put: async () => {} })
      if (cid.toString() !== m.table.cid) {
        throw new PackerError('CORRUPT', `${sidecar} does not match the set's table ${m.table.cid}; delete it to read the table from the CARs`, { subject: sidecar })
      }
      return bytes
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
    }
    const entry = await exporter(CID.parse(m.table.cid), this.blocks.blockstore as any)
    if (entry.type !== 'file' && entry.type !== 'raw') throw new PackerError('FORMAT', `the set's table ${m.table.cid} is not a file`)
    return await collect(entry.content())
  }

  async #readTable (identities: Identity[]): Promise<string> {
    const stored = await this.#storedTable()
    if (!this.encrypted) return stored.toString('utf8')
    if (identities.length === 0) {
      throw new PackerError('NO_IDENTITY', `${this.dir} is encrypted: give the identity with -i FILE (or --passphrase)`, { subject: this.dir })
    }
    const plain = await collect(decryptStream([stored], { identities }))
    return plain.toString('utf8')
  }

  lookup (p: Buffer): TableEntry | undefined { return this.#byPath.get(p.toString('latin1')) }

  /** The entries at or below `p` (the whole tree for the empty path). */
  select (p: Buffer): TableEntry[] {
    if (p.length === 0) return this.entries
    const key = p.toString('latin1')
    return this.entries.filter((e) => { const k = e.path.toString('latin1'); return k === key || k.startsWith(key + '/') })
  }

  async close (): Promise<void> { await this.blocks.close() }
}
