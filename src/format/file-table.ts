import { PackerError } from '../errors.js'
import { decodePath, encodePath, type EncodedPath } from './stored-path.js'

/**
 * The file table: every entry of the archive with its metadata and where its data is. It is stored as JSON Lines
 * (one JSON object per line, so it can be read in parts): a header line, then one line per entry, parents before
 * children. See docs/FORMAT.md, "File table".
 */
export const FILE_TABLE_VERSION = 1

export type EntryType = 'file' | 'dir' | 'symlink'

/** Per-file age data, present when the set is encrypted. */
export interface FileEncryption {
  /** The age file key (16 bytes). Kept here so that opening a set costs one unwrap, not one per file. */
  key: Buffer
  /** Length of the age header at the start of the stored file. */
  headerLength: number
}

export interface TableEntry {
  path: Buffer
  type: EntryType
  /** Permission bits, including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number
  /** Modification time, nanoseconds since the Unix epoch. */
  mtimeNs: bigint
  uid: number
  gid: number
  /** file: plaintext size in bytes. */
  size?: number
  /** file: CID of the stored UnixFS file (the age file when encrypted). */
  cid?: string
  /** file: size of the stored UnixFS file (equal to size when not encrypted). */
  storedSize?: number
  /** file: indexes into manifest.cars of the CARs holding its blocks, ascending. */
  cars?: number[]
  /** file: its name in the UnixFS tree when names are hidden. */
  storedName?: string
  /** symlink: the target, as bytes. */
  target?: Buffer
  enc?: FileEncryption
}

export interface TableHeader {
  /** Identity of the set's own X25519 key, when the set is protected by a passphrase (see FORMAT.md). */
  setIdentity?: string
}

type Json = Record<string, unknown>

export function encodeTableHeader (h: TableHeader): string {
  const line: Json = { table: 'packer-file-table', version: FILE_TABLE_VERSION }
  if (h.setIdentity) line.setIdentity = h.setIdentity
  return JSON.stringify(line) + '\n'
}

/** One entry as a JSON object (what a file-table line holds). */
export function tableEntryJson (e: TableEntry): Json {
  const line: Json = { ...encodePath(e.path), type: e.type, mode: e.mode, mtime: e.mtimeNs.toString(), uid: e.uid, gid: e.gid }
  if (e.type === 'file') {
    line.size = e.size
    line.cid = e.cid
    if (e.storedSize !== e.size) line.storedSize = e.storedSize
    line.cars = e.cars
    if (e.storedName !== undefined) line.storedName = e.storedName
    if (e.enc) line.age = { key: e.enc.key.toString('base64'), headerLength: e.enc.headerLength }
  } else if (e.type === 'symlink') {
    const t = encodePath(e.target ?? Buffer.alloc(0))
    if (t.path !== undefined) line.target = t.path
    else line.targetB64 = t.pathB64
  }
  return line
}

export function encodeTableEntry (e: TableEntry): string {
  return JSON.stringify(tableEntryJson(e)) + '\n'
}

function fail (where: string, msg: string): never {
  throw new PackerError('FORMAT', `${where}: ${msg}; the file table is damaged or not from packer`)
}

function int (v: unknown, where: string, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(where, `field '${field}' is not a valid number`)
  return v
}

function parseHeaderLine (o: Json, where: string): TableHeader {
  if (o.table !== 'packer-file-table') fail(where, 'first line is not a packer file table header')
  if (o.version !== FILE_TABLE_VERSION) {
    throw new PackerError('FORMAT', `${where}: file table version ${String(o.version)} is not supported by this packer (it reads version ${FILE_TABLE_VERSION}); upgrade packer`)
  }
  if (o.setIdentity !== undefined && typeof o.setIdentity !== 'string') fail(where, "'setIdentity' is not a string")
  return { setIdentity: o.setIdentity as string | undefined }
}

/** Validates one entry object (a file-table line, or an entry kept in the pack journal). */
export function parseTableEntry (o: Json, where: string, carCount: number): TableEntry {
  const path = decodePath(o as EncodedPath, where)
  const type = o.type
  if (type !== 'file' && type !== 'dir' && type !== 'symlink') fail(where, `unknown entry type ${JSON.stringify(type)}`)
  if (typeof o.mtime !== 'string' || !/^-?\d{1,25}$/.test(o.mtime)) fail(where, "field 'mtime' is not a decimal string")
  const e: TableEntry = {
    path,
    type,
    mode: int(o.mode, where, 'mode', 0o7777),
    mtimeNs: BigInt(o.mtime),
    uid: int(o.uid, where, 'uid', 2 ** 32 - 1),
    gid: int(o.gid, where, 'gid', 2 ** 32 - 1),
  }
  if (type === 'file') {
    e.size = int(o.size, where, 'size')
    if (typeof o.cid !== 'string') fail(where, "a file has no 'cid'")
    e.cid = o.cid
    e.storedSize = o.storedSize === undefined ? e.size : int(o.storedSize, where, 'storedSize')
    if (!Array.isArray(o.cars) || o.cars.length === 0) fail(where, "a file has no 'cars'")
    e.cars = o.cars.map((c) => int(c, where, 'cars', carCount - 1))
    if (o.storedName !== undefined) {
      if (typeof o.storedName !== 'string' || !/^[0-9a-z]+$/.test(o.storedName)) fail(where, "field 'storedName' is not valid")
      e.storedName = o.storedName
    }
    if (o.age !== undefined) {
      const age = o.age as Json
      if (typeof age !== 'object' || age === null || typeof age.key !== 'string') fail(where, "field 'age' is not valid")
      const key = Buffer.from(age.key, 'base64')
      if (key.length !== 16) fail(where, 'an age file key is not 16 bytes')
      e.enc = { key, headerLength: int(age.headerLength, where, 'age.headerLength') }
    }
  } else if (type === 'symlink') {
    if (typeof o.target === 'string') e.target = Buffer.from(o.target, 'utf8')
    else if (typeof o.targetB64 === 'string') e.target = Buffer.from(o.targetB64, 'base64')
    else fail(where, "a symlink has no 'target'")
    if (e.target.length === 0 || e.target.includes(0)) fail(where, 'a symlink target is empty or holds a NUL byte')
  }
  return e
}

/** Parses a whole file table. `where` names its source in errors. Validates every field and path. */
export function parseTable (text: string, where: string, carCount: number): { header: TableHeader, entries: TableEntry[] } {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) fail(where, 'it is empty')
  const parse = (line: string, n: number): Json => {
    let o: unknown
    try { o = JSON.parse(line) } catch { fail(`${where} line ${n}`, 'not valid JSON') }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) fail(`${where} line ${n}`, 'not a JSON object')
    return o as Json
  }
  const header = parseHeaderLine(parse(lines[0], 1), where)
  const entries: TableEntry[] = []
  const seen = new Set<string>()
  const dirs = new Set<string>()
  for (let i = 1; i < lines.length; i++) {
    const e = parseTableEntry(parse(lines[i], i + 1), `${where} line ${i + 1}`, carCount)
    const key = e.path.toString('latin1')
    if (seen.has(key)) fail(`${where} line ${i + 1}`, 'a path appears twice')
    // A parent must be a directory listed earlier: a path can never lead through a stored symlink or file.
    const slash = key.lastIndexOf('/')
    if (slash >= 0 && !dirs.has(key.slice(0, slash))) {
      throw new PackerError('UNSAFE_PATH', `${where} line ${i + 1}: the parent of ${JSON.stringify(e.path.toString('utf8'))} is not a directory of the set; refusing this set`)
    }
    seen.add(key)
    if (e.type === 'dir') dirs.add(key)
    entries.push(e)
  }
  return { header, entries }
}
