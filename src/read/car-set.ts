import { CID } from 'multiformats/cid'
import { PackerError } from '../errors.js'
import { setIdOf, type Manifest } from '../format/manifest.js'
import type { BlockIndex } from '../car/block-index.js'
import { importFile } from '../pack/unixfs.js'
import { decryptStream, type Identity } from '../crypto/index.js'
import type { CarStore } from '../store/car-store.js'
import { LocalCars } from '../store/local-cars.js'
import { LocalSetFiles, type SetFiles } from '../store/set-files.js'
import { BlockSource } from './block-source.js'
import { HttpCars } from '../remote/http-cars.js'
import { HttpSetFiles } from '../remote/http-set-files.js'
import { pieceUrl } from '../remote/piece-url.js'
import type { HttpTimeouts } from '../remote/http-get.js'
import type { S3Options } from '../s3/client.js'
import { isS3Url } from '../s3/s3-url.js'
import type { S3SetAccess } from '../s3/s3-set.js'
import { TableV1, TableV2, readStoredFile, type SetTable } from './set-table.js'

export interface OpenOptions {
  /** Identities that may open an encrypted set. */
  identities?: Identity[]
  /** The set ID the user kept apart from the CARs; the set is refused if it differs. */
  expect?: string
  /** Where the CARs are, when not beside manifest.json: a directory, or a set directory's URL. */
  carDir?: string
  /** The CARs are fetched from these URL templates ({pieceCid}, {pieceCidV2}), tried in order. */
  pieceUrls?: string[]
  /** Timeouts of every HTTP request. */
  http?: HttpTimeouts
  /** How the set's store is reached when it, or its CARs, are at `s3://BUCKET/PREFIX` (credentials: the AWS chain). */
  s3?: S3Options
  /** Read only the manifest and index (verify, pieces): the file table is not needed or cannot be decrypted. */
  skipTable?: boolean
}

/**
 * An opened CAR set: manifest, block index and file table, read without scanning CAR data. Every reader of a set
 * (unpack, ls, verify, mount) starts here. Memory does not grow with the set: the block index is read by pages and a
 * version-2 table by chunks (SetTable).
 */
export class CarSet {
  /** Where the manifest is: a directory or a URL. */
  readonly dir: string
  readonly manifest: Manifest
  /** When the manifest was written. */
  readonly mtimeMs: number
  /** Where the manifest, the index and a version-1 table's copy are read from. */
  readonly setFiles: SetFiles
  /** Where the CARs are read from. */
  readonly cars: CarStore
  readonly blocks: BlockSource
  /** null when opened with skipTable. */
  readonly table: SetTable | null
  readonly #index: BlockIndex & { close: () => Promise<void> }

  private constructor (setFiles: SetFiles, manifest: Manifest, mtimeMs: number, index: BlockIndex & { close: () => Promise<void> }, cars: CarStore, blocks: BlockSource, table: SetTable | null) {
    this.dir = setFiles.where
    this.setFiles = setFiles
    this.manifest = manifest
    this.mtimeMs = mtimeMs
    this.#index = index
    this.cars = cars
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

  /**
   * A set in a directory, at a URL (http, https) or under an S3 prefix (s3://BUCKET/PREFIX); its CARs beside
   * manifest.json, in opts.carDir, or at opts.pieceUrls.
   */
  static async open (where: string, opts: OpenOptions = {}): Promise<CarSet> {
    const carWhere = opts.carDir ?? where
    // The S3 client (and the AWS SDK, ~280 ms to load) only when S3 is named.
    const s3 = isS3Url(where) || isS3Url(carWhere) ? await (await import('../s3/s3-set.js')).s3SetAccess(opts.s3) : null
    return await CarSet.openFrom(setFiles(where, opts, s3), (m) => carStore(carWhere, m, opts, s3), opts)
  }

  /** A set whose files and CARs are wherever `files` and the store made by `cars` read them from. */
  static async openFrom (files: SetFiles, cars: (m: Manifest) => CarStore, opts: OpenOptions = {}): Promise<CarSet> {
    const dir = files.where
    const { manifest, mtimeMs } = await files.manifest()
    if (opts.expect !== undefined && opts.expect !== setIdOf(manifest)) {
      throw new PackerError('CORRUPT', `set ID mismatch: ${dir} holds set ${setIdOf(manifest)}, expected ${opts.expect}; this is not the set you packed (or it was tampered with)`, { subject: dir })
    }
    const index = await files.index(manifest)
    const store = cars(manifest)
    const blocks = new BlockSource(index, store, manifest.cars)
    try {
      const table = opts.skipTable ? null : await readTable(files, manifest, blocks, opts.identities ?? [])
      return new CarSet(files, manifest, mtimeMs, index, store, blocks, table)
    } catch (err) {
      await store.close()
      await index.close()
      throw err
    }
  }

  async close (): Promise<void> {
    await this.cars.close()
    await this.#index.close()
  }
}

function isUrl (where: string): boolean { return /^https?:\/\//i.test(where) }

/** Where manifest.json, the index and a table's copy are read from: an S3 prefix, a URL, or a directory. */
function setFiles (where: string, opts: OpenOptions, s3: S3SetAccess | null): SetFiles {
  if (isS3Url(where)) return s3!.files(where)
  return isUrl(where) ? new HttpSetFiles(where, opts.http) : new LocalSetFiles(where)
}

/** Where the CARs are read from: piece URLs, an S3 prefix, a set directory's URL, or a directory. */
function carStore (where: string, m: Manifest, opts: OpenOptions, s3: S3SetAccess | null): CarStore {
  const templates = opts.pieceUrls ?? []
  if (templates.length > 0) return new HttpCars(templates.join(', '), m.cars, (c) => templates.map((t) => pieceUrl(t, c)), { timeouts: opts.http })
  if (isS3Url(where)) return s3!.cars(where, m.cars)
  if (!isUrl(where)) return new LocalCars(where, m.cars)
  const base = new URL(where.endsWith('/') ? where : `${where}/`)
  return new HttpCars(base.href, m.cars, (c) => [new URL(c.file, base).href], { timeouts: opts.http })
}

async function readTable (files: SetFiles, m: Manifest, blocks: BlockSource, identities: Identity[]): Promise<SetTable> {
  const dir = files.where
  const encrypted = m.encryption !== null
  if (encrypted && identities.length === 0) {
    throw new PackerError('NO_IDENTITY', `${dir} is encrypted: give the identity with -i FILE (or --passphrase)`, { subject: dir })
  }
  if (m.version >= 2) {
    const stored = await readStoredFile(blocks, CID.parse(m.table.cid), 'table index')
    return await TableV2.open(stored, { encrypted, identities, blocks, carCount: m.cars.length, where: `table index of ${dir}` })
  }
  const stored = await storedTableV1(files, m, blocks)
  const text = encrypted ? await collect(decryptStream([stored], { identities })) : stored
  return new TableV1(text.toString('utf8'), `file table of ${dir}`, m.cars.length)
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/** A version-1 table's stored bytes: from the copy beside the manifest (checked against the table CID), else from the CARs. */
async function storedTableV1 (files: SetFiles, m: Manifest, blocks: BlockSource): Promise<Buffer> {
  const bytes = await files.read(m.table.file!)
  if (bytes === null) return await readStoredFile(blocks, CID.parse(m.table.cid), 'file table')
  const { cid } = await importFile([bytes], { put: async () => {} })
  if (cid.toString() !== m.table.cid) {
    const sidecar = `${files.where}/${m.table.file!}`
    throw new PackerError('CORRUPT', `${sidecar} does not match the set's table ${m.table.cid}; delete it to read the table from the CARs`, { subject: sidecar })
  }
  return bytes
}
