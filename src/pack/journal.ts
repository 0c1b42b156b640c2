import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { decodePath, encodePath } from '../format/stored-path.js'
import { entryFieldsJson, parseEntryFields, type TableEntry } from '../format/table-entry.js'
import { BLOCK_RECORD_SIZE } from '../car/block-index.js'
import { Appender, readLines } from '../spill/lines.js'

/**
 * The pack journal: what a pack has written so far, so that a rerun after a crash continues where it stopped, and
 * the list of entries the final stage builds the directories and the file table from. It holds names and file keys,
 * so it never lives in OUTDIR (which is shipped to storage providers): it is kept in the user's state directory,
 * mode 0600, and removed when the pack succeeds (docs/FORMAT.md §9). Everything is on disk and read as streams: its
 * memory does not grow with the number of files.
 *
 *   <id>.journal  JSON lines: a header, then the entries in table order and a line per complete CAR where it happened
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

/** 3: entries of the version-2 table, in its order (1 and 2, of packer 0.1, are not continued). */
const JOURNAL_VERSION = 3

function dirLine (dir: Buffer): string {
  return JSON.stringify({ dir: encodePath(dir) }) + '\n'
}

function entryLine (j: JournalEntry): string {
  const o: Record<string, unknown> = { entry: entryFieldsJson(j.entry, { ...encodePath(j.entry.path) }) }
  if (j.dagSize !== undefined) o.dagSize = j.dagSize
  if (j.src !== undefined) o.src = j.src
  if (j.records !== undefined) o.records = j.records
  if (j.refs !== undefined && j.refs.length > 0) o.refs = j.refs
  return JSON.stringify(o) + '\n'
}

/** Appends binary records in batches. */
class RecordAppender {
  readonly #file: string
  #pending: Buffer[] = []
  #bytes = 0
  #fh: fs.FileHandle | null = null

  constructor (file: string) { this.#file = file }

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
    this.#fh ??= await fs.open(this.#file, 'a', 0o600)
    await this.#fh.appendFile(data)
  }

  async sync (): Promise<void> {
    await this.flush()
    await this.#fh?.datasync()
  }

  async close (): Promise<void> {
    await this.flush()
    await this.#fh?.close()
    this.#fh = null
  }
}

export class PackJournal {
  readonly base: string
  #lines: Appender | null = null
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
    let first = true
    let state: JournalState | null = null
    let carsEnded = false
    let blocks: number
    try {
      blocks = Math.floor((await fs.stat(this.#blockFile)).size / BLOCK_RECORD_SIZE)
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err
      blocks = 0
    }
    try {
      for await (const line of readLines(this.#journal)) {
        let rec: any
        try { rec = JSON.parse(line) } catch { break }
        if (first) {
          first = false
          if (rec?.journal !== 'packer-pack-journal') {
            throw new PackerError('FORMAT', `${this.#journal} is not a packer journal; remove it to start the pack afresh`, { subject: this.#journal })
          }
          if (rec.version !== JOURNAL_VERSION) {
            throw new PackerError('OUTPUT', `the interrupted pack of ${rec.header?.out ?? 'this output'} was made by an older packer (journal ${this.#journal}); finish it with that version, or remove the journal and the output directory to start afresh`, { subject: this.#journal })
          }
          state = { header: rec.header, cars: [], blockCounts: [], drafts: [] }
          continue
        }
        if (typeof rec?.draft === 'string') state!.drafts.push(rec.draft)
        if (rec?.car === undefined || carsEnded) continue
        // A CAR whose records are not all there ends the CARs (not the drafts, each synced when written).
        if (typeof rec.blocks !== 'number' || rec.blocks > blocks) { carsEnded = true; continue }
        state!.cars.push(rec.car)
        state!.blockCounts.push(rec.blocks)
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null
      throw err
    }
    return state
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
    try { await fs.access(file) } catch { return }
    const where = `journal ${file}`
    let first = true
    for await (const line of readLines(file)) {
      if (first) { first = false; continue }
      let rec: any
      try { rec = JSON.parse(line) } catch { break }
      if (rec?.dir !== undefined) {
        const d = rec.dir.path === '' ? Buffer.alloc(0) : decodePath(rec.dir, where)
        yield { dir: d }
        continue
      }
      if (rec?.entry === undefined) continue
      yield { entry: parseEntryFields(rec.entry, decodePath(rec.entry, where), where, Number.MAX_SAFE_INTEGER, 2), dagSize: rec.dagSize, src: rec.src, records: rec.records, refs: rec.refs }
    }
  }

  /**
   * Starts this run's journal. To continue an interrupted one, `keep` names how many of its CARs were kept: their
   * lines and block records stay, the rest is cut off, and its entries stay readable through previousEntries() until
   * finish().
   */
  async open (header: JournalHeader, keep?: JournalState, carCount = 0): Promise<void> {
    await this.#closeFiles()
    const lines = [JSON.stringify({ journal: 'packer-pack-journal', version: JOURNAL_VERSION, header })]
    let records = 0
    if (keep !== undefined && carCount > 0) {
      lines.push(...keep.cars.slice(0, carCount).map((car, i) => JSON.stringify({ car, blocks: keep.blockCounts[i] })))
      records = keep.blockCounts[carCount - 1]!
      await fs.rename(this.#journal, this.#previous)
    } else {
      await fs.rm(this.#previous, { force: true })
    }
    await truncateSynced(this.#blockFile, records * BLOCK_RECORD_SIZE)
    await writeSynced(this.#journal, lines.join('\n') + '\n')
    await fs.rm(this.workDir, { recursive: true, force: true })
    await fs.mkdir(this.workDir, { mode: 0o700 })
    this.#lines = new Appender(this.#journal)
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
    await this.#lines!.write(dirLine(dir))
  }

  /** Records an entry of the table (a file once its blocks are written). Batched, not synced (see addCar). */
  async addEntry (j: JournalEntry): Promise<void> {
    await this.#lines!.write(entryLine(j))
  }

  /** Records a block written (its block-index record). Batched, not synced. */
  async addRecord (record: Buffer): Promise<void> {
    this.#recordCount++
    await this.#records!.add(record)
  }

  /** Records a CAR draft (CarSinkOptions.onDraft), durably, before it receives bytes. */
  async addDraft (draft: string): Promise<void> {
    await this.#lines!.write(JSON.stringify({ draft }) + '\n')
    await this.#lines!.sync()
  }

  /** Records a complete (durable, renamed) CAR: its blocks' records and the lines before it become durable. */
  async addCar (car: CarRecord): Promise<void> {
    await this.#records!.sync()
    await this.#lines!.write(JSON.stringify({ car, blocks: this.#recordCount }) + '\n')
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
