import { isUtf8 } from 'node:buffer'
import { PackerError } from '../errors.js'

/**
 * Paths inside a set are byte strings (POSIX names are bytes, not text). In the file table a path is stored as
 * `path` (a string) when its bytes are valid UTF-8, else as `pathB64` (standard base64 of the exact bytes).
 * Components are separated by '/', the archive root is the empty path.
 */
export { isUtf8 } from 'node:buffer'

export interface EncodedPath { path?: string, pathB64?: string }

export function encodePath (bytes: Buffer): EncodedPath {
  return isUtf8(bytes) ? { path: bytes.toString('utf8') } : { pathB64: bytes.toString('base64') }
}

/** Decodes and validates a stored path: never absolute, no '.', '..' or empty components, no NUL. */
export function decodePath (e: EncodedPath, where: string): Buffer {
  let bytes: Buffer
  if (typeof e.path === 'string' && e.pathB64 === undefined) bytes = Buffer.from(e.path, 'utf8')
  else if (typeof e.pathB64 === 'string' && e.path === undefined) bytes = Buffer.from(e.pathB64, 'base64')
  else throw new PackerError('FORMAT', `${where}: an entry has no valid 'path' or 'pathB64'`)
  assertSafePath(bytes, where)
  return bytes
}

export function assertSafePath (bytes: Buffer, where: string): void {
  const shown = (): string => JSON.stringify(bytes.toString('utf8'))
  if (bytes.length === 0) throw new PackerError('UNSAFE_PATH', `${where}: an entry has an empty path`)
  if (bytes.includes(0)) throw new PackerError('UNSAFE_PATH', `${where}: path ${shown()} contains a NUL byte; refusing this set`)
  if (bytes[0] === 0x2f) throw new PackerError('UNSAFE_PATH', `${where}: path ${shown()} is absolute; refusing this set`)
  // latin1 maps each byte to one char, so '/' and '.' are found exactly, whatever the encoding of the rest.
  for (const part of bytes.toString('latin1').split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new PackerError('UNSAFE_PATH', `${where}: path ${shown()} could escape the destination; refusing this set`)
    }
  }
}

export function splitPath (bytes: Buffer): Buffer[] {
  const parts: Buffer[] = []
  let start = 0
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) { parts.push(bytes.subarray(start, i)); start = i + 1 }
  }
  return parts
}

/** A path for messages: UTF-8 where possible, invalid bytes shown as \xNN. */
export function displayPath (bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8')
  let out = ''
  for (const b of bytes) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`
  return out
}
