/**
 * The objects under `s3://BUCKET/PREFIX` as a tree pack reads (src/source/tree-source.ts): keys map to paths by '/',
 * "directory marker" objects (keys ending in '/') to directories, empty ones kept. Each directory is listed on its
 * own with Delimiter '/' and put in the file table's order as its pages come (listing-order.ts), so a set packed from
 * a bucket is the set packed from the same tree on disk. Objects are read by ranged GETs pinned to the ETag listed:
 * an object replaced meanwhile fails the read (SourceChangedError, then `--on-change`), it never mixes versions.
 */
import { HeadObjectCommand, ListObjectsV2Command, type _Object, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3'
import { PackerError } from '../errors.js'
import { LIMITS } from '../limits.js'
import { SourceChangedError, SourceVanishedError } from '../source/file-reader.js'
import type { TreeSource } from '../source/tree-source.js'
import { walkTree, type SourceEntry, type SourceStat, type WalkOptions } from '../source/walk.js'
import { s3Client, type S3Options, type S3Store } from './client.js'
import { GroupedReads } from './grouped-reads.js'
import { ReadAhead } from './read-ahead.js'
import { ListingOrder } from './listing-order.js'
import { readRange } from './read-range.js'
import { s3Error } from './s3-error.js'
import { asDirectory, parseS3Url } from './s3-url.js'

/** Where an object's mtime comes from: its Last-Modified (in every listing), or rclone's `x-amz-meta-mtime`. */
export type MtimeRule = 'metadata' | 'last-modified'

export interface S3TreeOptions extends S3Options { mtime: MtimeRule }

/** Leaf reads of one object in flight: two GETs of GET_BYTES, one arriving while the other is hashed and written. */
const READS_IN_FLIGHT = 16
/** Bytes of an object asked for in one ranged GET: several leaves (GroupedReads). */
const GET_BYTES = 8 << 20
/**
 * The objects to be opened next whose first GET is asked for ahead of their turn (ReadAhead), and the bytes those GETs
 * may have in flight or held: with the open object's two or three GETs, about rclone's 4 objects in flight.
 */
const AHEAD_OBJECTS = 8
const AHEAD_BYTES = 4 * GET_BYTES
/** HEAD or LIST requests in flight while a directory's entries are completed (mtimes, markers). */
const LOOKUPS_IN_FLIGHT = 16
const FILE_MODE = 0o644n
const DIR_MODE = 0o755n
const OWNER = { uid: BigInt(process.getuid?.() ?? 0), gid: BigInt(process.getgid?.() ?? 0) }

/**
 * An mtime as rclone writes `x-amz-meta-mtime`: seconds since the epoch with up to nine decimals, in fixed point
 * ("1354040105.123456789"; trailing zeros dropped), in nanoseconds; null when it is not one.
 */
export function parseMetaMtime (text: string): bigint | null {
  const m = /^(-?)(\d{1,15})(?:\.(\d{1,9})\d*)?$/.exec(text.trim())
  if (m === null) return null
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'))
  return m[1] === '-' ? -ns : ns
}

function msToNs (d: Date | undefined): bigint {
  return d === undefined ? 0n : BigInt(d.getTime()) * 1_000_000n
}

/** Runs `f` on every item with at most `limit` at once; results in order. */
async function mapLimit<T, R> (items: T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const lane = async (): Promise<void> => { while (next < items.length) { const i = next++; out[i] = await f(items[i]!) } }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return out
}

interface Listed { name: Buffer, dir: boolean, object?: _Object }

export async function s3Tree (url: string, opts: S3TreeOptions): Promise<TreeSource> {
  const { bucket, prefix } = parseS3Url(url)
  const store = await s3Client(opts)
  return new S3Tree(store, bucket, prefix, opts.mtime)
}

class S3Tree implements TreeSource {
  readonly name: string
  readonly spec: TreeSource['spec']
  readonly readsInFlight = READS_IN_FLIGHT
  readonly #store: S3Store
  readonly #bucket: string
  /** As given: a directory, or maybe one object's key. */
  readonly #prefix: string
  /** The keys of the tree's entries start with this ('' or ending in '/'). */
  readonly #base: string
  readonly #mtime: MtimeRule
  /** `s3://BUCKET/`: what an entry's `abs` starts with, before its key. */
  readonly #urlStart: Buffer
  readonly #ahead = new ReadAhead((e) => this.#groupedReads(e), { maxBytes: AHEAD_BYTES, maxObjects: AHEAD_OBJECTS, firstBytes: GET_BYTES })

  constructor (store: S3Store, bucket: string, prefix: string, mtime: MtimeRule) {
    this.#store = store
    this.#bucket = bucket
    this.#prefix = prefix
    this.#base = asDirectory(prefix)
    this.#mtime = mtime
    this.#urlStart = Buffer.from(`s3://${bucket}/`)
    this.name = `s3://${bucket}/${prefix}`
    this.spec = { source: this.name, s3: { endpoint: store.endpointUrl, pathStyle: store.endpointUrl === undefined ? undefined : store.pathStyle, mtime } }
  }

  async walk (opts: WalkOptions): ReturnType<TreeSource['walk']> {
    // One request says what the URL names, and whether the bucket and store answer at all.
    const first = await this.#list({ Prefix: this.#base, MaxKeys: 1 })
    if ((first.KeyCount ?? 0) > 0) return { single: false, runs: walkTree((dir) => this.#listDirectory(dir, opts.warn), opts) }
    if (this.#base !== this.#prefix) {
      const object = await this.#find(this.#prefix)
      if (object !== null) {
        const name = Buffer.from(this.#prefix.slice(this.#prefix.lastIndexOf('/') + 1))
        const entry = await this.#fileEntry(name, object)
        return { single: true, runs: (async function * () { yield { dir: Buffer.alloc(0), entries: [entry] } })() }
      }
    }
    const none = this.#base === '' ? 'the bucket is empty' : `no key starts with ${this.#base}${this.#base === this.#prefix ? '' : ` and no object is named ${this.#prefix}`}`
    throw new PackerError('SOURCE', `nothing to pack at ${this.name}: ${none} (at ${this.#store.endpoint}); check the bucket, the prefix and the endpoint`, { subject: this.name })
  }

  locate (p: Buffer, single: boolean): Buffer {
    return Buffer.concat([this.#urlStart, Buffer.from(single ? this.#prefix : this.#base), ...(single ? [] : [p])])
  }

  async open (e: SourceEntry): ReturnType<TreeSource['open']> {
    const reads = this.#ahead.take(e) ?? this.#groupedReads(e)
    return {
      size: Number(e.stat.size),
      input: async (start, end) => ({ bytes: end <= start ? new Uint8Array(0) : await reads.read(start, end), at: start }),
      check: async () => {}, // every read is pinned to the ETag listed
      close: async () => {},
    }
  }

  async wholeFile (e: SourceEntry): Promise<{ bytes: Uint8Array }> {
    const size = Number(e.stat.size)
    return { bytes: size === 0 ? new Uint8Array(0) : await this.#read(e, 0, size) }
  }

  willRead (): void {}

  willOpen (entries: SourceEntry[]): void { this.#ahead.announce(entries) }

  async refresh (e: SourceEntry): Promise<void> {
    const object = await this.#find(this.#keyOf(e))
    if (object === null) throw new SourceVanishedError(e)
    const now = await this.#fileEntry(Buffer.alloc(0), object)
    e.stat = now.stat
    e.version = now.version
  }

  async close (): Promise<void> { this.#store.client.destroy() }

  #keyOf (e: SourceEntry): string {
    return e.abs.subarray(this.#urlStart.length).toString('utf8')
  }

  /** An object's reads by a pack: leaves grouped into GETs of the version its entry names. */
  #groupedReads (e: SourceEntry): GroupedReads {
    return new GroupedReads(async (start, end, out) => await this.#read(e, start, end, out), Number(e.stat.size), GET_BYTES)
  }

  /** Bytes [start, end) of the version of an object its entry names (in `out`, when given). */
  async #read (e: SourceEntry, start: number, end: number, out?: Buffer): Promise<Buffer> {
    try {
      return await readRange(this.#store, { bucket: this.#bucket, key: this.#keyOf(e), etag: e.version, start, end: end - 1 }, out)
    } catch (err) {
      const cause = (err as { cause?: { name?: string, $metadata?: { httpStatusCode?: number } } }).cause
      if (cause?.name === 'PreconditionFailed' || cause?.$metadata?.httpStatusCode === 412) throw new SourceChangedError(e, 'replaced: its ETag changed')
      if (cause?.name === 'NoSuchKey') throw new SourceVanishedError(e)
      throw err
    }
  }

  async #list (input: { Prefix: string, Delimiter?: string, MaxKeys?: number, ContinuationToken?: string }): Promise<ListObjectsV2CommandOutput> {
    try {
      return await this.#store.client.send(new ListObjectsV2Command({ Bucket: this.#bucket, ...input }))
    } catch (err) {
      throw s3Error(this.#store, err, { bucket: this.#bucket, key: input.Prefix === '' ? undefined : input.Prefix })
    }
  }

  /** The object of exactly this key as a listing shows it, or null. */
  async #find (key: string): Promise<_Object | null> {
    const page = await this.#list({ Prefix: key, MaxKeys: 1 })
    const object = page.Contents?.[0]
    return object?.Key === key ? object : null
  }

  /**
   * One directory's entries in name order, a page at a time (the next page is asked for while this one is handed
   * on); names that cannot be paths are skipped, one warning each.
   */
  async * #listDirectory (relDir: Buffer, warn: (m: string) => void): AsyncGenerator<SourceEntry[]> {
    const dirKey = relDir.length === 0 ? this.#base : `${this.#base}${relDir.toString('utf8')}/`
    const url = (name: string): string => `s3://${this.#bucket}/${dirKey}${name}`
    const order = new ListingOrder<Listed>(LIMITS.listingHeld, (x, why) => warn(`skipping ${url(x.name.toString('utf8'))}${x.dir ? '/' : ''}: ${why}`))
    const page = (token?: string): Promise<ListObjectsV2CommandOutput> => {
      const p = this.#list({ Prefix: dirKey, Delimiter: '/', ContinuationToken: token })
      p.catch(() => {}) // seen when awaited
      return p
    }
    let next: Promise<ListObjectsV2CommandOutput> | null = page()
    while (next !== null) {
      const res: ListObjectsV2CommandOutput = await next
      next = res.IsTruncated === true && res.NextContinuationToken !== undefined ? page(res.NextContinuationToken) : null
      for (const x of this.#pageItems(res, dirKey, url, warn)) order.add(x)
      const ready = order.take()
      for (let c = order.wanted(); c !== null; c = order.wanted()) {
        order.answer(c, (await this.#list({ Prefix: `${dirKey}${c.toString('utf8')}/`, MaxKeys: 1 })).KeyCount ? { name: c, dir: true } : null)
        ready.push(...order.take())
      }
      if (ready.length > 0) yield await this.#entries(relDir, dirKey, ready)
    }
    const rest = order.finish()
    if (rest.length > 0) yield await this.#entries(relDir, dirKey, rest)
  }

  /** A page's objects and common prefixes, merged in key order, without those whose names cannot be paths. */
  #pageItems (res: ListObjectsV2CommandOutput, dirKey: string, url: (n: string) => string, warn: (m: string) => void): Listed[] {
    const items: Array<Listed & { key: Buffer }> = []
    for (const o of res.Contents ?? []) {
      if (o.Key === dirKey) continue // the directory's own marker
      items.push({ key: Buffer.from(o.Key!), name: Buffer.from(o.Key!.slice(dirKey.length)), dir: false, object: o })
    }
    for (const p of res.CommonPrefixes ?? []) items.push({ key: Buffer.from(p.Prefix!), name: Buffer.from(p.Prefix!.slice(dirKey.length, -1)), dir: true })
    items.sort((a, b) => Buffer.compare(a.key, b.key))
    return items.filter((x) => {
      const name = x.name.toString('utf8')
      if (name === '') warn(`skipping ${url('')}/…: keys with an empty path component cannot be paths`)
      else if (name === '.' || name === '..') warn(`skipping ${url(name)}${x.dir ? '/…' : ''}: '${name}' cannot be a path component`)
      else return true
      return false
    })
  }

  /** The entries of items of one directory: their mtimes looked up where the rule needs it, several at a time. */
  async #entries (relDir: Buffer, dirKey: string, items: Listed[]): Promise<SourceEntry[]> {
    return await mapLimit(items, LOOKUPS_IN_FLIGHT, async (x) => {
      const path = relDir.length === 0 ? x.name : Buffer.concat([relDir, Buffer.from('/'), x.name])
      if (!x.dir) return await this.#fileEntry(path, x.object!)
      const key = `${dirKey}${x.name.toString('utf8')}/`
      const marker = await this.#find(key)
      const stat = this.#stat(0n, marker === null ? 0n : await this.#mtimeOf(key, marker), DIR_MODE)
      return { path, abs: Buffer.concat([this.#urlStart, Buffer.from(key)]), type: 'dir', stat }
    })
  }

  /** A file entry for a listed object. */
  async #fileEntry (path: Buffer, o: _Object): Promise<SourceEntry> {
    const stat = this.#stat(BigInt(o.Size ?? 0), await this.#mtimeOf(o.Key!, o), FILE_MODE)
    return { path, abs: Buffer.concat([this.#urlStart, Buffer.from(o.Key!)]), type: 'file', stat, version: o.ETag }
  }

  #stat (size: bigint, mtimeNs: bigint, mode: bigint): SourceStat {
    // No device or inode: the ETag tells versions apart. The owner is whoever packs, as for the bucket copied to disk
    // by that user (rclone copy) and packed from there: the two sets are then equal.
    return { dev: 0n, ino: 0n, size, mtimeNs, mode, uid: OWNER.uid, gid: OWNER.gid }
  }

  /** A listed object's mtime: its Last-Modified, or with the metadata rule its x-amz-meta-mtime when it has one. */
  async #mtimeOf (key: string, o: _Object): Promise<bigint> {
    const listed = msToNs(o.LastModified)
    if (this.#mtime === 'last-modified') return listed
    let head
    try {
      head = await this.#store.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }))
    } catch (err) {
      throw s3Error(this.#store, err, { bucket: this.#bucket, key })
    }
    const meta = head.Metadata?.mtime
    if (meta === undefined) return listed
    return parseMetaMtime(meta) ?? listed
  }
}
