import type { CID } from 'multiformats/cid'
import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import type { BlockIndex } from '../car/block-index.js'
import type { BlockAt, CarStore, Place } from '../store/car-store.js'

const SHA2_256 = 0x12

/**
 * The one place blocks are read on the way back: finds a block through the index and reads it from its CAR in the
 * set's store (files, web servers), which checks its SHA-256 against the CID before anyone sees a byte. A missing CAR
 * or a damaged block is an error that names the CAR.
 */
export class BlockSource {
  readonly #index: BlockIndex
  readonly #store: CarStore
  readonly #cars: CarRecord[]

  constructor (index: BlockIndex, store: CarStore, cars: CarRecord[]) {
    this.#index = index
    this.#store = store
    this.#cars = cars
  }

  /** The manifest's record of CAR `i`. */
  car (i: number): CarRecord { return this.#cars[i] }

  /**
   * Where a block is: its location in a CAR the store has (a block may be in several CARs: the first present one).
   * Throws MissingCarError when no CAR holding it is present, FORMAT when the block is not in the index.
   */
  async locate (cid: CID): Promise<{ car: number } & BlockAt> {
    if (cid.multihash.code !== SHA2_256) throw new PackerError('FORMAT', `block ${cid} is not SHA-256 addressed; packer sets hold only SHA-256 blocks`, { subject: cid.toString() })
    const locs = await this.#index.locations(cid.multihash.digest)
    if (locs.length === 0) throw new PackerError('FORMAT', `block ${cid} is not in the set's index; the index or file table is damaged`, { subject: cid.toString() })
    for (const loc of locs) if (await this.#store.has(loc.car)) return { ...loc, cid }
    throw this.#store.absent(locs[0]!.car)
  }

  /** Where a worker thread reads a located block from (src/read/worker.ts); it checks the SHA-256 itself. */
  async place (loc: { car: number } & BlockAt): Promise<Place> { return await this.#store.place(loc.car, loc) }

  /** The CARs that hold a block (empty when the index has no such block). */
  async carsOf (cid: CID): Promise<number[]> { return (await this.#index.locations(cid.multihash.digest)).map((l) => l.car) }

  async get (cid: CID): Promise<Uint8Array> {
    const [got] = await this.getMany([cid])
    if (got instanceof PackerError) throw got
    return got!
  }

  /**
   * Several blocks, each or the error that keeps it from being read (PackerError); the store reads blocks stored
   * next to each other in a CAR (a run of small files, written in table order) together.
   */
  async getMany (cids: CID[]): Promise<Array<Uint8Array | PackerError>> {
    const out: Array<Uint8Array | PackerError> = new Array(cids.length)
    const byCar = new Map<number, Array<{ i: number } & BlockAt>>()
    for (const [i, cid] of cids.entries()) {
      try {
        const { car, ...at } = await this.locate(cid)
        const list = byCar.get(car)
        if (list === undefined) byCar.set(car, [{ i, ...at }])
        else list.push({ i, ...at })
      } catch (err) {
        if (!(err instanceof PackerError)) throw err
        out[i] = err
      }
    }
    await Promise.all([...byCar].map(async ([car, blocks]) => {
      const got = await this.#store.readBlocks(car, blocks)
      blocks.forEach((b, k) => { out[b.i] = got[k]! })
    }))
    return out
  }

  /** The blockstore shape ipfs-unixfs-exporter reads from. */
  get blockstore (): { get: (cid: CID) => AsyncGenerator<Uint8Array> } {
    return { get: (cid: CID) => (async function * (src: BlockSource) { yield await src.get(cid) })(this) }
  }
}
