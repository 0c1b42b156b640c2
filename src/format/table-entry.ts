import { isUtf8 } from 'node:buffer'
import { PackerError } from '../errors.js'

/**
 * One entry of a set's file table, whatever the format version: its full path (bytes), metadata and, for a file,
 * where its stored bytes are. How entries are laid out on disk is in table.ts (version 2) and table-v1.ts; the fields
 * they share are encoded here. See docs/FORMAT.md §5.
 */
export type EntryType = 'file' | 'dir' | 'symlink'

/** Per-file age data, present when the set is encrypted. */
export interface FileEncryption {
  /** The age file key (16 bytes). Kept here so that opening a set costs one unwrap, not one per file. */
  key: Buffer
  /** Length of the age header at the start of the stored file. */
  headerLength: number
}

/** How a file's bytes were transformed before storage (and encryption). */
export type Compression = 'zstd'

export interface TableEntry {
  /** Path inside the archive, '/'-separated bytes, never empty. */
  path: Buffer
  type: EntryType
  /** Permission bits, including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number
  /** Modification time, nanoseconds since the Unix epoch. */
  mtimeNs: bigint
  uid: number
  gid: number
  /** file: its size in bytes. */
  size?: number
  /** file: CID of the stored UnixFS file (the age file when encrypted). */
  cid?: string
  /** file: size of the stored UnixFS file. */
  storedSize?: number
  /** file: indexes into manifest.cars of the CARs holding its blocks, ascending. */
  cars?: number[]
  /** file: its stored bytes are a zstd seekable stream of its bytes. */
  compression?: Compression
  /** file, version-1 hidden-names sets: its name in the flat UnixFS directory (version 2 derives it). */
  storedName?: string
  /** symlink: the target, as bytes. */
  target?: Buffer
  enc?: FileEncryption
}

export type Json = Record<string, unknown>

/** `{[key]: text}` when the bytes are valid UTF-8, else `{[key + 'B64']: base64}`. */
export function encodeBytes (key: string, bytes: Uint8Array, into: Json): void {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (isUtf8(b)) into[key] = b.toString('utf8')
  else into[`${key}B64`] = b.toString('base64')
}

/** The bytes `encodeBytes` stored under `key`, or undefined when neither form (or both) is there. */
export function decodeBytes (o: Json, key: string): Buffer | undefined {
  const text = o[key]
  const b64 = o[`${key}B64`]
  if (typeof text === 'string' && b64 === undefined) return Buffer.from(text, 'utf8')
  if (typeof b64 === 'string' && text === undefined) return Buffer.from(b64, 'base64')
  return undefined
}

export function tableError (where: string, msg: string): never {
  throw new PackerError('FORMAT', `${where}: ${msg}; the file table is damaged or not from packer`)
}

function int (v: unknown, where: string, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) tableError(where, `field '${field}' is not a valid number`)
  return v
}

/**
 * An entry as one JSON object: its path or name under `key` (`keyB64` when not UTF-8, as encodeBytes writes it), then
 * every other field (the same in both versions but for storedName), in this order. Built as text, not as an object
 * for JSON.stringify: the table of a pack has a line per file, built on the main thread. Strings that could need
 * escaping go through JSON.stringify; the rest are numbers and base64.
 */
export function entryJsonText (key: string, bytes: Buffer, e: TableEntry): string {
  let s = isUtf8(bytes) ? `{"${key}":${JSON.stringify(bytes.toString('utf8'))}` : `{"${key}B64":"${bytes.toString('base64')}"`
  s += `,"type":"${e.type}","mode":${e.mode},"mtime":"${e.mtimeNs}","uid":${e.uid},"gid":${e.gid}`
  if (e.type === 'file') {
    if (e.size !== undefined) s += `,"size":${e.size}`
    if (e.cid !== undefined) s += `,"cid":${JSON.stringify(e.cid)}`
    if (e.storedSize !== e.size && e.storedSize !== undefined) s += `,"storedSize":${e.storedSize}`
    if (e.cars !== undefined) s += `,"cars":[${e.cars.join(',')}]`
    if (e.storedName !== undefined) s += `,"storedName":${JSON.stringify(e.storedName)}`
    if (e.enc) s += `,"age":{"key":"${e.enc.key.toString('base64')}","headerLength":${e.enc.headerLength}}`
    if (e.compression !== undefined) s += `,"compression":${JSON.stringify(e.compression)}`
  } else if (e.type === 'symlink') {
    const t = e.target ?? Buffer.alloc(0)
    s += isUtf8(t) ? `,"target":${JSON.stringify(t.toString('utf8'))}` : `,"targetB64":"${t.toString('base64')}"`
  }
  return s + '}'
}

/** Validates the fields entryJsonText writes; `version` 1 allows storedName, 2 compression. */
export function parseEntryFields (o: Json, path: Buffer, where: string, carCount: number, version: 1 | 2): TableEntry {
  const type = o.type
  if (type !== 'file' && type !== 'dir' && type !== 'symlink') tableError(where, `unknown entry type ${JSON.stringify(type)}`)
  if (typeof o.mtime !== 'string' || !/^-?\d{1,25}$/.test(o.mtime)) tableError(where, "field 'mtime' is not a decimal string")
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
    if (typeof o.cid !== 'string') tableError(where, "a file has no 'cid'")
    e.cid = o.cid
    e.storedSize = o.storedSize === undefined ? e.size : int(o.storedSize, where, 'storedSize')
    if (!Array.isArray(o.cars) || o.cars.length === 0) tableError(where, "a file has no 'cars'")
    e.cars = o.cars.map((c) => int(c, where, 'cars', carCount - 1))
    if (o.storedName !== undefined) {
      if (version !== 1 || typeof o.storedName !== 'string' || !/^[0-9a-z]+$/.test(o.storedName)) tableError(where, "field 'storedName' is not valid")
      e.storedName = o.storedName
    }
    if (o.age !== undefined) {
      const age = o.age as Json
      if (typeof age !== 'object' || age === null || typeof age.key !== 'string') tableError(where, "field 'age' is not valid")
      const key = Buffer.from(age.key, 'base64')
      if (key.length !== 16) tableError(where, 'an age file key is not 16 bytes')
      e.enc = { key, headerLength: int(age.headerLength, where, 'age.headerLength') }
    }
    if (o.compression !== undefined) {
      if (version !== 2 || o.compression !== 'zstd') {
        throw new PackerError('FORMAT', `${where}: compression ${JSON.stringify(o.compression)} is not known to this packer; upgrade packer to read this file`)
      }
      e.compression = 'zstd'
    }
  } else if (type === 'symlink') {
    const target = decodeBytes(o, 'target')
    if (target === undefined) tableError(where, "a symlink has no 'target'")
    if (target.length === 0 || target.includes(0)) tableError(where, 'a symlink target is empty or holds a NUL byte')
    e.target = target
  }
  return e
}
