/** Inclusive byte positions, as in a Content-Range header. */
export interface ByteRange { start: number, end: number }

/**
 * A request's `Range` header against a resource of `size` bytes (RFC 9110 §14): one range, or 'unsatisfiable' (answer
 * 416), or null to send the whole resource (no header, a unit other than bytes, several ranges, or a header that does
 * not parse, all of which a server may ignore).
 */
export function parseByteRange (header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (header === undefined) return null
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header)
  if (m === null || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    // a suffix: the last N bytes
    const n = Number(m[2])
    if (n === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (m[2] !== '' && Number(m[2]) < start) return null
  if (start >= size) return 'unsatisfiable'
  return { start, end }
}
