import { LRUCache } from 'lru-cache'
import { PackerError } from '../errors.js'
import type { TableEntry } from '../format/table-entry.js'
import { displayPath } from '../format/stored-path.js'
import type { CarSet } from './car-set.js'
import { FileView, type Leaf, type StoredLayout } from './file-view.js'
import { AgeGeometry, CHUNK } from './chunks.js'
import { CompressedFiles, type PrioritizedDecompressor } from './compressed-files.js'
import { framePlain } from './frame-job.js'
import { WorkerPool } from './pool.js'
import { decompressHere, decompressWhole } from './compressed.js'
import { runJob, type LeafJob, type LeafResult } from './worker.js'
import type { Place } from '../store/car-store.js'
import { sharedMemory } from '../memory.js'

export const DEFAULT_CACHE_SIZE = 128 * 1024 * 1024
export const MIN_CACHE_SIZE = 4 * 1024 * 1024
const MiB = 1024 * 1024
/** Fewest bytes of decompressed frames kept, whatever --cache-size says: four of packer's frames. */
const MIN_FRAME_CACHE_SIZE = 4 * MiB
/** Largest leaf served from a slot (packer writes 1 MiB leaves); larger ones are read on the slow path. */
const MAX_LEAF = MiB
/**
 * One slot holds what one leaf yields: a clear leaf (≤ 1 MiB), or the plaintext of the age chunks inside an encrypted
 * leaf plus the one that straddles into the next leaf (≤ 16 chunks).
 */
export const SLOT = 17 * CHUNK
/** Fewest slots, whatever --cache-size says: concurrent readers each hold a few while they gather. */
const MIN_SLOTS = 8
/**
 * Leaves this small (small files, the tails of others) are hashed and opened on this thread: for them the hops to a
 * worker and back (two postMessages, two wake-ups) cost more than the work, and a tree of small files is read one
 * file after the other (diff -r, cp -r).
 */
const INLINE_LEAF = 64 * 1024

/** Most bytes of one read-ahead step: a store far away asks for up to 8 MiB a request (src/remote/http-cars.ts). */
const READ_AHEAD_STEP = 8 * MiB

/** A streaming reader's cache and read-ahead from local disks (see streamingReaderOptions). */
const STREAMING_CACHE = 32 * MiB
const STREAMING_READ_AHEAD = 2 * MiB
/** Most cache a streaming reader gets for a store's larger read-ahead. */
const STREAMING_MAX_CACHE = 128 * MiB

/**
 * Options of a reader that streams whole files (unpack, verify, the API's file streams), not a mount's. From local
 * disks 2 MiB read ahead in 32 MiB of cache keeps up with writing the files. A store far away needs more in flight to
 * cover its latency (CarStore.readAhead: 64 MiB for HTTP) and gets what its cache allows: a reader reads ahead at most
 * a quarter of its cache, which is bounded here by the mount's default (128 MiB: 32 MiB read ahead).
 */
export function streamingReaderOptions (set: CarSet): ReaderOptions {
  const wanted = set.cars.readAhead ?? 0
  if (wanted <= STREAMING_READ_AHEAD) return { cacheSize: STREAMING_CACHE, readAhead: STREAMING_READ_AHEAD }
  return { cacheSize: Math.min(STREAMING_MAX_CACHE, Math.max(STREAMING_CACHE, 4 * wanted)), readAhead: wanted }
}

export interface ReaderOptions {
  /** Bytes of verified, decrypted data kept (LRU), an eighth of it (at least 4 MiB) as decompressed frames of compressed files. */
  cacheSize?: number
  /** Worker threads that hash, decrypt and decompress; default: one per CPU, at most 4. */
  workers?: number
  /** Most bytes read ahead of a sequential reader. */
  readAhead?: number
}

/**
 * What one leaf block yields once verified, in its slot of the slab: for a clear file its bytes (= plaintext); for an
 * encrypted one the plaintext of chunks [first, first + count), including the chunk that starts in this leaf and ends
 * in the next (served only together with the next leaf, which a read of that chunk also waits for: so every byte
 * served comes from blocks that passed their hash check).
 */
interface Unit {
  key: string
  slot: number
  plain: Buffer
  /** Plaintext offset of plain[0]. */
  plainStart: number
  first: number
  count: number
  /** Encrypted: the straddling chunk was not opened (the next leaf's CAR was missing); reload when it is needed. */
  short: boolean
  /** Set when its slot went back to the pool: a read holding it notices and starts over. */
  gone: boolean
  /** A sequential reader has gone past it: its slot is taken first (the kernel's page cache keeps what it read). */
  behind: boolean
}

interface Inflight {
  job: Omit<LeafJob, 'id' | 'slot'> | undefined
  full: Promise<Unit>
  /** Resolves once the wanted chunks (`want`) are open, possibly before the rest of the leaf. */
  first: Promise<Unit>
  want?: [number, number]
}

/** Releases of bytes lent for one leaf's job, called when it is over. */
interface Lent { releases: Array<() => void>, over: boolean }

interface Handle {
  next: number
  window: number
  aheadTo: number
  /** Units this (sequential) reader has read from, oldest first, until it is well past them. */
  seen: Unit[]
}

/** How far a sequential reader must be past a unit before its slot is reused (the kernel sends reads in parallel). */
const BEHIND = 2 * MiB

/**
 * Serves plaintext ranges of a set's files (the mount's reads; unpack's, with a smaller cache): maps a range to the
 * leaf blocks (and age chunks) that hold it, has worker threads pread, hash-check and decrypt those leaves into slots
 * of one shared slab (the cache: its size bounds the memory used), keeps them in LRU order, and reads ahead of
 * sequential readers. A read whose leaves are all cached is answered at once, without a promise. Files stored
 * compressed are read through CompressedFiles, which reads their streams' frames here and has them decompressed on
 * the same worker threads. Errors are PackerErrors naming
 * the CAR (missing, truncated, damaged) or, for a compressed file, the file.
 */
export class SetReader {
  readonly #set: CarSet
  readonly view: FileView
  readonly #pool: WorkerPool
  readonly #slab: Buffer
  readonly #views: Buffer[] = []
  readonly #free: number[] = []
  /** Cached units in LRU order (a Map keeps insertion order: the first is the least recently used). */
  readonly #cache = new Map<string, Unit>()
  readonly #inflight = new Map<string, Inflight>()
  /** Payload keys of files read lately (an HKDF each to derive; a file's later leaves need it). */
  readonly #keys = new LRUCache<string, Buffer>({ max: 4096 })
  readonly #layouts = new Map<string, StoredLayout>()
  readonly #handles = new Map<number, Handle>()
  readonly #maxAhead: number
  readonly #compressed: CompressedFiles
  /** Units sequential readers are done with: reused before free slots and before the least recently used. */
  #behind: Unit[] = []
  #nextHandle = 1
  #framesOnWorkers = 0
  #framesHere = 0

  constructor (set: CarSet, opts: ReaderOptions = {}) {
    this.#set = set
    this.view = new FileView(set)
    const cacheSize = Math.max(opts.cacheSize ?? DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE)
    const frameCacheSize = Math.max(Math.floor(cacheSize / 8), MIN_FRAME_CACHE_SIZE)
    this.#compressed = new CompressedFiles((stream, h, buf, len, pos) => this.read(stream, h, buf, len, pos), frameCacheSize, this.#decompress)
    const slots = Math.max(MIN_SLOTS, Math.floor((cacheSize - frameCacheSize) / SLOT))
    // Pages are touched only when a slot is first written: memory grows with use up to the cache size. On huge pages:
    // a first touch of each 4 KiB page was a third of the page faults of a read through the mount.
    this.#slab = sharedMemory(slots * SLOT)
    for (let i = slots - 1; i >= 0; i--) this.#free.push(i)
    this.#pool = new WorkerPool(this.#slab, SLOT, () => this.#acquire(), opts.workers)
    this.#maxAhead = Math.max(MiB, Math.min(opts.readAhead ?? 16 * MiB, Math.floor(cacheSize / 4)))
  }

  get workers (): number { return this.#pool.size }

  open (): number {
    const h = this.#nextHandle++
    this.#handles.set(h, { next: 0, window: 0, aheadTo: 0, seen: [] })
    return h
  }

  /**
   * Closes a handle. The leaves a sequential reader still held go first when slots are needed, as those it had gone
   * past: the kernel's page cache keeps what it read (kernel_cache), so a tree of files read one after the other
   * (diff -r, cp -r, unpack) cycles through a few slots instead of filling the cache.
   */
  release (h: number): void {
    const handle = this.#handles.get(h)
    this.#handles.delete(h)
    this.#compressed.release(h)
    for (const u of handle?.seen ?? []) this.#offer(u)
  }

  /**
   * Copies plaintext [pos, pos + len) of a file into buf; gives the bytes copied (0 at or past the end): a number at
   * once when everything needed is cached, else a promise.
   */
  read (e: TableEntry, handle: number, buf: Buffer, len: number, pos: number): number | Promise<number> {
    const end = Math.min(pos + len, e.size!)
    if (pos >= end) return 0
    if (e.compression !== undefined) return this.#compressed.read(e, handle, buf, pos, end)
    const n = this.#readNow(e, handle, buf, pos, end)
    if (n >= 0) return n
    return this.#readLater(e, handle, buf, pos, end)
  }

  /**
   * A file's bytes in order, 1 MiB at a time (a compressed file's a frame at a time): unpack's and verify's reads,
   * read ahead and decompressed on the worker threads.
   */
  async * stream (e: TableEntry): AsyncGenerator<Buffer> {
    const h = this.open()
    try {
      for (let at = 0; at < e.size!;) {
        const chunk = Buffer.allocUnsafe(Math.min(MiB, e.size! - at))
        const n = await this.read(e, h, chunk, chunk.length, at)
        if (n === 0) return
        yield n === chunk.length ? chunk : chunk.subarray(0, n)
        at += n
      }
    } finally {
      this.release(h)
    }
  }

  /**
   * FileView.readSmall (whole small files, read together), with the frames of compressed ones decompressed on the
   * worker threads.
   */
  async readSmall (entries: TableEntry[]): ReturnType<FileView['readSmall']> {
    return await this.view.readSmall(entries, async (e, stream) => await decompressWhole(e, stream, async (name, at, frame) => await this.#decompress(name, at, frame, { urgent: true })))
  }

  /**
   * Decompresses a frame on the worker threads; a small one (a small file's, a file's short last frame) here, where
   * the hops to a worker and back cost more than the work (as for small leaves: INLINE_LEAF).
   */
  readonly #decompress: PrioritizedDecompressor = async (name, at, frame, prio) => {
    if (at.decompressedSize <= INLINE_LEAF) {
      this.#framesHere++
      return await decompressHere(name, at, frame)
    }
    this.#framesOnWorkers++
    const job = { name, at, frame }
    const done = this.#pool.runFrame(job, prio.urgent)
    prio.promote = () => { this.#pool.promote(job) }
    return framePlain(await done)
  }

  /**
   * Frames of compressed files decompressed so far: on the workers, here (small ones); asked for ahead of sequential
   * readers, and of those the ones ready; seek tables kept.
   */
  frameStats (): { onWorkers: number, here: number, ahead: number, aheadReady: number, tables: number } {
    return { onWorkers: this.#framesOnWorkers, here: this.#framesHere, ahead: this.#compressed.framesAhead, aheadReady: this.#compressed.framesAheadReady, tables: this.#compressed.tablesKept }
  }

  /** Stored byte range holding plaintext [pos, end), and for encrypted files the chunks [c0, c1]. */
  #span (e: TableEntry, pos: number, end: number): { from: number, to: number, c0: number, c1: number } {
    if (!e.enc) return { from: pos, to: end, c0: 0, c1: -1 }
    const g = new AgeGeometry(e.enc.headerLength, e.size!)
    const c0 = Math.floor(pos / CHUNK)
    const c1 = Math.floor((end - 1) / CHUNK)
    return { from: g.start(c0), to: g.end(c1), c0, c1 }
  }

  /** From memory only: -1 when something is not cached. */
  #readNow (e: TableEntry, handle: number, buf: Buffer, pos: number, end: number): number {
    const layout = this.#layouts.get(e.cid!)
    if (layout === undefined) return -1
    const s = this.#span(e, pos, end)
    const leaves = layout.leavesNow(s.from, s.to)
    if (leaves === undefined || leaves === null) return -1
    const units: Unit[] = []
    for (const l of leaves) {
      const key = `${e.cid!}:${l.start}`
      const u = this.#cache.get(key)
      if (u === undefined) return -1
      units.push(u)
    }
    const n = copyOut(units, buf, pos, end)
    if (n < 0) return -1
    this.#served(e, handle, units, pos, end)
    return n
  }

  async #readLater (e: TableEntry, handle: number, buf: Buffer, pos: number, end: number): Promise<number> {
    const s = this.#span(e, pos, end)
    for (let attempt = 0; attempt < 16; attempt++) {
      const layout = await this.#layout(e)
      const leaves = await layout.leaves(s.from, s.to)
      if (leaves === null || leaves.some((l) => l.length > MAX_LEAF)) return await this.#slowRead(e, buf, pos, end)
      if (e.enc && !this.#direct(e, await layout.leaves(0, 1))) return await this.#slowRead(e, buf, pos, end)
      const want: [number, number] | undefined = e.enc ? [s.c0, s.c1] : undefined
      const units = await Promise.all(leaves.map(async (l) => await this.#leafUnit(e, l, true, want)))
      const n = copyOut(units, buf, pos, end)
      if (n >= 0) {
        this.#served(e, handle, units, pos, end)
        return n
      }
      if (n === -2) {
        // A chunk is in no unit: one was cached without its straddling chunk (the next CAR was missing then).
        const short = units.filter((u) => u.short)
        if (short.length === 0) return await this.#slowRead(e, buf, pos, end)
        for (const u of short) this.#drop(u)
      }
      // else a unit was evicted (its slot reused) before the copy: start over.
    }
    throw new Error('the cache is too small for the reads in flight; mount with a larger --cache-size')
  }

  async #layout (e: TableEntry): Promise<StoredLayout> {
    let l = this.#layouts.get(e.cid!)
    if (l === undefined) {
      l = await this.view.layout(e)
      if (this.#layouts.size >= 4096) this.#layouts.clear()
      this.#layouts.set(e.cid!, l)
    }
    return l
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

  /**
   * After a read: the units it used become the most recently used; a sequential reader's units it is well past are
   * offered for reuse; read-ahead.
   */
  #served (e: TableEntry, handle: number, units: Unit[], pos: number, end: number): void {
    for (const u of units) {
      if (this.#cache.get(u.key) !== u) continue
      u.behind = false
      this.#cache.delete(u.key)
      this.#cache.set(u.key, u)
    }
    const h = this.#handles.get(handle)
    if (h === undefined) return
    const sequential = pos === 0 || Math.abs(pos - h.next) <= MiB
    h.next = end
    if (!sequential) { h.window = 0; h.aheadTo = end; h.seen.length = 0; return }
    for (const u of units) if (!h.seen.includes(u)) h.seen.push(u)
    while (h.seen.length > 0) {
      const u = h.seen[0]
      if (u.plainStart + u.plain.length + BEHIND > pos) break
      h.seen.shift()
      this.#offer(u)
    }
    if (h.seen.length > 64) h.seen.splice(0, h.seen.length - 64)
    this.#readAhead(e, h, end)
  }

  /** Puts a cached unit a sequential reader is done with in line for reuse. */
  #offer (u: Unit): void {
    if (u.gone || u.behind || this.#cache.get(u.key) !== u) return
    u.behind = true
    this.#behind.push(u)
    if (this.#behind.length > 2 * this.#views.length + 64) this.#behind = this.#behind.filter((x) => x.behind && !x.gone)
  }

  #readAhead (e: TableEntry, h: Handle, end: number): void {
    h.window = Math.min(this.#maxAhead, Math.max(MiB, h.window * 2))
    const to = Math.min(e.size!, end + h.window)
    // In steps of half the window, at most READ_AHEAD_STEP, not a leaf at a time: leaves asked for in one turn are
    // fetched together, in one request to a store far away (a 1 MiB request per leaf cost that many round trips and
    // fresh buffers). Steps no longer than a request keep the window full as each request ends: with 50 ms before each
    // answer, half of a 32 MiB window at a time read 256 MiB in 1.96-2.03 s, 8 MiB at a time in 1.81-1.93 s.
    const step = Math.min(h.window / 2, READ_AHEAD_STEP)
    if (to <= h.aheadTo || (h.aheadTo - end > h.window - step && to < e.size!) || this.#pool.queued > 64) return
    const from = Math.max(end, h.aheadTo)
    h.aheadTo = to
    const s = this.#span(e, from, to)
    const now = this.#layouts.get(e.cid!)?.leavesNow(s.from, s.to)
    if (now !== undefined) {
      for (const l of now ?? []) this.#ahead(e, l)
      return
    }
    void (async () => {
      const layout = await this.#layout(e)
      for (const l of await layout.leaves(s.from, s.to) ?? []) this.#ahead(e, l)
    })().catch(() => {})
  }

  #ahead (e: TableEntry, l: Leaf): void {
    const key = `${e.cid!}:${l.start}`
    if (l.length > MAX_LEAF || this.#cache.has(key) || this.#inflight.has(key)) return
    this.#leafUnit(e, l, false).catch(() => {})
  }

  async #leafUnit (e: TableEntry, leaf: Leaf, urgent: boolean, want?: [number, number]): Promise<Unit> {
    const key = `${e.cid!}:${leaf.start}`
    const hit = this.#cache.get(key)
    if (hit !== undefined) { hit.behind = false; return hit }
    let f = this.#inflight.get(key)
    if (f === undefined) {
      f = this.#loadLeaf(e, leaf, urgent, key, want)
      this.#inflight.set(key, f)
      const done = f
      done.full.then(() => {}, () => {}).finally(() => { if (this.#inflight.get(key) === done) this.#inflight.delete(key) })
    } else if (urgent && f.job !== undefined) {
      this.#pool.promote(f.job)
    }
    // The early answer serves this read only when it opens every chunk the read wants.
    if (want !== undefined && f.want !== undefined && f.want[0] <= want[0] && want[1] <= f.want[1]) return await f.first
    return await f.full
  }

  #loadLeaf (e: TableEntry, leaf: Leaf, urgent: boolean, key: string, want?: [number, number]): Inflight {
    let early: ((u: Unit) => void) | undefined
    let earlyFail: ((err: Error) => void) | undefined
    const first = new Promise<Unit>((resolve, reject) => { early = resolve; earlyFail = reject })
    const f: Inflight = { job: undefined, full: undefined as unknown as Promise<Unit>, first, want }
    f.full = (async () => {
      try {
        const u = await this.#runLeaf(e, leaf, urgent, key, want, f, early!)
        early!(u)
        return u
      } catch (err) {
        earlyFail!(err as Error)
        throw err
      }
    })()
    first.catch(() => {})
    return f
  }

  /** Reads, checks and opens one leaf into a slot; bytes a store lent for it are released once its job is over. */
  async #runLeaf (e: TableEntry, leaf: Leaf, urgent: boolean, key: string, want: [number, number] | undefined, f: Inflight, early: (u: Unit) => void): Promise<Unit> {
    const lent: Lent = { releases: [], over: false }
    try {
      return await this.#openLeaf(e, leaf, urgent, key, want, f, early, lent)
    } finally {
      lent.over = true
      for (const release of lent.releases.splice(0)) release()
    }
  }

  /** Where a block is read from, as a job posts it; lent bytes' release goes to `lent` (see #runLeaf). */
  async #place (loc: Parameters<CarSet['blocks']['place']>[0], lent: Lent): Promise<Place> {
    const at = await this.#set.blocks.place(loc)
    if (!('bytes' in at) || at.release === undefined) return at
    if (lent.over) at.release() // the leaf's job ended without these bytes
    else lent.releases.push(at.release)
    return { bytes: at.bytes }
  }

  async #openLeaf (e: TableEntry, leaf: Leaf, urgent: boolean, key: string, want: [number, number] | undefined, f: Inflight, early: (u: Unit) => void, lent: Lent): Promise<Unit> {
    const loc = await this.#set.blocks.locate(leaf.cid)
    const car = this.#set.blocks.car(loc.car)
    if (loc.length !== leaf.length) {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: block ${leaf.cid} in CAR ${car.file} is ${loc.length} bytes, the file's DAG says ${leaf.length}; the set is damaged`, { subject: car.file })
    }
    // This leaf's bytes and, below, the next leaf's (for the chunk that straddles them) are asked for before either is
    // waited for: a store far away then fetches them together, or at least with one round trip between them, not two
    // (asked for after this leaf's bytes were in, the next leaf's had often been fetched and let go: fetched again).
    const at = this.#place(loc, lent)
    at.catch(() => {})
    let g: AgeGeometry | undefined
    let ins: ReturnType<AgeGeometry['inside']> | undefined
    let short = false
    let dec: LeafJob['dec']
    if (e.enc) {
      g = new AgeGeometry(e.enc.headerLength, e.size!)
      const le = leaf.start + leaf.length
      ins = g.inside(leaf.start, le)
      const nonceAt = e.enc.headerLength - leaf.start
      let pkey: Buffer | null = this.#keys.get(e.cid!) ?? null
      if (pkey === null && !(nonceAt >= 0 && nonceAt + 16 <= leaf.length)) {
        const layout = await this.#layout(e)
        const firstLeaf = (await layout.leaves(0, 1))![0]
        await this.#leafUnit(e, firstLeaf, urgent)
        pkey = this.#keys.get(e.cid!) ?? null
        if (pkey === null) throw new PackerError('CORRUPT', `${displayPath(e.path)}: no payload nonce in its first block; the set is damaged`)
      }
      // The chunk that starts in this leaf and ends in the next: its remaining bytes come from the next leaf's place.
      let next: { at: Place, length: number } | undefined
      const c = ins.first + ins.count
      if (c < g.chunks && g.start(c) < le && g.end(c) > le) {
        const layout = await this.#layout(e)
        const nl = layout.leavesNow(le, le + 1) ?? await layout.leaves(le, le + 1)
        if (nl !== null && nl.length === 1 && nl[0].start === le && g.end(c) <= le + nl[0].length) {
          try {
            next = { at: await this.#place(await this.#set.blocks.locate(nl[0].cid), lent), length: g.end(c) - le }
          } catch { short = true }
        }
      }
      dec = {
        key: pkey,
        // A copy: the key is a view into a shared pool, and posting a view copies its whole ArrayBuffer (8 KiB).
        fileKey: pkey === null ? new Uint8Array(e.enc.key) : undefined,
        nonceAt: pkey === null ? nonceAt : undefined,
        first: ins.first,
        count: ins.count,
        firstAt: ins.firstAt,
        next,
        want,
        lastIndex: g.chunks - 1,
        lastPlain: g.plainLength(g.chunks - 1),
      }
    }
    const job: Omit<LeafJob, 'id' | 'slot'> = { at: await at, length: loc.length, digest: leaf.cid.multihash.digest, dec }
    f.job = job
    let u: Unit | undefined
    const onPartial = (r: LeafResult & { slot: number }): void => {
      if (!r.ok || r.partial === undefined) return
      if (r.key !== undefined) this.#keys.set(e.cid!, Buffer.from(r.key))
      const [p0, p1] = r.partial
      const at = (p0 - ins!.first) * CHUNK
      const n = Math.max(0, p1 - p0 + 1)
      const len = n === 0 ? 0 : (n - 1) * CHUNK + g!.plainLength(p1)
      u = { key, slot: r.slot, plain: this.#view(r.slot).subarray(at, at + len), plainStart: p0 * CHUNK, first: p0, count: n, short: false, gone: false, behind: false }
      early(u)
    }
    let r: LeafResult & { slot: number }
    try {
      r = await this.#run(job, urgent, onPartial)
    } finally { f.job = undefined }
    if (!r.ok) {
      if (r.slot >= 0) this.#release(r.slot)
      if (u !== undefined) u.gone = true
      // Worded as src/read/block-source.ts words them, with the file first.
      const where = `block ${leaf.cid} at byte ${loc.offset}`
      if (r.kind === 'auth') throw new PackerError('CORRUPT', `${displayPath(e.path)}: CAR ${car.file} is damaged: age chunk ${r.chunk} in ${where} failed authentication; retrieve the CAR again`, { subject: car.file })
      if (r.kind === 'hash') throw new PackerError('CORRUPT', `${displayPath(e.path)}: CAR ${car.file} is damaged: ${where} does not match its hash; retrieve the CAR again`, { subject: car.file })
      if (r.kind === 'truncated') throw new PackerError('CORRUPT', `${displayPath(e.path)}: CAR ${car.file} is truncated: ${where} is past its end; retrieve the CAR again`, { subject: car.file })
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: cannot read ${where} of CAR ${car.file}: ${r.message}`, { subject: car.file })
    }
    if (r.key !== undefined) this.#keys.set(e.cid!, Buffer.from(r.key))
    const view = this.#view(r.slot)
    u ??= { key, slot: r.slot, plain: view, plainStart: 0, first: 0, count: 0, short: false, gone: false, behind: false }
    u.plain = view.subarray(0, r.dataLength)
    if (e.enc) {
      u.first = ins!.first
      u.count = r.count!
      u.plainStart = ins!.first * CHUNK
      u.short = short || (job.dec!.next !== undefined && r.count === ins!.count)
    } else {
      u.plainStart = leaf.start
    }
    const old = this.#cache.get(key)
    if (old !== undefined) this.#drop(old)
    this.#cache.set(key, u)
    return u
  }

  /** Runs a leaf job here when it is small and a slot is free at once, else on the workers. */
  async #run (job: Omit<LeafJob, 'id' | 'slot'>, urgent: boolean, partial: (r: LeafResult & { slot: number }) => void): Promise<LeafResult & { slot: number }> {
    const slot = job.length <= INLINE_LEAF ? this.#acquire() : undefined
    if (slot === undefined) return await this.#pool.run(job, urgent, partial)
    return await new Promise((resolve) => {
      const post = (r: LeafResult): void => {
        if (r.ok && r.partial !== undefined) partial({ ...r, slot })
        else resolve({ ...r, slot })
      }
      runJob({ ...job, id: 0, slot }, this.#view(slot), post).catch((err: Error) => { post({ id: 0, ok: false, kind: 'io', message: err.message }) })
    })
  }

  #view (slot: number): Buffer {
    return (this.#views[slot] ??= this.#slab.subarray(slot * SLOT, (slot + 1) * SLOT))
  }

  /**
   * A slot for a job: one a sequential reader is done with, else a free one, else the least recently used cached
   * unit's. A sequential read of a big file so cycles through a few dozen slots instead of filling the cache with
   * data the kernel's page cache holds anyway (and keeps what random readers use).
   */
  #acquire (): number | undefined {
    while (this.#behind.length > 0) {
      const u = this.#behind.shift()!
      if (u.behind && !u.gone && this.#cache.get(u.key) === u) {
        this.#cache.delete(u.key)
        u.gone = true
        return u.slot
      }
    }
    const free = this.#free.pop()
    if (free !== undefined) return free
    for (const u of this.#cache.values()) {
      this.#cache.delete(u.key)
      u.gone = true
      return u.slot
    }
    return undefined
  }

  #release (slot: number): void {
    this.#free.push(slot)
    this.#pool.pump()
  }

  #drop (u: Unit): void {
    if (this.#cache.get(u.key) !== u) return
    this.#cache.delete(u.key)
    u.gone = true
    this.#release(u.slot)
  }

  async close (): Promise<void> {
    await this.#pool.close()
  }
}

/**
 * Copies plaintext [pos, end) from units (in file order, each a contiguous plaintext range) into buf (buf[0] is
 * plaintext byte pos). -1 when a unit's slot was reused; -2 when the units do not cover the range.
 */
function copyOut (units: Unit[], buf: Buffer, pos: number, end: number): number {
  for (const u of units) if (u.gone) return -1
  let at = pos
  for (const u of units) {
    const uEnd = u.plainStart + u.plain.length
    if (u.plainStart > at || uEnd <= at) continue
    const to = Math.min(end, uEnd)
    u.plain.copy(buf, at - pos, at - u.plainStart, to - u.plainStart)
    at = to
    if (at >= end) break
  }
  return at < end ? -2 : at - pos
}
