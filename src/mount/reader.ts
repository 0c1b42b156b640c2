import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import type { TableEntry } from '../format/file-table.js'
import { displayPath } from '../format/stored-path.js'
import type { CarSet } from '../restore/car-set.js'
import { FileView, type Leaf } from '../restore/file-view.js'
import { AgeGeometry, CHUNK, openChunkInto } from './chunks.js'
import { WorkerPool } from './pool.js'
import type { LeafJob } from './worker.js'

export const DEFAULT_CACHE_SIZE = 256 * 1024 * 1024
export const MIN_CACHE_SIZE = 4 * 1024 * 1024
const MiB = 1024 * 1024

export interface ReaderOptions {
  /** Bytes of verified, decrypted data kept (LRU). */
  cacheSize?: number
  /** Worker threads that hash and decrypt; default: one per CPU, at most 4. */
  workers?: number
  /** Most bytes read ahead of a sequential reader. */
  readAhead?: number
}

/**
 * What one leaf block yields once verified: for a clear file its bytes (= plaintext); for an encrypted one the
 * plaintext of the age chunks wholly inside it, and the stored bytes before and after them (`head`, `tail`), from which
 * chunks that cross leaf edges are opened.
 */
interface LeafUnit {
  plain: Buffer
  /** Plaintext offset of plain[0]. */
  plainStart: number
  /** Encrypted only: chunks [first, first + count) are in plain. */
  first: number
  count: number
  leafStart: number
  firstAt: number
  sealedLength: number
  head: Buffer
  tail: Buffer
  car: number
  /** Set when evicted: its buffer went back to the workers and may be overwritten. */
  gone?: boolean
}

type Unit = LeafUnit | { plain: Buffer, plainStart: number, gone?: boolean }

interface Handle { next: number, window: number, aheadTo: number }

/**
 * Serves plaintext ranges of files for the mount: maps a range to the leaf blocks (and age chunks) that hold it,
 * has worker threads pread, hash-check and decrypt those leaves, keeps the results in a bounded LRU, and reads ahead
 * of sequential readers. Errors are PackerErrors naming the CAR (missing, truncated, damaged).
 */
export class MountReader {
  readonly #set: CarSet
  readonly view: FileView
  readonly #pool: WorkerPool
  readonly #cache: LRUCache<string, Unit>
  readonly #inflight = new Map<string, Promise<Unit>>()
  readonly #keys = new LRUCache<string, Buffer>({ max: 65536 })
  readonly #handles = new Map<number, Handle>()
  readonly #maxAhead: number
  #nextHandle = 1

  constructor (set: CarSet, opts: ReaderOptions = {}) {
    this.#set = set
    this.view = new FileView(set)
    this.#pool = new WorkerPool(opts.workers)
    const cacheSize = Math.max(opts.cacheSize ?? DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE)
    this.#cache = new LRUCache<string, Unit>({
      maxSize: cacheSize,
      sizeCalculation: (u) => Math.max(1, u.plain.buffer.byteLength + ('head' in u ? u.head.length + u.tail.length : 0)),
      dispose: (u) => {
        // Evicted: its buffer is reused by a worker. A read holding it notices `gone` and starts over.
        u.gone = true
        if (u.plain.byteOffset === 0) this.#pool.recycle(u.plain.buffer as ArrayBuffer)
      },
    })
    this.#maxAhead = Math.max(MiB, Math.min(opts.readAhead ?? 16 * MiB, Math.floor(cacheSize / 4)))
  }

  get workers (): number { return this.#pool.size }

  open (): number {
    const h = this.#nextHandle++
    this.#handles.set(h, { next: 0, window: 0, aheadTo: 0 })
    return h
  }

  release (h: number): void { this.#handles.delete(h) }

  /** Copies plaintext [pos, pos + len) of a file into buf; returns the bytes copied (0 at or past the end). */
  async read (e: TableEntry, handle: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const end = Math.min(pos + len, e.size!)
    if (pos >= end) return 0
    let n = -1
    for (let attempt = 0; n < 0; attempt++) {
      if (attempt === 8) throw new Error('the cache is too small for the reads in flight; mount with a larger --cache-size')
      n = await this.#tryRead(e, buf, pos, end)
    }
    this.#readAhead(e, handle, pos, end)
    return n
  }

  /** -1 when a unit was evicted (and its buffer reused) before it could be copied: the caller tries again. */
  async #tryRead (e: TableEntry, buf: Buffer, pos: number, end: number): Promise<number> {
    const layout = await this.view.layout(e)
    // Gather every unit first, then copy with no await in between: eviction cannot interleave with the copy.
    const parts: Array<[Unit, number, number]> = []
    if (e.enc) {
      const g = new AgeGeometry(e.enc.headerLength, e.size!)
      const c0 = Math.floor(pos / CHUNK)
      const c1 = Math.floor((end - 1) / CHUNK)
      const leaves = await layout.leaves(g.start(c0), g.end(c1))
      if (leaves === null || !this.#direct(e, await layout.leaves(0, 1))) return await this.#slowRead(e, buf, pos, end)
      const units = await Promise.all(leaves.map(async (l) => await this.#leafUnit(e, l, true))) as LeafUnit[]
      for (let c = c0; c <= c1; c++) {
        let u: Unit | undefined = units.find((u) => u.first <= c && c < u.first + u.count)
        if (u === undefined) u = await this.#straddler(e, g, c, units, leaves)
        parts.push([u, c * CHUNK, (c + 1) * CHUNK])
      }
    } else {
      const leaves = await layout.leaves(pos, end)
      if (leaves === null) return await this.#slowRead(e, buf, pos, end)
      const units = await Promise.all(leaves.map(async (l) => await this.#leafUnit(e, l, true)))
      for (const u of units) parts.push([u, 0, Infinity])
    }
    if (parts.some(([u]) => u.gone === true)) return -1
    let n = 0
    for (const [u, lo, hi] of parts) n += copyOut(u, buf, pos, end, lo, hi)
    return n
  }

  /** True when the file's nonce lies inside its first leaf (always so for packer's sets). */
  #direct (e: TableEntry, first: Leaf[] | null): boolean {
    return first !== null && first.length > 0 && e.enc!.headerLength + 16 <= first[0].length
  }

  async #slowRead (e: TableEntry, buf: Buffer, pos: number, end: number): Promise<number> {
    const data = await this.view.read(e, pos, end)
    data.copy(buf, 0)
    return data.length
  }

  #readAhead (e: TableEntry, handle: number, pos: number, end: number): void {
    const h = this.#handles.get(handle)
    if (h === undefined) return
    const sequential = pos === 0 || Math.abs(pos - h.next) <= MiB
    h.next = end
    if (!sequential) { h.window = 0; h.aheadTo = end; return }
    h.window = Math.min(this.#maxAhead, Math.max(MiB, h.window * 2))
    const to = Math.min(e.size!, end + h.window)
    if (to <= h.aheadTo || this.#pool.queued > 64) return
    const from = Math.max(end, h.aheadTo)
    h.aheadTo = to
    void (async () => {
      const layout = await this.view.layout(e)
      let sFrom = from
      let sTo = to
      if (e.enc) {
        const g = new AgeGeometry(e.enc.headerLength, e.size!)
        sFrom = g.start(Math.floor(from / CHUNK))
        sTo = g.end(Math.floor((to - 1) / CHUNK))
      }
      const leaves = await layout.leaves(sFrom, sTo)
      for (const l of leaves ?? []) this.#leafUnit(e, l, false).catch(() => {})
    })().catch(() => {})
  }

  async #leafUnit (e: TableEntry, leaf: Leaf, urgent: boolean): Promise<Unit> {
    const key = `${e.cid}:${leaf.start}`
    const hit = this.#cache.get(key)
    if (hit !== undefined) return hit
    let p = this.#inflight.get(key)
    if (p === undefined) {
      p = this.#loadLeaf(e, leaf, urgent)
      this.#inflight.set(key, p)
      p.then((u) => { this.#cache.set(key, u) }, () => {}).finally(() => this.#inflight.delete(key))
    }
    return await p
  }

  async #loadLeaf (e: TableEntry, leaf: Leaf, urgent: boolean): Promise<Unit> {
    const loc = await this.#set.blocks.locate(leaf.cid)
    const car = this.#set.blocks.car(loc.car)
    if (loc.length !== leaf.length) {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: block ${leaf.cid} in CAR ${car.file} is ${loc.length} bytes, the file's DAG says ${leaf.length}; the set is damaged`, { subject: car.file })
    }
    const job: Omit<LeafJob, 'id'> = { fd: loc.fd, offset: loc.offset, length: loc.length, digest: leaf.cid.multihash.digest }
    let g: AgeGeometry | undefined
    let ins: ReturnType<AgeGeometry['inside']> | undefined
    if (e.enc) {
      g = new AgeGeometry(e.enc.headerLength, e.size!)
      ins = g.inside(leaf.start, leaf.start + leaf.length)
      const nonceAt = e.enc.headerLength - leaf.start
      let key: Buffer | null = this.#keys.get(e.cid!) ?? null
      if (key === null && !(nonceAt >= 0 && nonceAt + 16 <= leaf.length)) {
        const layout = await this.view.layout(e)
        const first = (await layout.leaves(0, 1))![0]
        await this.#leafUnit(e, first, urgent)
        key = this.#keys.get(e.cid!) ?? null
        if (key === null) throw new PackerError('CORRUPT', `${displayPath(e.path)}: no payload nonce in its first block; the set is damaged`)
      }
      job.dec = {
        key,
        fileKey: key === null ? e.enc.key : undefined,
        nonceAt: key === null ? nonceAt : undefined,
        first: ins.first,
        count: ins.count,
        firstAt: ins.firstAt,
        lastIndex: g.chunks - 1,
        lastPlain: g.plainLength(g.chunks - 1),
      }
    }
    const r = await this.#pool.run(job, urgent)
    if (!r.ok) {
      const where = `block ${leaf.cid} at byte ${loc.offset} of CAR ${car.file}`
      if (r.kind === 'auth') throw new PackerError('CORRUPT', `${displayPath(e.path)}: age chunk ${r.chunk} (in ${where}) failed authentication; the CAR is damaged, retrieve it again`, { subject: car.file })
      if (r.kind === 'hash') throw new PackerError('CORRUPT', `${displayPath(e.path)}: ${where} does not match its hash; the CAR is damaged, retrieve it again`, { subject: car.file })
      if (r.kind === 'truncated') throw new PackerError('CORRUPT', `${displayPath(e.path)}: CAR ${car.file} is truncated (${where} is past its end); retrieve it again`, { subject: car.file })
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: cannot read ${where}: ${r.message}`, { subject: car.file })
    }
    const plain = Buffer.from(r.data, 0, r.dataLength)
    if (!e.enc) return { plain, plainStart: leaf.start }
    if (r.key !== undefined) this.#keys.set(e.cid!, Buffer.from(r.key))
    return {
      plain,
      plainStart: ins!.first * CHUNK,
      first: ins!.first,
      count: ins!.count,
      leafStart: leaf.start,
      firstAt: ins!.firstAt,
      sealedLength: ins!.sealedLength,
      head: Buffer.from(r.head!),
      tail: Buffer.from(r.tail!),
      car: loc.car,
    }
  }

  /** An age chunk that crosses leaf edges: its pieces are the tail and head bytes of the leaves around it. */
  async #straddler (e: TableEntry, g: AgeGeometry, c: number, units: LeafUnit[], leaves: Leaf[]): Promise<Unit> {
    const key = `${e.cid}:S${c}`
    const hit = this.#cache.get(key)
    if (hit !== undefined) return hit
    const a = g.start(c)
    const b = g.end(c)
    const sealed = Buffer.allocUnsafe(b - a)
    let got = 0
    const cars = new Set<string>()
    for (let i = 0; i < leaves.length; i++) {
      const l = leaves[i]
      const u = units[i]
      const from = Math.max(a, l.start)
      const to = Math.min(b, l.start + l.length)
      if (from >= to) continue
      cars.add(this.#set.blocks.car(u.car).file)
      const headEnd = l.start + u.firstAt
      const tailStart = headEnd + u.sealedLength
      if (to <= headEnd) u.head.copy(sealed, from - a, from - l.start, to - l.start)
      else if (from >= tailStart) u.tail.copy(sealed, from - a, from - tailStart, to - tailStart)
      else throw new Error(`internal: chunk ${c} piece [${from}, ${to}) is not at a leaf edge`)
      got += to - from
    }
    if (got !== b - a) throw new Error(`internal: chunk ${c} has ${got} of ${b - a} bytes`)
    let pk = this.#keys.get(e.cid!)
    if (pk === undefined) {
      const layout = await this.view.layout(e)
      await this.#leafUnit(e, (await layout.leaves(0, 1))![0], true)
      pk = this.#keys.get(e.cid!)!
    }
    const plain = Buffer.allocUnsafe(g.plainLength(c))
    if (!openChunkInto(pk, c, c === g.chunks - 1, sealed, plain, 0)) {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: age chunk ${c} (in CAR ${[...cars].join(', ')}) failed authentication; the CAR is damaged, retrieve it again`, { subject: [...cars][0] })
    }
    const u = { plain, plainStart: c * CHUNK }
    this.#cache.set(key, u)
    return u
  }

  async close (): Promise<void> {
    await this.#pool.close()
  }
}

/** Copies the part of a unit inside plaintext [pos, end) ∩ [lo, hi) into buf (buf[0] is plaintext byte pos). */
function copyOut (u: Unit, buf: Buffer, pos: number, end: number, lo = 0, hi = Infinity): number {
  const from = Math.max(pos, u.plainStart, lo)
  const to = Math.min(end, u.plainStart + u.plain.length, hi)
  if (from >= to) return 0
  return u.plain.copy(buf, from - pos, from - u.plainStart, to - u.plainStart)
}

