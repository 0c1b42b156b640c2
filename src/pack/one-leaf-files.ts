import { sourceProblemError, type SourceProblem } from '../source/file-reader.js'
import type { SourceEntry } from '../source/walk.js'
import type { TreeSource, WholeFileInput } from '../source/tree-source.js'
import type { Compress, LeafJob, LeafResult, LeafWorkers } from './leaf-workers.js'
import { ciphertextSize } from '../crypto/index.js'
import { LEAF_SIZE, freshSeal, type Leaf } from './leaves.js'
import type { SetEncryption } from './set-encryption.js'

/**
 * A file whose stored bytes are one leaf: that leaf, for an encrypted set its file key and header length, and whether
 * what it stores is the file's zstd seekable stream.
 */
export interface OneLeafFile { leaf: Leaf, enc: { key: Buffer, headerLength: number } | null, compressed: boolean }

/** Free places in the read-ahead before more files are started: they go to the workers together. */
const REFILL = 16

/**
 * Files whose stored bytes fit in one leaf (most files of most trees) are read, sealed and hashed whole by the leaf
 * workers, several ahead of their turn: open, stat, read and close are synchronous calls there (a source that is not
 * local fetches them here first), and so is the start of the age file (its header) where the workers can make it
 * (LeafWorkers.startsFiles); the main thread writes the block. (Read ahead through libuv's promises instead, these per-file costs on the main thread were most of the time
 * of packing 20 000 small files.) Files are offered in table order as the walk finds them (`offer`) and still handed
 * on strictly in that order, so the set's layout does not change; at most `ahead` files and `maxBytes` are held. The
 * files passed over, to be streamed, are named to the source as they are (TreeSource.willOpen), so that one that must
 * fetch them can start before their turn.
 */
export class OneLeafFiles {
  /** Files offered and not yet taken, in order; those before #next were considered for reading ahead. */
  readonly #queue: SourceEntry[] = []
  readonly #pool: LeafWorkers
  readonly #source: TreeSource
  readonly #enc: SetEncryption | null
  readonly #compress: Compress | undefined
  readonly #pending = new Map<SourceEntry, Promise<OneLeafFile>>()
  readonly #ahead: number
  readonly #maxBytes: number
  /** Length of the age header: the same for every file of a set (its stanzas have fixed lengths). */
  readonly #headerLength: number
  #next = 0
  #heldBytes = 0

  constructor (pool: LeafWorkers, source: TreeSource, enc: SetEncryption | null, opts: { ahead?: number, maxBytes?: number, compress?: Compress | null } = {}) {
    this.#pool = pool
    this.#source = source
    this.#enc = enc
    this.#compress = opts.compress ?? undefined
    this.#ahead = opts.ahead ?? 64
    this.#maxBytes = opts.maxBytes ?? 16 * 1024 * 1024
    this.#headerLength = enc === null ? 0 : enc.newFile().header.length
  }

  /** A file that will be packed (offered in the order they will be taken): read it ahead if it fits in one leaf. */
  offer (e: SourceEntry): void {
    this.#queue.push(e)
    this.#fill()
  }

  /** Files offered and not yet taken. */
  get waiting (): number { return this.#queue.length }

  /**
   * The next file offered, read as one leaf when it fits in one; null: stream it. A file that changed or vanished
   * rejects with the error a streamed read would throw.
   */
  take (e: SourceEntry): Promise<OneLeafFile> | null {
    if (this.#queue[0] !== e) throw new Error('OneLeafFiles: files taken out of the order they were offered')
    this.#fill()
    this.#queue.shift()
    if (this.#next > 0) this.#next--
    const p = this.#pending.get(e) ?? null
    if (p !== null) {
      this.#pending.delete(e)
      this.#heldBytes -= Number(e.stat.size)
    }
    this.#fill()
    return p
  }

  /** Starts the next files that fit in one leaf; the source is told of them, and of the files between to be streamed. */
  #fill (): void {
    // Started some at a time (jobs go to the workers several to a message), unless the next file to take waits.
    if (this.#ahead - this.#pending.size < Math.min(REFILL, Math.ceil(this.#ahead / 4)) && this.#next > 0) return
    const started: SourceEntry[] = []
    const streamed: SourceEntry[] = []
    const batch: Array<{ e: SourceEntry, job: Extract<LeafJob, { kind: 'file' }>, enc: OneLeafFile['enc'] }> = []
    try {
      this.#start(started, streamed, batch)
    } finally {
      if (started.length > 0) this.#source.willRead(started)
      if (streamed.length > 0) this.#source.willOpen(streamed)
      const results = this.#pool.runAll(batch.map((b) => b.job))
      batch.forEach((b, i) => { this.#pending.set(b.e, this.#oneLeaf(b.e, results[i]!, b.enc)) })
    }
  }

  /** Considers the next files: those local read whole by a job (in `batch`), the others fetched first; the rest streamed. */
  #start (started: SourceEntry[], streamed: SourceEntry[], batch: Array<{ e: SourceEntry, job: Extract<LeafJob, { kind: 'file' }>, enc: OneLeafFile['enc'] }>): void {
    while (this.#next < this.#queue.length && this.#pending.size + batch.length < this.#ahead) {
      const e = this.#queue[this.#next]!
      const size = Number(e.stat.size)
      if (size > LEAF_SIZE) { this.#next++; streamed.push(e); continue }
      if (this.#heldBytes + size > this.#maxBytes && this.#pending.size + batch.length > 0) return
      this.#next++
      const job = this.#job(e)
      if (job === null) { streamed.push(e); continue }
      this.#heldBytes += size
      started.push(e)
      const input = this.#source.wholeFile(e)
      if (input instanceof Promise) {
        this.#pending.set(e, this.#oneLeaf(e, input.then(async (i) => await this.#pool.run({ ...job.file, input: i })), job.enc))
      } else {
        batch.push({ e, job: { ...job.file, input }, enc: job.enc })
      }
    }
  }

  /** A file's one leaf, when its job is done. */
  #oneLeaf (e: SourceEntry, result: Promise<LeafResult | { problem: SourceProblem }>, enc: OneLeafFile['enc']): Promise<OneLeafFile> {
    const read = result.then((r): OneLeafFile => {
      if ('problem' in r) throw sourceProblemError(e, r.problem)
      const started = r.fresh === undefined ? enc : { key: Buffer.from(r.fresh.fileKey), headerLength: r.fresh.headerLength }
      return { leaf: { bytes: r.leaf, digest: r.digest }, enc: started, compressed: r.compressed === true }
    })
    read.catch(() => {}) // an error is seen when the file's turn comes
    return read
  }

  /** The job reading `e` as one leaf (but its input), or null when its stored bytes would not fit in one. */
  #job (e: SourceEntry): { file: Omit<Extract<LeafJob, { kind: 'file' }>, 'input'>, enc: OneLeafFile['enc'] } | null {
    const size = Number(e.stat.size)
    if (this.#enc === null) return { file: { kind: 'file', seal: null }, enc: null }
    if (ciphertextSize(size, this.#headerLength) > LEAF_SIZE) return null
    const compress = this.#compress
    if (this.#pool.startsFiles) return { file: { kind: 'file', seal: 'fresh', compress }, enc: null }
    const started = freshSeal(this.#enc.newFile())
    return { file: { kind: 'file', seal: started.seal, compress }, enc: { key: Buffer.from(started.fileKey), headerLength: started.headerLength } }
  }
}
