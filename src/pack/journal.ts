import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'
import { parseTableEntry, tableEntryJson, type TableEntry } from '../format/file-table.js'
import { BLOCK_RECORD_SIZE } from '../car/block-index.js'

/**
 * The pack journal: what a pack has made durable so far, so that a rerun after a crash continues where it stopped.
 * It holds names and file keys, so it never lives in OUTDIR (which is shipped to storage providers): it is kept in
 * the user's state directory, mode 0600, and removed when the pack succeeds (docs/FORMAT.md, "Pack journal").
 *
 *   <id>.journal  JSON lines: a header, then a line per file packed and a line per complete CAR, in the order they
 *                 happened (a CAR's line is synced, and so makes the lines before it durable)
 *   <id>.blocks   the block-index records of those CARs, appended in order (48 bytes each)
 *   <id>.done     after success: which arguments made which set, so an identical rerun does nothing
 * where <id> is derived from OUTDIR's real path.
 */
export interface JournalHeader {
  out: string
  source: string
  binSize: number
  /** Identifies the recipients (or 'passphrase', or 'none') without holding secrets. */
  encryption: string
  names: 'hidden' | 'plain' | 'clear'
  /** Passphrase sets: the set's X25519 identity, which files already written are encrypted to. */
  setIdentity?: string
}

/** A file whose blocks are all in complete CARs. */
export interface JournalFile {
  entry: TableEntry
  /** The UnixFS DAG size (what a directory link records). */
  dagSize: number
  /** The source file as it was read; a rerun repacks the file if it differs now. */
  src: { dev: string, ino: string, size: string, mtimeNs: string }
}

export interface JournalState {
  header: JournalHeader
  cars: CarRecord[]
  files: JournalFile[]
  /** Block-index records of the complete CARs. */
  blocks: Buffer
  /** Records in `blocks` up to and including each CAR. */
  blockCounts: number[]
}

export interface DoneRecord { source: string, binSize: number, encryption: string, names: string, setId: string }

export function stateDir (override?: string): string {
  if (override) return override
  if (process.env.PACKER_STATE_DIR) return process.env.PACKER_STATE_DIR
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state')
  return path.join(base, 'packer')
}

export function sameArgs (a: Omit<JournalHeader, 'out' | 'setIdentity'>, b: Omit<JournalHeader, 'out' | 'setIdentity'>): boolean {
  return a.source === b.source && a.binSize === b.binSize && a.encryption === b.encryption && a.names === b.names
}

/** 2: a line per file (1: files listed in their CAR's line; still read). */
const JOURNAL_VERSION = 2

function fileLine (f: JournalFile): string {
  return JSON.stringify({ file: { entry: tableEntryJson(f.entry), dagSize: f.dagSize, src: f.src } })
}

export class PackJournal {
  readonly base: string
  #blocks = 0
  #pending = ''

  private constructor (base: string) { this.base = base }

  /** The journal of an output directory (which need not have one yet). */
  static async for (out: string, dir?: string): Promise<PackJournal> {
    const real = await fs.realpath(out)
    const id = crypto.createHash('sha256').update(real).digest('hex').slice(0, 32)
    const d = stateDir(dir)
    await fs.mkdir(d, { recursive: true, mode: 0o700 })
    return new PackJournal(path.join(d, id))
  }

  get #journal (): string { return `${this.base}.journal` }
  get #blockFile (): string { return `${this.base}.blocks` }
  get #doneFile (): string { return `${this.base}.done` }

  /** The journal's content, or null when there is none. A line cut short by a crash is ignored. */
  async load (): Promise<JournalState | null> {
    let text: string
    try { text = await fs.readFile(this.#journal, 'utf8') } catch (err) { if (isErrno(err, 'ENOENT')) return null; throw err }
    const lines = text.split('\n')
    const parse = (l: string): any => { try { return JSON.parse(l) } catch { return undefined } }
    const head = parse(lines[0])
    if (head?.journal !== 'packer-pack-journal' || (head.version !== 1 && head.version !== JOURNAL_VERSION)) {
      throw new PackerError('FORMAT', `${this.#journal} is not a packer journal; remove it to start the pack afresh`, { subject: this.#journal })
    }
    const state: JournalState = { header: head.header, cars: [], files: [], blocks: Buffer.alloc(0), blockCounts: [] }
    const blocks = await fs.readFile(this.#blockFile).catch(() => Buffer.alloc(0))
    const fileOf = (f: any): JournalFile => ({ entry: parseTableEntry(f.entry, this.#journal, Number.MAX_SAFE_INTEGER), dagSize: f.dagSize, src: f.src })
    let count = 0
    for (const line of lines.slice(1)) {
      const rec = parse(line)
      if (rec?.file !== undefined) { state.files.push(fileOf(rec.file)); continue }
      if (rec?.car === undefined || typeof rec.blocks !== 'number' || rec.blocks * BLOCK_RECORD_SIZE > blocks.length) break
      state.cars.push(rec.car)
      state.blockCounts.push(rec.blocks)
      for (const f of rec.files ?? []) state.files.push(fileOf(f)) // version 1: a CAR's line listed its files
      count = rec.blocks
    }
    state.blocks = blocks.subarray(0, count * BLOCK_RECORD_SIZE)
    return state
  }

  /**
   * Starts a new journal, or continues one: keeps only its first `carCount` CARs, and the files whose blocks all lie
   * in them.
   */
  async open (header: JournalHeader, keep?: JournalState, carCount = 0): Promise<void> {
    const lines = [JSON.stringify({ journal: 'packer-pack-journal', version: JOURNAL_VERSION, header })]
    let blocks: Buffer = Buffer.alloc(0)
    if (keep && carCount > 0) {
      lines.push(...keep.cars.slice(0, carCount).map((car, i) => JSON.stringify({ car, blocks: keep.blockCounts[i] })))
      for (const f of keep.files) if (f.entry.cars!.every((c) => c < carCount)) lines.push(fileLine(f))
      blocks = keep.blocks.subarray(0, keep.blockCounts[carCount - 1]! * BLOCK_RECORD_SIZE)
    }
    await writeSynced(this.#blockFile, blocks)
    await writeSynced(this.#journal, lines.join('\n') + '\n')
    this.#blocks = blocks.length / BLOCK_RECORD_SIZE
    this.#pending = ''
  }

  /**
   * Records a file packed (its blocks written, in CARs that may not be complete yet). Written in batches and not
   * synced: the next CAR's line makes it durable, and a file counts on resume only if its CARs were recorded. (One
   * line per CAR listing its files cost 80 MB of heap for 20 000 files in one CAR.)
   */
  async addFile (f: JournalFile): Promise<void> {
    this.#pending += fileLine(f) + '\n'
    if (this.#pending.length >= 64 * 1024) await this.#flush()
  }

  /** Records a complete (durable, renamed) CAR and its block-index records; syncs the journal. */
  async addCar (car: CarRecord, blockRecords: Buffer): Promise<void> {
    await appendSynced(this.#blockFile, blockRecords)
    this.#blocks += blockRecords.length / BLOCK_RECORD_SIZE
    this.#pending += JSON.stringify({ car, blocks: this.#blocks }) + '\n'
    const text = this.#pending
    this.#pending = ''
    await appendSynced(this.#journal, text)
  }

  async #flush (): Promise<void> {
    const text = this.#pending
    this.#pending = ''
    await fs.appendFile(this.#journal, text, { mode: 0o600 })
  }

  /** On success: forget names and keys, remember only which arguments made which set. */
  async finish (done: DoneRecord): Promise<void> {
    await writeSynced(this.#doneFile, JSON.stringify(done) + '\n')
    await fs.rm(this.#journal, { force: true })
    await fs.rm(this.#blockFile, { force: true })
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

async function appendSynced (file: string, data: string | Uint8Array): Promise<void> {
  const fh = await fs.open(file, 'a', 0o600)
  try { await fh.writeFile(data); await fh.datasync() } finally { await fh.close() }
}
