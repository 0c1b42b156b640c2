import type { TableEntry } from '../format/file-table.js'
import type { Manifest } from '../format/manifest.js'
import { displayPath } from '../format/stored-path.js'

function modeString (e: TableEntry): string {
  const t = e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : '-'
  const m = e.mode
  const bits = 'rwxrwxrwx'.split('').map((c, i) => (m & (0o400 >> i)) !== 0 ? c : '-')
  if (m & 0o4000) bits[2] = bits[2] === 'x' ? 's' : 'S'
  if (m & 0o2000) bits[5] = bits[5] === 'x' ? 's' : 'S'
  if (m & 0o1000) bits[8] = bits[8] === 'x' ? 't' : 'T'
  return t + bits.join('')
}

/** mtime as RFC 3339 UTC with nanoseconds. */
export function formatMtime (ns: bigint): string {
  const sec = ns / 1_000_000_000n
  const frac = ns % 1_000_000_000n
  const iso = new Date(Number(sec) * 1000).toISOString().slice(0, 19)
  return `${iso}.${frac.toString().padStart(9, '0')}Z`
}

export function lsLine (e: TableEntry, long: boolean): string {
  const name = displayPath(e.path) + (e.type === 'dir' ? '/' : '')
  if (!long) return name
  const size = String(e.type === 'file' ? e.size : 0).padStart(12)
  const link = e.type === 'symlink' ? ` -> ${displayPath(e.target!)}` : ''
  return `${modeString(e)} ${size} ${formatMtime(e.mtimeNs)} ${name}${link}`
}

export function lsJson (e: TableEntry): Record<string, unknown> {
  return {
    path: displayPath(e.path),
    type: e.type,
    mode: '0' + e.mode.toString(8),
    mtime: formatMtime(e.mtimeNs),
    ...(e.type === 'file' ? { size: e.size, cid: e.cid, cars: e.cars } : {}),
    ...(e.type === 'symlink' ? { target: displayPath(e.target!) } : {}),
  }
}

export const PIECES_COLUMNS = ['car_file', 'car_size', 'piece_cid', 'piece_cid_v2', 'piece_size', 'payload_cid', 'blocks']

export function piecesRows (m: Manifest): Array<Record<string, string | number>> {
  return m.cars.map((c) => ({
    car_file: c.file, car_size: c.size, piece_cid: c.pieceCid, piece_cid_v2: c.pieceCidV2, piece_size: c.pieceSize, payload_cid: c.root, blocks: c.blocks,
  }))
}

export function piecesCsv (m: Manifest): string {
  return [PIECES_COLUMNS.join(','), ...piecesRows(m).map((r) => PIECES_COLUMNS.map((c) => r[c]).join(','))].join('\n') + '\n'
}
