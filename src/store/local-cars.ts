import { createReadStream, read } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { runEnd } from './block-batcher.js'
import { CarLocator } from './car-locator.js'
import { hashMatches } from './block-hash.js'
import { MissingCarError, type BlockAt, type CarStore, type Occupant, type Place, type WholeCar } from './car-store.js'

/** Largest read of a run of blocks. */
const MAX_RUN = 4 << 20

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

/**
 * CARs as files in a directory, found by content (CarLocator): blocks are pread, a run of blocks stored side by side
 * (small files, written in table order) with one pread; worker threads get the open descriptor. A missing CAR is
 * looked for again later (it may be copied in under a running mount).
 */
export class LocalCars implements CarStore {
  readonly dir: string
  readonly #cars: CarRecord[]
  readonly #locator: CarLocator
  readonly #handles = new Map<number, Promise<fs.FileHandle>>()
  #copies?: Promise<Array<{ file: string, car: number }>>

  constructor (dir: string, cars: CarRecord[]) {
    this.dir = dir
    this.#cars = cars
    this.#locator = new CarLocator(dir, cars)
  }

  get where (): string { return this.dir }

  /** Through the open descriptors: a CAR found once is not looked for again on every block. */
  async has (car: number): Promise<boolean> {
    try {
      await this.#handle(car)
      return true
    } catch (err) {
      if (err instanceof MissingCarError) return false
      throw err
    }
  }

  absent (car: number): MissingCarError {
    return new MissingCarError(car, this.#cars[car]!, `is missing from ${this.dir}; retrieve it and copy it there`)
  }

  async readBlocks (car: number, blocks: BlockAt[]): Promise<Array<Buffer | PackerError>> {
    const out: Array<Buffer | PackerError> = new Array(blocks.length)
    let fd: number
    try {
      fd = (await this.#handle(car)).fd
    } catch (err) {
      if (!(err instanceof MissingCarError)) throw err
      return out.fill(err)
    }
    const order = blocks.map((_, i) => i).sort((a, b) => blocks[a]!.offset - blocks[b]!.offset)
    for (let r = 0; r < order.length;) {
      // A run: blocks with at most a section's head (varint and CID) between them.
      const at = (k: number): BlockAt => blocks[order[k]!]!
      const end = runEnd(at, r, order.length, MAX_RUN)
      const from = at(r).offset
      const bytes = await preadAll(fd, from, at(end - 1).offset + at(end - 1).length - from)
      for (let k = r; k < end; k++) {
        const b = at(k)
        const start = b.offset - from
        out[order[k]!] = start + b.length > bytes.length
          ? this.#damaged(car, `is truncated: block ${b.cid} at byte ${b.offset} is past its end`)
          : await hashMatches(bytes.subarray(start, start + b.length), b.cid.multihash.digest)
            ? bytes.subarray(start, start + b.length)
            : this.#damaged(car, `is damaged: block ${b.cid} at byte ${b.offset} does not match its hash`)
      }
      r = end
    }
    return out
  }

  #damaged (car: number, what: string): PackerError {
    const file = this.#cars[car]!.file
    return new PackerError('CORRUPT', `CAR ${file} ${what}; retrieve the CAR again`, { subject: file })
  }

  async place (car: number, block: BlockAt): Promise<Place> {
    return { fd: (await this.#handle(car)).fd, offset: block.offset }
  }

  async whole (car: number): Promise<WholeCar | null> {
    const file = await this.#locator.pathOf(car)
    if (file === null) return null
    const size = (await fs.stat(file)).size
    return { name: file, ownName: path.basename(file) === this.#cars[car]!.file, size, stream: (from = 0) => createReadStream(file, { start: from, highWaterMark: 1 << 20 }) }
  }

  async occupant (car: number): Promise<Occupant> {
    const own = path.join(this.dir, this.#cars[car]!.file)
    for (let i = 0; i < this.#cars.length; i++) if (await this.#locator.pathOf(i) === own) return { kind: 'found', car: i }
    const copy = (await (this.#copies ?? this.extraCopies())).find((c) => c.file === own)
    if (copy !== undefined) return { kind: 'copy', car: copy.car }
    return await fs.stat(own).then((st) => st.isFile() ? { kind: 'other' } : { kind: 'none' }, () => ({ kind: 'none' }))
  }

  /** Read once (a scan of every .car file's header), then kept: verify asks again for each CAR out of place. */
  async extraCopies (): Promise<Array<{ file: string, car: number }>> {
    this.#copies ??= (async () => {
      for (let i = 0; i < this.#cars.length; i++) await this.#locator.pathOf(i)
      return await this.#locator.extraCopies()
    })()
    return await this.#copies
  }

  async #handle (car: number): Promise<fs.FileHandle> {
    let h = this.#handles.get(car)
    if (h === undefined) {
      h = (async () => {
        const file = await this.#locator.pathOf(car)
        if (file === null) throw this.absent(car)
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
