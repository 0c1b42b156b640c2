import { PackerError } from '../errors.js'
import { assertSafePath, displayPath } from './stored-path.js'
import { parseJsonLine } from './table-v1.js'
import { decodeBytes, encodeBytes, entryJsonText, parseEntryFields, tableError, type FileEncryption, type Json, type TableEntry } from './table-entry.js'

/**
 * The version-2 file table (docs/FORMAT.md §5): entries grouped by directory (root first, then each directory in
 * depth-first pre-order, entries of a directory by name bytes), cut into chunks of JSON Lines found through a small
 * table index, so that a reader can find one directory's entries, or one file's, without reading the rest.
 */
export const TABLE_VERSION = 2
/** Largest chunk of table text (a single larger entry makes a chunk of its own). */
export const MAX_CHUNK_BYTES = 128 * 1024
/**
 * Test-only, like PACKER_FAULT: PACKER_TEST_TABLE_CHUNK_BYTES=N makes pack cut the table into chunks of at most N
 * bytes, so that small trees make many chunks and readers cross them (any N gives a valid table: chunks are at most
 * 128 KiB, not exactly). Unset in normal use.
 */
const TEST_CHUNK_BYTES = Number(process.env.PACKER_TEST_TABLE_CHUNK_BYTES) || undefined

const SLASH = 0x2f

/** The directory part of a path ('' for an entry of the root) and its name. */
export function splitEntryPath (p: Buffer): { dir: Buffer, name: Buffer } {
  const i = p.lastIndexOf(SLASH)
  return i < 0 ? { dir: p.subarray(0, 0), name: p } : { dir: p.subarray(0, i), name: p.subarray(i + 1) }
}

/** Directory paths component by component, a path before any path below it ('/' sorts before every name byte). */
export function compareDirs (a: Buffer, b: Buffer): number {
  return compareDirPrefixes(a, a.length, b, b.length)
}

/** compareDirs of a[0, an) and b[0, bn), without making buffers of them. */
function compareDirPrefixes (a: Buffer, an: number, b: Buffer, bn: number): number {
  const n = Math.min(an, bn)
  for (let i = 0; i < n; i++) {
    const x = a[i]!
    const y = b[i]!
    if (x !== y) {
      if (x === SLASH) return -1
      if (y === SLASH) return 1
      return x - y
    }
  }
  return an - bn
}

/**
 * Table order of two entry paths: their directories (compareDirs), then their names by bytes. Allocates nothing:
 * readers call it in every binary search.
 */
export function compareTableOrder (a: Buffer, b: Buffer): number {
  const i = a.lastIndexOf(SLASH)
  const j = b.lastIndexOf(SLASH)
  return compareDirPrefixes(a, Math.max(i, 0), b, Math.max(j, 0)) || a.compare(b, j + 1, b.length, i + 1, a.length)
}

/** True when `p` is an entry of directory `dir` ('' : the root), not deeper. */
export function isEntryOf (p: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return p.indexOf(SLASH) < 0
  return p.length > dir.length + 1 && p[dir.length] === SLASH && p.indexOf(SLASH, dir.length + 1) < 0 &&
    p.compare(dir, 0, dir.length, 0, dir.length) === 0
}

/** True when `p` is `dir` or lies below it ('' holds everything). */
export function isWithin (p: Buffer, dir: Buffer): boolean {
  if (dir.length === 0) return true
  return p.length >= dir.length && p.subarray(0, dir.length).equals(dir) && (p.length === dir.length || p[dir.length] === SLASH)
}

function dirLine (dir: Buffer): string {
  const o: Json = {}
  encodeBytes('dir', dir, o)
  return JSON.stringify(o) + '\n'
}

function entryLine (e: TableEntry, name: Buffer): string {
  return entryJsonText('name', name, e) + '\n'
}

/** A chunk of table text with what its index record needs. */
export interface ChunkText { text: string, entries: number, files: number, first: Buffer }

/** Cuts entries, given in table order, into chunk texts. */
export class TableChunker {
  readonly #max: number
  #parts: string[] = []
  #bytes = 0
  #entries = 0
  #files = 0
  #first: Buffer | null = null
  #dir: Buffer | null = null
  #last: Buffer | null = null

  constructor (maxChunkBytes = TEST_CHUNK_BYTES ?? MAX_CHUNK_BYTES) { this.#max = maxChunkBytes }

  /** Adds the next entry; returns the chunk it completed (the chunk before it), if any. */
  add (e: TableEntry): ChunkText | null {
    if (this.#last !== null && compareTableOrder(this.#last, e.path) >= 0) {
      throw new Error(`table entries out of order: ${displayPath(e.path)} after ${displayPath(this.#last)}`)
    }
    this.#last = e.path
    const { dir, name } = splitEntryPath(e.path)
    const newDir = this.#dir === null || !this.#dir.equals(dir)
    const line = entryLine(e, name)
    let done: ChunkText | null = null
    if (this.#entries > 0 && this.#bytes + line.length + (newDir ? dirLine(dir).length : 0) > this.#max) {
      done = this.#cut()
    }
    if (this.#entries === 0 || newDir) {
      const d = dirLine(dir)
      this.#parts.push(d)
      this.#bytes += Buffer.byteLength(d)
      this.#dir = dir
    }
    if (this.#entries === 0) this.#first = e.path
    this.#parts.push(line)
    this.#bytes += Buffer.byteLength(line)
    this.#entries++
    if (e.type === 'file') this.#files++
    return done
  }

  /** The last chunk, or null when no entry is pending. */
  finish (): ChunkText | null { return this.#entries === 0 ? null : this.#cut() }

  #cut (): ChunkText {
    const out: ChunkText = { text: this.#parts.join(''), entries: this.#entries, files: this.#files, first: this.#first! }
    this.#parts = []
    this.#bytes = 0
    this.#entries = 0
    this.#files = 0
    this.#dir = null
    return out
  }
}

/**
 * Parses one chunk's text into entries with their full paths, validating every field, every name and the order
 * within the chunk (`after`: the path that must come before its first entry, from the previous chunk or the index).
 */
export function parseTableChunk (text: string, where: string, carCount: number): TableEntry[] {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  const out: TableEntry[] = []
  let dir: Buffer | null = null
  let last: Buffer | null = null
  for (let i = 0; i < lines.length; i++) {
    const at = `${where} line ${i + 1}`
    const o = parseJsonLine(lines[i]!, at)
    if (o.dir !== undefined || o.dirB64 !== undefined) {
      const d = decodeBytes(o, 'dir')
      if (d === undefined) tableError(at, "'dir' is not valid")
      if (d.length > 0) assertSafePath(d, at)
      if (dir !== null && compareDirs(dir, d) >= 0) tableError(at, 'directories are out of order')
      dir = d
      last = null
      continue
    }
    if (dir === null) tableError(at, 'an entry comes before any directory line')
    const name = decodeBytes(o, 'name')
    if (name === undefined || name.length === 0 || name.includes(SLASH)) tableError(at, "an entry has no valid 'name' or 'nameB64'")
    const path = dir.length === 0 ? name : Buffer.concat([dir, Buffer.of(SLASH), name])
    // The directory was checked on its line: only a name that is '.', '..' or holds NUL can make the path unsafe.
    if (!isPlainName(name)) assertSafePath(path, at)
    // Names in order within their directory's run (directories are in order, checked on their lines).
    if (last !== null && Buffer.compare(last, name) >= 0) tableError(at, `${JSON.stringify(displayPath(path))} is out of order or repeated`)
    last = name
    out.push(parseEntryFields(o, path, at, carCount, 2))
  }
  if (out.length === 0) tableError(where, 'a table chunk holds no entry')
  return out
}

/** False for '.', '..' and names holding NUL. */
function isPlainName (name: Buffer): boolean {
  if (name.includes(0)) return false
  return !(name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e)))
}

export interface TableIndexHeader {
  entries: number
  files: number
  chunks: number
  /** Identity of the set's own X25519 key, when the set is protected by a passphrase (FORMAT.md §6). */
  setIdentity?: string
}

/** One chunk as the index records it; `firstEntry`/`firstFile` are the entry and file numbers of its first entry. */
export interface ChunkRecord {
  cid: string
  size: number
  entries: number
  files: number
  /** Full path of its first entry. */
  first: Buffer
  enc?: FileEncryption
  firstEntry: number
  firstFile: number
}

export function encodeTableIndexHeader (h: TableIndexHeader): string {
  const o: Json = { table: 'packer-table-index', version: TABLE_VERSION, entries: h.entries, files: h.files, chunks: h.chunks }
  if (h.setIdentity !== undefined) o.setIdentity = h.setIdentity
  return JSON.stringify(o) + '\n'
}

export function encodeChunkRecord (r: Omit<ChunkRecord, 'firstEntry' | 'firstFile'>): string {
  const { dir, name } = splitEntryPath(r.first)
  const first: Json = {}
  encodeBytes('dir', dir, first)
  encodeBytes('name', name, first)
  const o: Json = { cid: r.cid, size: r.size, entries: r.entries, files: r.files, first }
  if (r.enc) o.age = { key: r.enc.key.toString('base64'), headerLength: r.enc.headerLength }
  return JSON.stringify(o) + '\n'
}

const nat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/** Parses a whole table index (a line per chunk: small), validating its fields and the order of the chunks. */
export function parseTableIndex (text: string, where: string): { header: TableIndexHeader, chunks: ChunkRecord[] } {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) tableError(where, 'the table index is empty')
  const h = parseJsonLine(lines[0]!, `${where} line 1`)
  if (h.table !== 'packer-table-index') tableError(where, 'first line is not a packer table index header')
  if (h.version !== TABLE_VERSION) {
    throw new PackerError('FORMAT', `${where}: table version ${String(h.version)} is not supported by this packer (it reads version ${TABLE_VERSION}); upgrade packer`)
  }
  if (!nat(h.entries) || !nat(h.files) || !nat(h.chunks) || h.chunks !== lines.length - 1) tableError(where, 'the header does not match the index')
  if (h.setIdentity !== undefined && typeof h.setIdentity !== 'string') tableError(where, "'setIdentity' is not a string")
  const header: TableIndexHeader = { entries: h.entries, files: h.files, chunks: h.chunks, setIdentity: h.setIdentity as string | undefined }
  const chunks: ChunkRecord[] = []
  let entry = 0
  let file = 0
  for (let i = 1; i < lines.length; i++) {
    const at = `${where} line ${i + 1}`
    const o = parseJsonLine(lines[i]!, at)
    const f = o.first as Json
    const dir = typeof f === 'object' && f !== null ? decodeBytes(f, 'dir') : undefined
    const name = typeof f === 'object' && f !== null ? decodeBytes(f, 'name') : undefined
    if (typeof o.cid !== 'string' || !nat(o.size) || !nat(o.entries) || o.entries === 0 || !nat(o.files) || o.files > o.entries ||
        dir === undefined || name === undefined || name.length === 0) tableError(at, 'not a valid chunk record')
    const first = dir.length === 0 ? Buffer.from(name) : Buffer.concat([dir, Buffer.of(SLASH), name])
    assertSafePath(first, at)
    const prev = chunks[chunks.length - 1]
    if (prev !== undefined && compareTableOrder(prev.first, first) >= 0) tableError(at, 'chunks are out of order')
    const r: ChunkRecord = { cid: o.cid, size: o.size, entries: o.entries, files: o.files, first, firstEntry: entry, firstFile: file }
    if (o.age !== undefined) {
      const age = o.age as Json
      const key = typeof age === 'object' && age !== null && typeof age.key === 'string' ? Buffer.from(age.key, 'base64') : Buffer.alloc(0)
      if (key.length !== 16 || !nat(age.headerLength)) tableError(at, "field 'age' is not valid")
      r.enc = { key, headerLength: age.headerLength }
    }
    chunks.push(r)
    entry += o.entries
    file += o.files
  }
  if (entry !== header.entries || file !== header.files) tableError(where, 'the chunks do not add up to the header\'s counts')
  return { header, chunks }
}

/** Index of the chunk that holds `path` if the table has it: the last chunk whose first entry is not after it (-1: none). */
export function chunkFor (chunks: ChunkRecord[], path: Buffer): number {
  let lo = 0
  let hi = chunks.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (compareTableOrder(chunks[mid]!.first, path) <= 0) { found = mid; lo = mid + 1 } else hi = mid - 1
  }
  return found
}

/** The name of the n-th file of a hidden-names tree (FORMAT.md §1). */
export function hiddenName (fileNumber: number): string {
  return fileNumber.toString(36).padStart(8, '0')
}
