import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import { read } from 'node:fs'
import type { CID } from 'multiformats/cid'
import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import type { BlockIndex } from '../car/block-index.js'
import type { CarLocator } from './car-locator.js'

const SHA2_256 = 0x12
/** Most bytes between two blocks read together (a section's head is a varint and a CID: ~40 bytes). */
const RUN_GAP = 4096
/** Largest read of a run of blocks. */
const MAX_RUN = 4 << 20
/** Blocks at least this large are hashed off the JavaScript thread. */
const OFF_THREAD_HASH = 256 * 1024

/** `length` bytes at `offset` of a file, fewer only at its end. */
async function preadAll (fd: number, offset: number, length: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length)
  let done = 0
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => read(fd, bytes, done, length - done, offset + done, (err, got) => err ? reject(err) : resolve(got)))
    if (n === 0) break
    done += n
  }
  return done === length ? bytes : bytes.subarray(0, done)
}

export class MissingCarError extends PackerError {
  readonly car: number
  constructor (car: number, record: CarRecord, dir: string) {
    super('MISSING_CAR', `CAR ${record.file} (piece ${record.pieceCid}) is missing from ${dir}; retrieve it and copy it there`, { subject: record.file })
    this.car = car
  }
}

/**
 * The one place that reads CAR bytes on the way back: finds a block through the index, preads it from its CAR and
 * checks its SHA-256 against the CID before anyone sees a byte. A missing CAR or a damaged block is an error that
 * names the CAR.
 */
export class BlockSource {
  readonly #index: BlockIndex
  readonly #locator: CarLocator
  readonly #cars: CarRecord[]
  readonly #handles = new Map<number, Promise<fs.FileHandle>>()

  constructor (index: BlockIndex, locator: CarLocator, cars: CarRecord[]) {
    this.#index = index
    this.#locator = locator
    this.#cars = cars
  }

  /** The manifest's record of CAR `i`. */
  car (i: number): CarRecord { return this.#cars[i] }

  /**
   * Where a block is: its location in a CAR that is present (a block may be in several CARs: the first present one),
   * with an open descriptor of that CAR (owned by this source; valid until close()), for readers that pread and hash
   * blocks elsewhere (the mount's worker threads). The caller must check the SHA-256.
   * Throws MissingCarError when no CAR holding it is present, FORMAT when the block is not in the index.
   */
  async locate (cid: CID): Promise<{ car: number, fd: number, offset: number, length: number }> {
    if (cid.multihash.code !== SHA2_256) throw new PackerError('FORMAT', `block ${cid} is not SHA-256 addressed; packer sets hold only SHA-256 blocks`, { subject: cid.toString() })
    const locs = await this.#index.locations(cid.multihash.digest)
    if (locs.length === 0) throw new PackerError('FORMAT', `block ${cid} is not in the set's index; the index or file table is damaged`, { subject: cid.toString() })
    let missing: unknown
    for (const loc of locs) {
      try {
        const fh = await this.#handle(loc.car)
        return { car: loc.car, fd: fh.fd, offset: loc.offset, length: loc.length }
      } catch (err) {
        if (!(err instanceof MissingCarError)) throw err
        missing ??= err
      }
    }
    throw missing
  }

  /** The CARs that hold a block (empty when the index has no such block). */
  async carsOf (cid: CID): Promise<number[]> { return (await this.#index.locations(cid.multihash.digest)).map((l) => l.car) }

  async get (cid: CID): Promise<Uint8Array> {
    const loc = await this.locate(cid)
    return await this.#checked(cid, loc, await this.#read(cid, loc))
  }

  /**
   * Several blocks, each or the error that keeps it from being read (PackerError): blocks stored next to each other
   * in a CAR (a run of small files, written in table order) are read with one pread, then each is hash-checked.
   */
  async getMany (cids: CID[]): Promise<Array<Uint8Array | PackerError>> {
    const out: Array<Uint8Array | PackerError> = new Array(cids.length)
    const found: Array<{ i: number, fd: number, car: number, offset: number, length: number }> = []
    for (const [i, cid] of cids.entries()) {
      try {
        found.push({ i, ...await this.locate(cid) })
      } catch (err) {
        if (!(err instanceof PackerError)) throw err
        out[i] = err
      }
    }
    found.sort((a, b) => a.fd - b.fd || a.offset - b.offset)
    for (let r = 0; r < found.length;) {
      // A run: blocks of one CAR with at most a section's head (varint and CID) between them.
      let end = r + 1
      while (end < found.length && found[end]!.fd === found[r]!.fd && found[end]!.offset - (found[end - 1]!.offset + found[end - 1]!.length) <= RUN_GAP &&
             found[end]!.offset + found[end]!.length - found[r]!.offset <= MAX_RUN) end++
      const from = found[r]!.offset
      const span = found[end - 1]!.offset + found[end - 1]!.length - from
      const bytes = await preadAll(found[r]!.fd, from, span)
      for (let k = r; k < end; k++) {
        const f = found[k]!
        try {
          // Cut short (a truncated CAR): the blocks past its end say so, one by one.
          const block = f.offset - from + f.length <= bytes.length ? bytes.subarray(f.offset - from, f.offset - from + f.length) : await this.#read(cids[f.i]!, f)
          out[f.i] = await this.#checked(cids[f.i]!, f, block)
        } catch (err) {
          if (!(err instanceof PackerError)) throw err
          out[f.i] = err
        }
      }
      r = end
    }
    return out
  }

  async #read (cid: CID, loc: { fd: number, car: number, offset: number, length: number }): Promise<Buffer> {
    const bytes = await preadAll(loc.fd, loc.offset, loc.length)
    if (bytes.length < loc.length) {
      const car = this.#cars[loc.car]!
      throw new PackerError('CORRUPT', `CAR ${car.file} is truncated: block ${cid} at byte ${loc.offset} is past its end; retrieve the CAR again`, { subject: car.file })
    }
    return bytes
  }

  /** The block's bytes once their SHA-256 matches its CID; else CORRUPT naming the CAR (TRUNCATED reads throw earlier). */
  async #checked (cid: CID, loc: { car: number, offset: number }, bytes: Buffer): Promise<Buffer> {
    // Large blocks are hashed on libuv's thread pool (WebCrypto), so several blocks are checked at once, off the
    // thread that decrypts and writes; small ones are cheaper to hash here than to hand over.
    const digest = bytes.length >= OFF_THREAD_HASH
      ? Buffer.from(await crypto.webcrypto.subtle.digest('SHA-256', bytes))
      : crypto.createHash('sha256').update(bytes).digest()
    if (!digest.equals(cid.multihash.digest)) {
      const car = this.#cars[loc.car]!
      throw new PackerError('CORRUPT', `CAR ${car.file} is damaged: block ${cid} at byte ${loc.offset} does not match its hash; retrieve the CAR again`, { subject: car.file })
    }
    return bytes
  }

  /** The blockstore shape ipfs-unixfs-exporter reads from. */
  get blockstore (): { get: (cid: CID) => AsyncGenerator<Uint8Array> } {
    return { get: (cid: CID) => (async function * (src: BlockSource) { yield await src.get(cid) })(this) }
  }

  async #handle (car: number): Promise<fs.FileHandle> {
    let h = this.#handles.get(car)
    if (h === undefined) {
      h = (async () => {
        const file = await this.#locator.pathOf(car)
        if (file === null) throw new MissingCarError(car, this.#cars[car], this.#locator.dir)
        return await fs.open(file, 'r')
      })()
      this.#handles.set(car, h)
      // A missing CAR is not remembered: it may be copied in later.
      h.catch(() => this.#handles.delete(car))
    }
    return await h
  }

  async close (): Promise<void> {
    const hs = [...this.#handles.values()]
    this.#handles.clear()
    await Promise.all(hs.map(async (h) => { try { await (await h).close() } catch {} }))
  }
}
