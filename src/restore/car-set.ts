import fs from 'node:fs/promises'
import path from 'node:path'
import { CID } from 'multiformats/cid'
import { PackerError, isErrno } from '../errors.js'
import { readManifest, setIdOf, type Manifest } from '../format/manifest.js'
import { BlockIndex } from '../car/block-index.js'
import { importFile } from '../pack/unixfs.js'
import { decryptStream, type Identity } from '../crypto/index.js'
import { CarLocator } from './car-locator.js'
import { BlockSource } from './block-source.js'
import { TableV1, TableV2, readStoredFile, type SetTable } from './set-table.js'

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

/**
 * An opened CAR set: manifest, block index and file table, read without scanning CAR data. Every reader of a set
 * (unpack, ls, verify, mount) starts here. Memory does not grow with the set: the block index is read by pages and a
 * version-2 table by chunks (SetTable).
 */
export class CarSet {
  readonly dir: string
  readonly manifest: Manifest
  readonly locator: CarLocator
  readonly blocks: BlockSource
  /** null when opened with skipTable. */
  readonly table: SetTable | null
  readonly #index: BlockIndex & { close: () => Promise<void> }

  private constructor (dir: string, manifest: Manifest, index: BlockIndex & { close: () => Promise<void> }, locator: CarLocator, blocks: BlockSource, table: SetTable | null) {
    this.dir = dir
    this.manifest = manifest
    this.#index = index
    this.locator = locator
    this.blocks = blocks
    this.table = table
  }

  get setId (): string { return setIdOf(this.manifest) }
  get encrypted (): boolean { return this.manifest.encryption !== null }

  /** The table (opened without skipTable). */
  get files (): SetTable {
    if (this.table === null) throw new Error('CarSet: the table was not read (skipTable)')
    return this.table
  }

  static async open (dir: string, opts: OpenOptions = {}): Promise<CarSet> {
    const manifest = await readManifest(dir)
    if (opts.expect !== undefined && opts.expect !== setIdOf(manifest)) {
      throw new PackerError('CORRUPT', `set ID mismatch: ${dir} holds set ${setIdOf(manifest)}, expected ${opts.expect}; this is not the set you packed (or it was tampered with)`, { subject: dir })
    }
    const index = await BlockIndex.read(path.join(dir, manifest.index.file), manifest.cars.length)
    const locator = new CarLocator(opts.carDir ?? dir, manifest.cars)
    const blocks = new BlockSource(index, locator, manifest.cars)
    try {
      const table = opts.skipTable ? null : await readTable(dir, manifest, blocks, opts.identities ?? [])
      return new CarSet(dir, manifest, index, locator, blocks, table)
    } catch (err) {
      await blocks.close()
      await index.close()
      throw err
    }
  }

  async close (): Promise<void> {
    await this.blocks.close()
    await this.#index.close()
  }
}

async function readTable (dir: string, m: Manifest, blocks: BlockSource, identities: Identity[]): Promise<SetTable> {
  const encrypted = m.encryption !== null
  if (encrypted && identities.length === 0) {
    throw new PackerError('NO_IDENTITY', `${dir} is encrypted: give the identity with -i FILE (or --passphrase)`, { subject: dir })
  }
  if (m.version >= 2) {
    const stored = await readStoredFile(blocks, CID.parse(m.table.cid), 'table index')
    return await TableV2.open(stored, { encrypted, identities, blocks, carCount: m.cars.length, where: `table index of ${dir}` })
  }
  const stored = await storedTableV1(dir, m, blocks)
  const text = encrypted ? await collect(decryptStream([stored], { identities })) : stored
  return new TableV1(text.toString('utf8'), `file table of ${dir}`, m.cars.length)
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/** A version-1 table's stored bytes: from the copy beside the manifest (checked against the table CID), else from the CARs. */
async function storedTableV1 (dir: string, m: Manifest, blocks: BlockSource): Promise<Buffer> {
  const sidecar = path.join(dir, m.table.file!)
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
  return await readStoredFile(blocks, CID.parse(m.table.cid), 'file table')
}
