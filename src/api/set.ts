import { DEFAULT_TIMEOUTS, type HttpTimeouts } from '../remote/http-get.js'
import { PackerError } from '../errors.js'
import type { Manifest } from '../format/manifest.js'
import type { TableEntry } from '../format/table-entry.js'
import { displayPath } from '../format/stored-path.js'
import { CarSet } from '../read/car-set.js'
import { FileView } from '../read/file-view.js'
import { streamSizeOf } from '../read/compressed.js'
import { SetReader, streamingReaderOptions } from '../read/reader.js'
import { misnamedWarning } from '../read/availability.js'
import { subtree } from '../read/set-table.js'
import { identitiesOf, type KeyOptions } from './keys.js'
import { s3ReadOptions, type S3Access } from './s3.js'

/** How a reading command finds and opens a set (`-i`, `--passphrase`, `--expect`, `--cars`, `--s3-…`). */
export interface SetOptions extends KeyOptions, S3Access {
  /** Refuse the set unless its set ID (printed by pack) is this one. */
  expect?: string
  /** Directory (or `s3://BUCKET/PREFIX`) holding the CARs, when they are not beside manifest.json. */
  cars?: string
  /** Fetch the CARs from these URL templates ({pieceCid}, {pieceCidV2}; storage providers' /piece/ URLs), in order. */
  pieceUrls?: string[]
  /** Longest wait for an HTTP server (to connect, to answer, between two pieces of a body), in ms; default 30 s. */
  httpTimeoutMs?: number
}

/** HTTP timeouts from one bound (connecting gets at most 10 s of it). */
export function httpTimeouts (ms: number | undefined): HttpTimeouts | undefined {
  return ms === undefined ? undefined : { connect: Math.min(ms, DEFAULT_TIMEOUTS.connect), firstByte: ms, stall: ms }
}

/** One CAR of a set, as deal tools need it (`packer pieces`). */
export interface PieceInfo {
  /** File name of the CAR: `<piece CID v1>.car`. */
  carFile: string
  carSize: number
  /** Piece CID v1 (`baga6ea4sea…`). */
  pieceCid: string
  /** Piece CID v2, FRC-0069 (`bafkzcib…`). */
  pieceCidV2: string
  /** Padded piece size in bytes. */
  pieceSize: number
  /** The CAR header's root CID. */
  payloadCid: string
  blocks: number
}

/** What a set's manifest says: readable without any key. */
export interface SetManifest {
  /** The set ID: keep it apart from the CARs and check sets with `expect`. */
  setId: string
  /** Root CID of the set's UnixFS tree. */
  root: string
  /** The packer version that wrote the set. */
  createdBy: string
  /** null: files stored in clear. `names`: 'hidden' (flat, opaque UnixFS names) or 'plain'. */
  encryption: { names: 'hidden' | 'plain', recipients: string[] } | null
  binSize: number
  cars: PieceInfo[]
}

/** One entry of a set's file table. Holds no key. */
export interface SetEntry {
  /** The path inside the set, for display: UTF-8, bytes that are not valid UTF-8 shown as `\xNN`. */
  path: string
  /** The exact bytes of the path (POSIX names are bytes). */
  pathBytes: Uint8Array
  type: 'file' | 'dir' | 'symlink'
  /** Permission bits, with setuid, setgid and sticky. */
  mode: number
  /** Modification time in nanoseconds since the epoch. */
  mtimeNs: bigint
  uid: number
  gid: number
  /** file: size in bytes. */
  size?: number
  /** file: CID of its stored UnixFS file (the age file when encrypted). */
  cid?: string
  /** file: indexes into `manifest.cars` of the CARs holding its blocks. */
  cars?: number[]
  /** file: bytes of its stored UnixFS file (the age file when encrypted: header, nonce and tags included). */
  storedSize?: number
  /**
   * file: bytes of its stored content before encryption (the age payload): its zstd seekable stream when compressed,
   * else its size.
   */
  payloadSize?: number
  /** file: 'zstd' when stored as a zstd seekable stream (FORMAT.md §6); read/stream give its bytes decompressed. */
  compression?: 'zstd'
  /** symlink: its target, for display. */
  target?: string
  /** symlink: the target's exact bytes. */
  targetBytes?: Uint8Array
}

/** An open set: its manifest, its entries, and the bytes of its files (checked and decrypted). */
export interface PackerSet {
  readonly manifest: SetManifest
  readonly setId: string
  /** The entries at or below `path` (default: all), parents before children. */
  entries (path?: string | Uint8Array): AsyncIterable<SetEntry>
  /** The entry at `path`, or undefined. */
  entry (path: string | Uint8Array): Promise<SetEntry | undefined>
  /** A file's bytes, streamed in order with bounded memory. */
  stream (path: string | Uint8Array): AsyncIterable<Uint8Array>
  /** A file's bytes, whole. */
  readFile (path: string | Uint8Array): Promise<Uint8Array>
  /** Bytes [offset, offset + length) of a file (fewer at its end), reading only the blocks that hold them. */
  read (path: string | Uint8Array, offset: number, length: number): Promise<Uint8Array>
  close (): Promise<void>
}

export function pieceInfo (m: Manifest): PieceInfo[] {
  return m.cars.map((c) => ({ carFile: c.file, carSize: c.size, pieceCid: c.pieceCid, pieceCidV2: c.pieceCidV2, pieceSize: c.pieceSize, payloadCid: c.root, blocks: c.blocks }))
}

export function setManifest (m: Manifest): SetManifest {
  return {
    setId: m.table.cid,
    root: m.root,
    createdBy: m.createdBy,
    encryption: m.encryption === null ? null : { names: m.encryption.names, recipients: [...m.encryption.recipients] },
    binSize: m.binSize,
    cars: pieceInfo(m),
  }
}

export function setEntry (e: TableEntry): SetEntry {
  const out: SetEntry = { path: displayPath(e.path), pathBytes: Buffer.from(e.path), type: e.type, mode: e.mode, mtimeNs: e.mtimeNs, uid: e.uid, gid: e.gid }
  if (e.type === 'file') {
    out.size = e.size
    out.cid = e.cid
    out.cars = [...e.cars!]
    out.storedSize = e.storedSize
    out.payloadSize = e.compression === undefined ? e.size : streamSizeOf(e)
    if (e.compression !== undefined) out.compression = e.compression
  } else if (e.type === 'symlink') {
    out.target = displayPath(e.target!)
    out.targetBytes = Buffer.from(e.target!)
  }
  return out
}

/** A path given by the caller as stored bytes: strings lose their leading and trailing slashes. */
export function storedPath (p: string | Uint8Array): Buffer {
  return typeof p === 'string' ? Buffer.from(p.replace(/^\/+|\/+$/g, '')) : Buffer.from(p)
}

/** Opens a set with the caller's keys; `skipTable`: manifest and index only (no key needed). */
/** Readers read CARs by content, but say once when some are not under their own names. */
export async function warnMisnamed (set: CarSet, onWarning?: (m: string) => void): Promise<void> {
  if (onWarning === undefined) return
  const w = await misnamedWarning(set)
  if (w !== null) onWarning(w)
}

export async function openCarSet (dir: string, o: SetOptions, skipTable = false): Promise<CarSet> {
  const identities = skipTable ? [] : await identitiesOf(o)
  return await CarSet.open(dir, { identities, expect: o.expect, skipTable, carDir: o.cars, pieceUrls: o.pieceUrls, http: httpTimeouts(o.httpTimeoutMs), s3: s3ReadOptions(o) })
}

/**
 * Opens a set: manifest, block index and file table (decrypted with `identities` or `passphrase` when encrypted).
 * Reads no file data. Close it when done.
 */
export async function openSet (dir: string, options: SetOptions = {}): Promise<PackerSet> {
  const set = await openCarSet(dir, options)
  const view = new FileView(set)
  // Compressed files are read as the CLI reads them: frames decompressed on the reader's worker threads, read ahead of
  // a stream (not on the caller's thread); the reader and its threads are made at the first such file, as verify does.
  let reader: SetReader | undefined
  const readerOf = (): SetReader => (reader ??= new SetReader(set, streamingReaderOptions(set)))
  const file = async (p: string | Uint8Array): Promise<TableEntry> => {
    const e = await set.files.lookup(storedPath(p))
    const shown = typeof p === 'string' ? p : displayPath(Buffer.from(p))
    if (e === undefined) throw new PackerError('USAGE', `${shown} is not in the set (see 'packer ls ${dir}')`, { subject: shown })
    if (e.type !== 'file') throw new PackerError('USAGE', `${shown} is a ${e.type === 'dir' ? 'directory' : 'symlink'}, not a file`, { subject: shown })
    return e
  }
  async function * stream (p: string | Uint8Array): AsyncGenerator<Uint8Array> {
    const e = await file(p)
    let n = 0
    for await (const chunk of e.compression === undefined ? view.stream(e) : readerOf().stream(e)) { n += chunk.length; yield chunk }
    if (n !== e.size) throw new PackerError('CORRUPT', `${displayPath(e.path)}: ${n} bytes, the file table says ${e.size}; the set is damaged`, { subject: displayPath(e.path) })
  }
  return {
    manifest: setManifest(set.manifest),
    setId: set.setId,
    entries: async function * (p = '') { for await (const e of subtree(set.files, storedPath(p))) yield setEntry(e) },
    entry: async (p) => { const e = await set.files.lookup(storedPath(p)); return e === undefined ? undefined : setEntry(e) },
    stream,
    readFile: async (p) => {
      const parts: Uint8Array[] = []
      for await (const chunk of stream(p)) parts.push(chunk)
      return Buffer.concat(parts)
    },
    read: async (p, offset, length) => {
      const e = await file(p)
      if (e.compression === undefined) return await view.read(e, offset, offset + length)
      const r = readerOf()
      const buf = Buffer.allocUnsafe(Math.max(0, Math.min(length, e.size! - offset)))
      if (buf.length === 0) return buf
      const h = r.open()
      try {
        let n = 0
        while (n < buf.length) {
          const got = await r.read(e, h, buf.subarray(n), buf.length - n, offset + n)
          if (got === 0) break
          n += got
        }
        return n === buf.length ? buf : buf.subarray(0, n)
      } finally { r.release(h) }
    },
    close: async () => { try { await reader?.close() } finally { await set.close() } },
  }
}
