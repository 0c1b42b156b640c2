/**
 * A set written under `s3://BUCKET/PREFIX/` (src/car/set-output.ts). Each CAR is streamed as a multipart upload while
 * its piece CID is computed — no local copy — to a temporary key, `.partial-<n>.car`; its name, the piece CID, is
 * known only at its end and S3 has no rename, so it is then copied server-side to `<pieceCid>.car` (CopyObject up to
 * 5 GiB, UploadPartCopy in parts beyond) and the temporary object deleted. A server-side copy moves no bytes through
 * this machine and needs no disk; a local spool would need a bin's size of disk (32 GiB by default) per CAR and upload
 * every byte after the CAR is done instead of while it is made. A CAR smaller than one part (a set's last, usually)
 * is sent in one PutObject under its final name: no copy. The manifest is written last; its presence means complete.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, UploadPartCommand, UploadPartCopyCommand, type CompletedPart,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3'
import { partialCarName, type CarDraft, type CarSink, type CarSinkOptions, type SetOutput } from '../car/set-output.js'
import { s3Client, type S3Options, type S3Store } from './client.js'
import { readRange } from './read-range.js'
import { s3Error, sendS3 } from './s3-error.js'
import { LOCK_PREFIX, acquireS3Lock } from './s3-lock.js'
import { asDirectory, parseS3Url } from './s3-url.js'

const MiB = 1024 * 1024
/** Parts of an upload are at least this large (S3's minimum is 5 MiB, but for the last)… */
const MIN_PART = 8 * MiB
/** …and at most this many (S3's limit): a bin larger than 10,000 × 8 MiB gets larger parts. */
const MAX_PARTS = 10_000
/** Parts of one CAR uploading at once: bytes in flight are this many parts (and the one being filled). */
const PARTS_IN_FLIGHT = 4
/**
 * The largest object CopyObject copies (S3's limit); larger ones are copied in parts of COPY_PART. Test-only, like
 * PACKER_FAULT: PACKER_TEST_COPY_OBJECT_MAX=N copies objects over N bytes in parts of N, so a test reaches
 * UploadPartCopy with a small CAR.
 */
const TEST_COPY_MAX = Number(process.env.PACKER_TEST_COPY_OBJECT_MAX) || undefined
const COPY_OBJECT_MAX = TEST_COPY_MAX ?? 5 * 1024 * MiB
const COPY_PART = TEST_COPY_MAX ?? 512 * MiB

/** An upload in parts a later run must abort should this one be killed (SetOutput.discardDrafts). */
interface Draft { key: string, uploadId: string }

export async function s3Output (url: string, opts: S3Options): Promise<SetOutput> {
  const { bucket, prefix } = parseS3Url(url)
  return new S3Output(await s3Client(opts), bucket, asDirectory(prefix))
}

/** `s3://BUCKET/KEY` as CopySource wants it: each part of the key URL-encoded. */
function copySource (bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`
}

class S3Output implements SetOutput {
  readonly where: string
  readonly kind = 'prefix' as const
  readonly #store: S3Store
  readonly #bucket: string
  readonly #base: string
  #partSize = MIN_PART
  #onDraft: (draft: string) => Promise<void> = async () => {}

  constructor (store: S3Store, bucket: string, base: string) {
    this.#store = store
    this.#bucket = bucket
    this.#base = base
    this.where = `s3://${bucket}/${base}`
  }

  async identity (): Promise<string> { return `${this.where} at ${this.#store.endpoint}` }

  async #send<T> (command: object, key?: string): Promise<T> {
    return await sendS3<T>(this.#store, command, { bucket: this.#bucket, key })
  }

  async prepare (): Promise<void> {
    await this.#send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#base, MaxKeys: 1 }), this.#base || undefined)
  }

  async lock (): Promise<{ release: () => Promise<void> }> { return await acquireS3Lock(this.#store, this.#bucket, this.#base) }

  async names (): Promise<string[]> {
    const names: string[] = []
    let token: string | undefined
    do {
      const page = await this.#send<ListObjectsV2CommandOutput>(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#base, Delimiter: '/', ContinuationToken: token }), this.#base || undefined)
      for (const o of page.Contents ?? []) {
        const name = o.Key!.slice(this.#base.length)
        if (name !== '' && !name.startsWith(LOCK_PREFIX)) names.push(name) // '': the prefix's own marker
      }
      for (const p of page.CommonPrefixes ?? []) names.push(p.Prefix!.slice(this.#base.length))
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return names
  }

  async size (name: string): Promise<number | null> {
    try {
      return (await this.#store.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#base + name }))).ContentLength ?? 0
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null
      throw s3Error(this.#store, err, { bucket: this.#bucket, key: this.#base + name })
    }
  }

  async readAt (name: string, offset: number, length: number): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0)
    return await readRange(this.#store, { bucket: this.#bucket, key: this.#base + name, start: offset, end: offset + length - 1 })
  }

  async remove (name: string): Promise<void> {
    await this.#send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#base + name }), this.#base + name)
  }

  cars (opts: CarSinkOptions = {}): CarSink {
    if (opts.onDraft !== undefined) this.#onDraft = opts.onDraft
    this.#partSize = Math.max(MIN_PART, Math.ceil((opts.largestCar ?? 0) / MAX_PARTS / MiB) * MiB)
    const partial = opts.partialName ?? partialCarName
    return { begin: async (n) => new CarUpload(this, this.#base + partial(n)) }
  }

  async putBytes (name: string, bytes: Uint8Array): Promise<void> {
    const key = this.#base + name
    await this.#send(new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: bytes, ContentLength: bytes.length }), key)
  }

  async putFile (name: string, produce: (file: string) => Promise<void>, scratchDir: string): Promise<void> {
    const file = path.join(scratchDir, `upload-${name}`)
    try {
      await produce(file)
      const fh = await fs.open(file, 'r')
      const upload = new CarUpload(this, this.#base + name)
      try {
        const size = (await fh.stat()).size
        for (let at = 0; at < size;) {
          const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(Math.min(this.#partSize, size - at)), 0, Math.min(this.#partSize, size - at), at)
          if (bytesRead === 0) throw new Error(`${file} ended at byte ${at} of ${size}`)
          await upload.write(buffer.subarray(0, bytesRead))
          at += bytesRead
        }
        await upload.complete()
      } catch (err) {
        await upload.discard()
        throw err
      } finally {
        await fh.close()
      }
    } finally {
      await fs.rm(file, { force: true })
    }
  }

  async discardDrafts (drafts: string[]): Promise<void> {
    for (const d of drafts) {
      const { key, uploadId } = JSON.parse(d) as Draft
      await this.abort(key, uploadId)
    }
  }

  async close (): Promise<void> { this.#store.client.destroy() }

  // What an upload needs of its output.
  get bucket (): string { return this.#bucket }
  get partSize (): number { return this.#partSize }
  async send<T> (command: object, key: string): Promise<T> { return await this.#send<T>(command, key) }
  async reportDraft (d: Draft): Promise<void> { await this.#onDraft(JSON.stringify(d)) }

  /** Aborts an upload in parts; one already completed or aborted (NoSuchUpload) is fine. */
  async abort (key: string, uploadId: string): Promise<void> {
    try {
      await this.#store.client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: key, UploadId: uploadId }))
    } catch (err) {
      if ((err as { name?: string }).name !== 'NoSuchUpload') throw s3Error(this.#store, err, { bucket: this.#bucket, key })
    }
  }
}

/**
 * One object written in parts as its bytes come: parts of the output's part size, PARTS_IN_FLIGHT of them uploading
 * at once (each a Buffer, so the SDK can retry it). The upload in parts starts with the first full part; an object
 * that never fills one is sent whole by PutObject.
 */
class CarUpload implements CarDraft {
  readonly #out: S3Output
  readonly #key: string
  #part: Buffer | null = null
  #used = 0
  #uploadId: string | null = null
  readonly #parts: CompletedPart[] = []
  #inflight: Array<Promise<void>> = []
  #failed: { err: unknown } | null = null
  #size = 0
  #completed: string | null = null

  constructor (out: S3Output, key: string) {
    this.#out = out
    this.#key = key
  }

  async write (bytes: Uint8Array, release?: () => void): Promise<void> {
    this.#throwIfFailed()
    this.#size += bytes.length
    for (let off = 0; off < bytes.length;) {
      this.#part ??= Buffer.allocUnsafe(this.#out.partSize)
      const n = Math.min(this.#part.length - this.#used, bytes.length - off)
      this.#part.set(bytes.subarray(off, off + n), this.#used)
      this.#used += n
      off += n
      if (this.#used === this.#part.length) await this.#sendPart()
    }
    release?.() // copied into parts
  }

  #throwIfFailed (): void {
    if (this.#failed !== null) throw this.#failed.err
  }

  /** Sends the part being filled; returns once fewer than PARTS_IN_FLIGHT are uploading. */
  async #sendPart (): Promise<void> {
    const body = this.#part!.subarray(0, this.#used)
    this.#part = null
    this.#used = 0
    if (this.#uploadId === null) {
      const { UploadId } = await this.#out.send<{ UploadId?: string }>(new CreateMultipartUploadCommand({ Bucket: this.#out.bucket, Key: this.#key }), this.#key)
      this.#uploadId = UploadId!
      await this.#out.reportDraft({ key: this.#key, uploadId: this.#uploadId })
    }
    const PartNumber = this.#parts.length + 1
    const done: CompletedPart = { PartNumber }
    this.#parts.push(done)
    const sent = this.#out.send<{ ETag?: string }>(new UploadPartCommand({
      Bucket: this.#out.bucket, Key: this.#key, UploadId: this.#uploadId, PartNumber, Body: body, ContentLength: body.length,
    }), this.#key).then((r) => { done.ETag = r.ETag }, (err: unknown) => { this.#failed ??= { err } })
    this.#inflight.push(sent)
    while (this.#inflight.length >= PARTS_IN_FLIGHT) await this.#inflight.shift()
    this.#throwIfFailed()
  }

  /** Sends what was written, never more than a part, in one request, as the object `key`. */
  async #putWhole (key: string): Promise<void> {
    const body = this.#part?.subarray(0, this.#used) ?? new Uint8Array(0)
    await this.#out.send(new PutObjectCommand({ Bucket: this.#out.bucket, Key: key, Body: body, ContentLength: body.length }), key)
    this.#part = null
  }

  /** Everything written, as the object at this upload's key; returns its ETag, or null when sent whole. */
  async complete (): Promise<string | null> {
    if (this.#uploadId === null) {
      await this.#putWhole(this.#key)
      return null
    }
    if (this.#used > 0) await this.#sendPart()
    await Promise.all(this.#inflight.splice(0))
    this.#throwIfFailed()
    const r = await this.#out.send<{ ETag?: string }>(new CompleteMultipartUploadCommand({
      Bucket: this.#out.bucket, Key: this.#key, UploadId: this.#uploadId, MultipartUpload: { Parts: this.#parts },
    }), this.#key)
    this.#completed = r.ETag ?? ''
    return this.#completed
  }

  async commit (name: string): Promise<void> {
    const final = this.#key.slice(0, this.#key.lastIndexOf('/') + 1) + name
    // Never more than a part: sent whole, under its final name
    if (this.#uploadId === null) return await this.#putWhole(final)
    const etag = await this.complete()
    await this.#copy(final, etag!)
    await this.#out.send(new DeleteObjectCommand({ Bucket: this.#out.bucket, Key: this.#key }), this.#key)
  }

  /** Copies the completed object to `final`, server-side: in one request, or in parts beyond COPY_OBJECT_MAX. */
  async #copy (final: string, etag: string): Promise<void> {
    const Bucket = this.#out.bucket
    const CopySource = copySource(Bucket, this.#key)
    if (this.#size <= COPY_OBJECT_MAX) {
      await this.#out.send(new CopyObjectCommand({ Bucket, Key: final, CopySource, CopySourceIfMatch: etag }), final)
      return
    }
    const { UploadId } = await this.#out.send<{ UploadId?: string }>(new CreateMultipartUploadCommand({ Bucket, Key: final }), final)
    await this.#out.reportDraft({ key: final, uploadId: UploadId! })
    const parts: CompletedPart[] = []
    const count = Math.ceil(this.#size / COPY_PART)
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < count) {
        const i = next++
        const range = `bytes=${i * COPY_PART}-${Math.min(this.#size, (i + 1) * COPY_PART) - 1}`
        const r = await this.#out.send<{ CopyPartResult?: { ETag?: string } }>(new UploadPartCopyCommand({
          Bucket, Key: final, UploadId, PartNumber: i + 1, CopySource, CopySourceRange: range, CopySourceIfMatch: etag,
        }), final)
        parts[i] = { PartNumber: i + 1, ETag: r.CopyPartResult?.ETag }
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(PARTS_IN_FLIGHT, count) }, lane))
      await this.#out.send(new CompleteMultipartUploadCommand({ Bucket, Key: final, UploadId, MultipartUpload: { Parts: parts } }), final)
    } catch (err) {
      await this.#out.abort(final, UploadId!).catch(() => {})
      throw err
    }
  }

  /** After a failure: the parts go (the upload aborted; the journal still names it, should this fail too). */
  async discard (): Promise<void> {
    await Promise.allSettled(this.#inflight.splice(0))
    this.#part = null
    if (this.#uploadId === null) return
    if (this.#completed === null) await this.#out.abort(this.#key, this.#uploadId).catch(() => {})
    else await this.#out.send(new DeleteObjectCommand({ Bucket: this.#out.bucket, Key: this.#key }), this.#key).catch(() => {})
  }
}
