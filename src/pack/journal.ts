import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import type { TableEntry } from '../format/table-entry.js'
import { BLOCK_RECORD_SIZE } from '../car/block-index.js'
import { OrderedAppends, RECORD_CAR, RECORD_DRAFT, RecordWriter, readHeaderLine, readRecords, type JournalRecord } from './journal-records.js'

/**
 * The pack journal: what a pack has written so far, so that a rerun after a crash continues where it stopped, and
 * the list of entries the final stage builds the directories and the file table from. It holds names and file keys,
 * so it never lives in OUTDIR (which is shipped to storage providers): it is kept in the user's state directory,
 * mode 0600, and removed when the pack succeeds (docs/FORMAT.md §9). Everything is on disk and read as streams: its
 * memory does not grow with the number of files.
 *
 *   <id>.journal  a JSON header line, then binary records (journal-records.ts): the entries in table order and a line per complete CAR where it happened
 *                 (a CAR's line is synced, and so makes the lines before it durable), and a synced line per CAR
 *                 draft a later run must throw away should this one be killed (an S3 multipart upload)
 *   <id>.blocks   the block-index records of every block written, in order (48 bytes each)
 *   <id>.work/    temporary files of the final stage
 *   <id>.done     after success: which arguments made which set, so an identical rerun does nothing
 * where <id> is derived from OUTDIR's real path (an S3 output's endpoint and URL).
 */
export interface JournalHeader {
  out: string
  source: string
  binSize: number
  /** Identifies the recipients (or 'passphrase', or 'none') without holding secrets. */
  encryption: string
  names: 'hidden' | 'plain' | 'clear'
  /** How files are compressed: 'off', 'auto' or 'zstd:LEVEL' (absent: off). */
  compress?: string
  /** Passphrase sets: the set's X25519 identity, which files already written are encrypted to. */
  setIdentity?: string
}

/** Where a packed file came from: a rerun repacks it if the source differs now. `version`: an object's ETag. */
export interface SourceId { dev: string, ino: string, size: string, mtimeNs: string, version?: string }

/**
 * An entry as the journal holds it: a file with its DAG size (what a directory link records), its source, and which
 * blocks are its: the record numbers it wrote [first, end) and those of copies it reuses (`refs`). (A join of shards
 * uses them to follow blocks it moves; FORMAT.md §9.)
 */
export interface JournalEntry { entry: TableEntry, dagSize?: number, src?: SourceId, records?: [number, number], refs?: number[] }

/** What the journal lists, in table order: each directory (every one, empty ones too) before its entries. */
export type JournalItem = { dir: Buffer } | JournalEntry

export interface JournalState {
  header: JournalHeader
  /** CARs made durable, in order, with the number of block records up to and including each. */
  cars: CarRecord[]
  blockCounts: number[]
  /** CAR drafts the run reported (SetOutput.discardDrafts throws away those it did not commit). */
  drafts: string[]
}

export interface DoneRecord { source: string, binSize: number, encryption: string, names: string, compress?: string, setId: string }

export function stateDir (override?: string): string {
  if (override) return override
  if (process.env.PACKER_STATE_DIR) return process.env.PACKER_STATE_DIR
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state')
  return path.join(base, 'packer')
}

export function sameArgs (a: Omit<JournalHeader, 'out' | 'setIdentity'>, b: Omit<JournalHeader, 'out' | 'setIdentity'>): boolean {
  return a.source === b.source && a.binSize === b.binSize && a.encryption === b.encryption && a.names === b.names && (a.compress ?? 'off') === (b.compress ?? 'off')
}

/**
 * 4: a JSON header line, then binary records (journal-records.ts); 3: JSON lines (packer 0.1.0), refused with what to do
 * (1 and 2, of earlier 0.1 builds, likewise). An interrupted pack is finished by the packer that started it.
 */
const JOURNAL_VERSION = 4

/** Appends binary records in batches. */
class RecordAppender {
  readonly #out: OrderedAppends
  #pending: Buffer[] = []
  #bytes = 0

  constructor (file: string) { this.#out = new OrderedAppends(file) }

  async add (record: Buffer): Promise<void> {
    this.#pending.push(record)
    this.#bytes += record.length
    if (this.#bytes >= 1 << 20) await this.flush()
  }

  async flush (): Promise<void> {
    if (this.#pending.length === 0) return
    const data = Buffer.concat(this.#pending)
    this.#pending = []
    this.#bytes = 0
    await this.#out.append(data)
  }

  async sync (): Promise<void> {
    await this.flush()
    await this.#out.sync()
  }

  async close (): Promise<void> {
    await this.flush()
    await this.#out.close()
  }
}

export class PackJournal {
  readonly base: string
  #lines: RecordWriter | null = null
  #records: RecordAppender | null = null
  /** Records handed over (written or pending). */
  #recordCount = 0

  private constructor (base: string) { this.base = base }

  /** A journal at `base` (its files are `base.journal`, `base.blocks`…), e.g. a shard run's, in a work directory. */
  static async at (base: string): Promise<PackJournal> {
    await fs.mkdir(path.dirname(base), { recursive: true, mode: 0o700 })
    return new PackJournal(base)
  }

  /** The journal of an output (SetOutput.identity), in the state directory (it need not have one yet). */
  static async for (identity: string, dir?: string): Promise<PackJournal> {
    const id = crypto.createHash('sha256').update(identity).digest('hex').slice(0, 32)
    const d = stateDir(dir)
    await fs.mkdir(d, { recursive: true, mode: 0o700 })
    return new PackJournal(path.join(d, id))
  }

  get #journal (): string { return `${this.base}.journal` }
  get #previous (): string { return `${this.base}.journal.previous` }
  get #blockFile (): string { return `${this.base}.blocks` }
  get #doneFile (): string { return `${this.base}.done` }
  /** A private directory for the final stage's temporary files. */
  get workDir (): string { return `${this.base}.work` }

  /**
   * The journal's header and durable CARs, or null when there is none. Lines after the last CAR line (not synced)
   * are not trusted; a line cut short by a crash ends the journal.
   */
  async load (): Promise<JournalState | null> {
    let blocks: number
    try {
      blocks = Math.floor((await fs.stat(this.#blockFile)).size / BLOCK_RECORD_SIZE)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      blocks = 0
    }
    let fh: fs.FileHandle
    try { fh = await fs.open(this.#journal, 'r') } catch (err) {
      if (isErrno(err, 'ENOENT')) return null
      throw err
    }
    try {
      const head = await readHeaderLine(fh)
      if (head === null) return null
      const rec = head.header
      if (rec?.journal !== 'packer-pack-journal') {
        throw new PackerError('FORMAT', `${this.#journal} is not a packer journal; remove it to start the pack afresh`, { subject: this.#journal })
      }
      if (rec.version !== JOURNAL_VERSION) {
        const other = typeof rec.version === 'number' && rec.version > JOURNAL_VERSION ? 'a newer' : 'an older'
        throw new PackerError('OUTPUT', `the interrupted pack of ${rec.header?.out ?? 'this output'} was made by ${other} packer (journal version ${String(rec.version)}, ${this.#journal}); finish it with that version, or start afresh: remove ${path.basename(this.base)}.* from the state directory ${path.dirname(this.base)} and empty the output directory`, { subject: this.#journal })
      }
      const state: JournalState = { header: rec.header, cars: [], blockCounts: [], drafts: [] }
      let carsEnded = false
      for await (const r of readRecords(fh, head.end, `journal ${this.#journal}`, false) as AsyncGenerator<any>) {
        if (typeof r.draft === 'string') state.drafts.push(r.draft)
        if (r.car === undefined || carsEnded) continue
        // A CAR whose records are not all there ends the CARs (not the drafts, each synced when written).
        if (typeof r.blocks !== 'number' || r.blocks > blocks) { carsEnded = true; continue }
        state.cars.push(r.car)
        state.blockCounts.push(r.blocks)
      }
      return state
    } finally {
      await fh.close()
    }
  }

  /**
   * The entries of the journal being continued (see open), in table order: the files among them whose CARs were kept
   * can be reused. (A line that could be read whole is true: it was written after what it describes.)
   */
  async * previousEntries (): AsyncGenerator<JournalEntry> {
    for await (const item of this.#itemsOf(this.#previous)) if ('entry' in item) yield item
  }

  /** The directories and entries of this run's journal, in table order (for the final stage). */
  async * items (): AsyncGenerator<JournalItem> {
    await this.#lines?.flush()
    yield * this.#itemsOf(this.#journal)
  }

  async * #itemsOf (file: string): AsyncGenerator<JournalItem> {
    let fh: fs.FileHandle
    try { fh = await fs.open(file, 'r') } catch (err) {
      if (isErrno(err, 'ENOENT')) return
      throw err
    }
    try {
      const head = await readHeaderLine(fh)
      if (head === null) return
      if (head.header?.version !== JOURNAL_VERSION) throw new PackerError('FORMAT', `${file} is not a version-${JOURNAL_VERSION} packer journal; remove it to start the pack afresh`, { subject: file })
      for await (const r of readRecords(fh, head.end, `journal ${file}`) as AsyncGenerator<JournalRecord>) {
        if ('dir' in r || 'entry' in r) yield r
      }
    } finally {
      await fh.close()
    }
  }

  /**
   * Starts this run's journal. To continue an interrupted one, `keep` names how many of its CARs were kept: their
   * lines and block records stay, the rest is cut off, and its entries stay readable through previousEntries() until
   * finish().
   */
  async open (header: JournalHeader, keep?: JournalState, carCount = 0): Promise<void> {
    await this.#closeFiles()
    let records = 0
    if (keep !== undefined && carCount > 0) {
      records = keep.blockCounts[carCount - 1]!
      await fs.rename(this.#journal, this.#previous)
    } else {
      await fs.rm(this.#previous, { force: true })
    }
    await truncateSynced(this.#blockFile, records * BLOCK_RECORD_SIZE)
    await writeSynced(this.#journal, JSON.stringify({ journal: 'packer-pack-journal', version: JOURNAL_VERSION, header }) + '\n')
    this.#lines = new RecordWriter(this.#journal)
    if (keep !== undefined) {
      for (let i = 0; i < carCount; i++) await this.#lines.json(RECORD_CAR, { car: keep.cars[i], blocks: keep.blockCounts[i] })
      await this.#lines.sync()
    }
    await fs.rm(this.workDir, { recursive: true, force: true })
    await fs.mkdir(this.workDir, { mode: 0o700 })
    this.#records = new RecordAppender(this.#blockFile)
    this.#recordCount = records
  }

  /** The block records of the kept CARs (or all written so far), in write order. */
  async * records (count = this.#recordCount): AsyncGenerator<Buffer> {
    await this.#records?.flush()
    const fh = await fs.open(this.#blockFile, 'r')
    try {
      const buf = Buffer.allocUnsafe(BLOCK_RECORD_SIZE * 8192)
      for (let done = 0; done < count;) {
        const want = Math.min(count - done, 8192) * BLOCK_RECORD_SIZE
        const { bytesRead } = await fh.read(buf, 0, want, done * BLOCK_RECORD_SIZE)
        if (bytesRead < want) throw new PackerError('FORMAT', `${this.#blockFile} is shorter than its journal says; remove the journal to start the pack afresh`)
        for (let at = 0; at < bytesRead; at += BLOCK_RECORD_SIZE) yield Buffer.from(buf.subarray(at, at + BLOCK_RECORD_SIZE))
        done += bytesRead / BLOCK_RECORD_SIZE
      }
    } finally {
      await fh.close()
    }
  }

  get recordCount (): number { return this.#recordCount }

  /** Record `n` (0-based) of the blocks file. */
  async record (n: number): Promise<Buffer> {
    const fh = await fs.open(this.#blockFile, 'r')
    try {
      const buf = Buffer.alloc(BLOCK_RECORD_SIZE)
      const { bytesRead } = await fh.read(buf, 0, BLOCK_RECORD_SIZE, n * BLOCK_RECORD_SIZE)
      if (bytesRead !== BLOCK_RECORD_SIZE) throw new PackerError('FORMAT', `${this.#blockFile} is shorter than its journal says; remove the journal to start the pack afresh`)
      return buf
    } finally {
      await fh.close()
    }
  }

  /** Records the start of a directory's entries (every directory, in table order). Batched, not synced. */
  async addDir (dir: Buffer): Promise<void> {
    await this.#lines!.dir(dir)
  }

  /** Records an entry of the table (a file once its blocks are written). Batched, not synced (see addCar). */
  async addEntry (j: JournalEntry): Promise<void> {
    await this.#lines!.entry(j)
  }

  /** Records a block written (its block-index record). Batched, not synced. */
  async addRecord (record: Buffer): Promise<void> {
    this.#recordCount++
    await this.#records!.add(record)
  }

  /** Records a CAR draft (CarSinkOptions.onDraft), durably, before it receives bytes. */
  async addDraft (draft: string): Promise<void> {
    await this.#lines!.json(RECORD_DRAFT, { draft })
    await this.#lines!.sync()
  }

  /** Records a complete (durable, renamed) CAR: its blocks' records and the lines before it become durable. */
  async addCar (car: CarRecord): Promise<void> {
    await this.#records!.sync()
    await this.#lines!.json(RECORD_CAR, { car, blocks: this.#recordCount })
    await this.#lines!.sync()
  }

  async #closeFiles (): Promise<void> {
    await this.#lines?.close()
    await this.#records?.close()
    this.#lines = null
    this.#records = null
  }

  /** Makes everything handed over durable. */
  async sync (): Promise<void> {
    await this.#records?.sync()
    await this.#lines?.sync()
  }

  /** Closes the files (after a failure: everything stays for a rerun). */
  async close (): Promise<void> { await this.#closeFiles() }

  /** On success: forget names and keys, remember only which arguments made which set. */
  async finish (done: DoneRecord): Promise<void> {
    await this.#closeFiles()
    await writeSynced(this.#doneFile, JSON.stringify(done) + '\n')
    for (const f of [this.#journal, this.#previous, this.#blockFile]) await fs.rm(f, { force: true })
    await fs.rm(this.workDir, { recursive: true, force: true })
  }

  async done (): Promise<DoneRecord | null> {
    try { return JSON.parse(await fs.readFile(this.#doneFile, 'utf8')) } catch { return null }
  }

  async forgetDone (): Promise<void> { await fs.rm(this.#doneFile, { force: true }) }
}

async function writeSynced (file: string, data: string | Uint8Array): Promise<void> {
  const fh = await fs.open(file, 'w', 0o600)
  try { await fh.writeFile(data); await fh.datasync() } finally { await fh.close() }
}

async function truncateSynced (file: string, length: number): Promise<void> {
  const fh = await fs.open(file, 'a', 0o600)
  try { await fh.truncate(length); await fh.datasync() } finally { await fh.close() }
}
