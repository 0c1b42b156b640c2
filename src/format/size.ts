import { PackerError } from '../errors.js'

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
}

/** Parses `32000000000`, `31.5GiB`, `64MiB`, `1GB` into bytes (whole bytes, rounded down). */
export function parseSize (text: string, option = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined
  if (!m || unit === undefined) {
    throw new PackerError('USAGE', `${option}: cannot read '${text}' as a size; use bytes or a unit such as 64MiB, 31.5GiB, 32GB`)
  }
  const bytes = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes)) throw new PackerError('USAGE', `${option}: '${text}' is too large`)
  return bytes
}

/** `1.5 GiB`-style rendering for messages and listings. */
export function formatSize (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let i = 0
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i++ }
  return i === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`
}
