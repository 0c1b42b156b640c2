import { PackerError } from '../errors.js'
import { decodePath } from './stored-path.js'
import { parseEntryFields, tableError, type Json, type TableEntry } from './table-entry.js'

/**
 * The version-1 file table (read, never written): one JSON Lines file, a header line, then one line per entry in
 * depth-first order with its full path. See docs/FORMAT.md §12. It is parsed whole: version 1 had no other way.
 */
export interface TableHeader {
  /** Identity of the set's own X25519 key, when the set is protected by a passphrase (see FORMAT.md). */
  setIdentity?: string
}

function parseHeaderLine (o: Json, where: string): TableHeader {
  if (o.table !== 'packer-file-table') tableError(where, 'first line is not a packer file table header')
  if (o.version !== 1) {
    throw new PackerError('FORMAT', `${where}: file table version ${String(o.version)} is not supported by this packer (it reads version 1 here); upgrade packer`)
  }
  if (o.setIdentity !== undefined && typeof o.setIdentity !== 'string') tableError(where, "'setIdentity' is not a string")
  return { setIdentity: o.setIdentity as string | undefined }
}

/** One JSON Lines line as an object, or a FORMAT error naming it. */
export function parseJsonLine (line: string, where: string): Json {
  let o: unknown
  try { o = JSON.parse(line) } catch { tableError(where, 'not valid JSON') }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) tableError(where, 'not a JSON object')
  return o as Json
}

/** Parses a whole version-1 file table. `where` names its source in errors. Validates every field and path. */
export function parseTableV1 (text: string, where: string, carCount: number): { header: TableHeader, entries: TableEntry[] } {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) tableError(where, 'it is empty')
  const header = parseHeaderLine(parseJsonLine(lines[0], `${where} line 1`), where)
  const entries: TableEntry[] = []
  const seen = new Set<string>()
  const dirs = new Set<string>()
  for (let i = 1; i < lines.length; i++) {
    const at = `${where} line ${i + 1}`
    const o = parseJsonLine(lines[i], at)
    const e = parseEntryFields(o, decodePath(o, at), at, carCount, 1)
    const key = e.path.toString('latin1')
    if (seen.has(key)) tableError(at, 'a path appears twice')
    // A parent must be a directory listed earlier: a path can never lead through a stored symlink or file.
    const slash = key.lastIndexOf('/')
    if (slash >= 0 && !dirs.has(key.slice(0, slash))) {
      throw new PackerError('UNSAFE_PATH', `${at}: the parent of ${JSON.stringify(e.path.toString('utf8'))} is not a directory of the set; refusing this set`)
    }
    seen.add(key)
    if (e.type === 'dir') dirs.add(key)
    entries.push(e)
  }
  return { header, entries }
}
