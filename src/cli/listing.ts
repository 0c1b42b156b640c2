import type { PieceInfo, SetEntry } from '../index.js'

function modeString (e: SetEntry): string {
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

export function lsLine (e: SetEntry, long: boolean): string {
  const name = e.path + (e.type === 'dir' ? '/' : '')
  if (!long) return name
  const size = String(e.type === 'file' ? e.size : 0).padStart(12)
  const link = e.type === 'symlink' ? ` -> ${e.target}` : ''
  return `${modeString(e)} ${size} ${formatMtime(e.mtimeNs)} ${name}${link}`
}

export function lsJson (e: SetEntry): Record<string, unknown> {
  return {
    path: e.path,
    type: e.type,
    mode: '0' + e.mode.toString(8),
    mtime: formatMtime(e.mtimeNs),
    ...(e.type === 'file' ? { size: e.size, cid: e.cid, cars: e.cars } : {}),
    ...(e.type === 'symlink' ? { target: e.target } : {}),
  }
}

export const PIECES_COLUMNS = ['car_file', 'car_size', 'piece_cid', 'piece_cid_v2', 'piece_size', 'payload_cid', 'blocks']

export function piecesRows (ps: PieceInfo[]): Array<Record<string, string | number>> {
  return ps.map((c) => ({
    car_file: c.carFile, car_size: c.carSize, piece_cid: c.pieceCid, piece_cid_v2: c.pieceCidV2, piece_size: c.pieceSize, payload_cid: c.payloadCid, blocks: c.blocks,
  }))
}

export function piecesCsv (ps: PieceInfo[]): string {
  return [PIECES_COLUMNS.join(','), ...piecesRows(ps).map((r) => PIECES_COLUMNS.map((c) => r[c]).join(','))].join('\n') + '\n'
}
