import type { Readable } from 'node:stream'
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3'
import { PackerError } from '../errors.js'
import { BlockIndex } from '../car/block-index.js'
import { MANIFEST_FILE, parseManifest, type Manifest } from '../format/manifest.js'
import type { SetFiles } from '../store/set-files.js'
import type { S3Store } from './client.js'
import { readRange } from './read-range.js'
import { s3Error } from './s3-error.js'

/** Largest manifest or table copy read whole (a manifest lists CARs: ~400 bytes each). */
const MAX_SMALL_FILE = 256 << 20

const notFound = (err: unknown): boolean => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404

/**
 * A set's own files as objects under an S3 prefix (`base`: '' or ending in '/'): the manifest and a version-1 table's
 * copy read whole, the block index by ranged GETs.
 */
export class S3SetFiles implements SetFiles {
  readonly where: string
  readonly #store: S3Store
  readonly #bucket: string
  readonly #base: string

  constructor (store: S3Store, bucket: string, base: string) {
    this.#store = store
    this.#bucket = bucket
    this.#base = base
    this.where = `s3://${bucket}/${base}`
  }

  #url (name: string): string { return `${this.where}${name}` }

  async manifest (): Promise<{ manifest: Manifest, mtimeMs: number }> {
    const got = await this.#whole(MANIFEST_FILE)
    if (got === null) {
      throw new PackerError('FORMAT', `${this.where} is not a packer set: ${this.#url(MANIFEST_FILE)} does not exist at ${this.#store.endpoint}; give the prefix that pack -o wrote (its manifest is written last: a pack still running, or killed, has none yet)`, { subject: this.#url(MANIFEST_FILE) })
    }
    return { manifest: parseManifest(got.bytes.toString('utf8'), this.#url(MANIFEST_FILE)), mtimeMs: got.modifiedMs }
  }

  async index (m: Manifest): Promise<BlockIndex & { close: () => Promise<void> }> {
    const key = this.#base + m.index.file
    const url = this.#url(m.index.file)
    let size: number
    try {
      size = (await this.#store.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }))).ContentLength ?? 0
    } catch (err) {
      if (notFound(err)) throw new PackerError('FORMAT', `${url} not found at ${this.#store.endpoint}: the set's block index is missing (upload it from a copy of the set, or remake it from the CARs with 'packer rebuild --force DIR' on a local copy)`, { subject: url })
      throw s3Error(this.#store, err, { bucket: this.#bucket, key })
    }
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const end = Math.min(offset + length, size)
      return end <= offset ? Buffer.alloc(0) : await readRange(this.#store, { bucket: this.#bucket, key, start: offset, end: end - 1 })
    }
    const index = await BlockIndex.open(readAt, size, url, m.cars.length)
    return Object.assign(index, { close: async () => {} })
  }

  async read (name: string): Promise<Buffer | null> {
    return (await this.#whole(name))?.bytes ?? null
  }

  /** A small object whole, and when it was written; null when there is none. */
  async #whole (name: string): Promise<{ bytes: Buffer, modifiedMs: number } | null> {
    const key = this.#base + name
    let res
    try {
      res = await this.#store.client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: key }))
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') return null
      throw s3Error(this.#store, err, { bucket: this.#bucket, key })
    }
    const body = res.Body as Readable
    if ((res.ContentLength ?? 0) > MAX_SMALL_FILE) {
      body.destroy()
      throw new PackerError('FORMAT', `${this.#url(name)} is ${res.ContentLength} bytes: too large for a set's ${name}; give the prefix that pack -o wrote`, { subject: this.#url(name) })
    }
    const parts: Buffer[] = []
    try {
      for await (const p of body as AsyncIterable<Buffer>) parts.push(p)
    } catch (err) {
      throw s3Error(this.#store, err, { bucket: this.#bucket, key })
    }
    return { bytes: Buffer.concat(parts), modifiedMs: res.LastModified?.getTime() ?? Date.now() }
  }
}
