import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'

/**
 * manifest.json: the small, always-readable description of a CAR set. It holds what a deal tool needs (every CAR
 * with its piece CID and padded size) and where the rest is (file table, block index). Nothing in it is secret: for
 * an encrypted set it carries no names, sizes of files, keys or metadata. See docs/FORMAT.md, "manifest.json".
 */
/** The version pack writes; version 1 is still read (FORMAT.md §12). */
export const MANIFEST_VERSION = 2
export const MANIFEST_FILE = 'manifest.json'

export interface CarRecord {
  /** File name inside the set directory: `<pieceCid>.car`. */
  file: string
  size: number
  /** The CAR header's only root: the CID of the first block in the CAR. */
  root: string
  pieceCid: string
  pieceCidV2: string
  /** Padded piece size, as deals need it. */
  pieceSize: number
  blocks: number
}

export interface EncryptionInfo {
  scheme: 'age-v1'
  /** 'hidden': the UnixFS tree is flat with opaque names; 'plain': the UnixFS tree mirrors the source. */
  names: 'hidden' | 'plain'
  /** Stanza types the file table is encrypted to (e.g. X25519, ssh-rsa, scrypt). */
  recipients: string[]
}

export interface Manifest {
  format: 'packer-car-set'
  /** 2, or 1 for a set written by an older packer. */
  version: number
  createdBy: string
  /** Root CID of the UnixFS tree. */
  root: string
  /** Version 2: the source was a single file, the root is that file. */
  single?: boolean
  /**
   * The set ID: version 2, the CID of the table index (it pins every table chunk, which pin every file); version 1,
   * of the whole file table, which also has a copy beside the manifest (`file`, `size`).
   */
  table: { cid: string, file?: string, size?: number }
  /** CID of the dag-cbor set descriptor, the last block of the set (FORMAT.md, "Self-description"). */
  descriptor: string
  index: { file: string, blocks: number }
  encryption: EncryptionInfo | null
  binSize: number
  cars: CarRecord[]
}

export function setIdOf (m: Manifest): string { return m.table.cid }

function bad (where: string, msg: string): never {
  throw new PackerError('FORMAT', `${where}: ${msg}; the manifest is damaged or not from packer (restore it from your copy, or remake it from the CARs with 'packer rebuild --force DIR')`)
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0
const isNat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const SAFE_NAME = /^[A-Za-z0-9._-]+$/

/** Validates every field: nothing else in packer parses a manifest. */
export function parseManifest (text: string, where: string): Manifest {
  let o: Record<string, any>
  try { o = JSON.parse(text) } catch { bad(where, 'not valid JSON') }
  if (typeof o !== 'object' || o === null) bad(where, 'not a JSON object')
  if (o.format !== 'packer-car-set') bad(where, "no 'format': \"packer-car-set\"")
  if (o.version !== 1 && o.version !== MANIFEST_VERSION) {
    throw new PackerError('FORMAT', `${where}: manifest version ${JSON.stringify(o.version)} is not supported by this packer (it reads versions 1 and ${MANIFEST_VERSION}); upgrade packer`)
  }
  if (!isStr(o.root) || !isStr(o.descriptor)) bad(where, "'root' or 'descriptor' is missing")
  const t = o.table
  if (typeof t !== 'object' || t === null || !isStr(t.cid)) bad(where, "'table' is not valid")
  if (o.version === 1 && (!isStr(t.file) || !SAFE_NAME.test(t.file) || !isNat(t.size))) bad(where, "'table' is not valid")
  if (o.version === 2 && typeof o.single !== 'boolean') bad(where, "'single' is not valid")
  const ix = o.index
  if (typeof ix !== 'object' || ix === null || !isStr(ix.file) || !SAFE_NAME.test(ix.file) || !isNat(ix.blocks)) bad(where, "'index' is not valid")
  if (!isNat(o.binSize)) bad(where, "'binSize' is not valid")
  const enc = o.encryption
  if (enc !== null && (typeof enc !== 'object' || enc.scheme !== 'age-v1' || (enc.names !== 'hidden' && enc.names !== 'plain') ||
      !Array.isArray(enc.recipients) || !enc.recipients.every(isStr))) bad(where, "'encryption' is not valid")
  if (!Array.isArray(o.cars) || o.cars.length === 0) bad(where, "'cars' is empty")
  const names = new Set<string>()
  for (const [i, c] of o.cars.entries()) {
    if (typeof c !== 'object' || c === null || !isStr(c.file) || !SAFE_NAME.test(c.file) || !isNat(c.size) || !isStr(c.root) ||
        !isStr(c.pieceCid) || !isStr(c.pieceCidV2) || !isNat(c.pieceSize) || !isNat(c.blocks)) bad(where, `cars[${i}] is not valid`)
    if (names.has(c.file)) bad(where, `cars[${i}] repeats the file name ${c.file}`)
    names.add(c.file)
  }
  return o as Manifest
}

export async function readManifest (dir: string): Promise<Manifest> {
  const file = path.join(dir, MANIFEST_FILE)
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new PackerError('FORMAT', `${file} not found: '${dir}' is not a packer set (give the directory that pack wrote)`, { subject: file })
    if (isErrno(err, 'ENOTDIR')) throw new PackerError('FORMAT', `${dir} is not a directory: give the directory that pack wrote`, { subject: dir })
    throw new PackerError('FORMAT', `cannot read ${file}: ${(err as Error).message}`, { subject: file, cause: err })
  }
  return parseManifest(text, file)
}

export function encodeManifest (m: Manifest): string {
  return JSON.stringify(m, null, 2) + '\n'
}
