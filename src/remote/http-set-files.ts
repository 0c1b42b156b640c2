import { BlockIndex } from '../car/block-index.js'
import { MANIFEST_FILE, parseManifest, type Manifest } from '../format/manifest.js'
import type { SetFiles } from '../store/set-files.js'
import { HttpGetError, httpGet, httpGetBytes, type HttpTimeouts } from './http-get.js'

/** Largest manifest or table copy read whole (a manifest lists CARs: ~400 bytes each). */
const MAX_SMALL_FILE = 256 << 20

/** A set directory on a web server (`base` ends with '/'): manifest and table copy fetched whole, the index by ranges. */
export class HttpSetFiles implements SetFiles {
  readonly where: string
  readonly #base: URL
  readonly #t: HttpTimeouts | undefined

  constructor (base: string, t?: HttpTimeouts) {
    this.#base = new URL(base.endsWith('/') ? base : `${base}/`)
    this.where = this.#base.href
    this.#t = t
  }

  async manifest (): Promise<{ manifest: Manifest, mtimeMs: number }> {
    const url = new URL(MANIFEST_FILE, this.#base).href
    const got = await this.#whole(url)
    if (got === null) throw new HttpGetError(url, `not found: ${this.where} is not a packer set (give the URL of the directory that pack wrote)`, { status: 404, transient: false })
    return { manifest: parseManifest(got.bytes.toString('utf8'), url), mtimeMs: got.modifiedMs ?? Date.now() }
  }

  async index (m: Manifest): Promise<BlockIndex & { close: () => Promise<void> }> {
    const url = new URL(m.index.file, this.#base).href
    // The first page also says the index's size (Content-Range).
    const head = await httpGet(url, 0, 4096, this.#t)
    head.cancel()
    const index = await BlockIndex.open(async (offset, length) => await httpGetBytes(url, offset, Math.min(offset + length, head.total), this.#t), head.total, url, m.cars.length)
    return Object.assign(index, { close: async () => {} })
  }

  async read (name: string): Promise<Buffer | null> {
    return (await this.#whole(new URL(name, this.#base).href))?.bytes ?? null
  }

  async #whole (url: string): Promise<{ bytes: Buffer, modifiedMs: number | undefined } | null> {
    let body
    try {
      body = await httpGet(url, 0, undefined, this.#t)
    } catch (err) {
      if (err instanceof HttpGetError && err.status === 404) return null
      throw err
    }
    const parts: Buffer[] = []
    let n = 0
    for await (const p of body.pieces()) {
      n += p.length
      if (n > MAX_SMALL_FILE) { body.cancel(); throw new HttpGetError(url, `larger than ${MAX_SMALL_FILE} bytes: not a set's file`, { transient: false }) }
      parts.push(p)
    }
    return { bytes: Buffer.concat(parts), modifiedMs: body.modifiedMs }
  }
}
