/**
 * Bech32 (BIP 173, the original checksum constant, not bech32m) as age uses it for `age1…` recipients and
 * `AGE-SECRET-KEY-1…` identities. Unlike BIP 173, age sets no 90-character limit.
 */
const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]

function polymod (values: number[]): number {
  let chk = 1
  for (const v of values) {
    const top = chk >>> 25
    chk = ((chk & 0x1ffffff) << 5) ^ v
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GEN[i]!
  }
  return chk >>> 0
}

function hrpExpand (hrp: string): number[] {
  const out: number[] = []
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >> 5)
  out.push(0)
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31)
  return out
}

function convertBits (data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let acc = 0
  let bits = 0
  const out: number[] = []
  const maxv = (1 << to) - 1
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!
    if (v < 0 || v >> from !== 0) return null
    acc = (acc << from) | v
    bits += from
    while (bits >= to) {
      bits -= to
      out.push((acc >> bits) & maxv)
    }
    acc &= (1 << bits) - 1
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv)
  } else if (bits >= from || ((acc << (to - bits)) & maxv) !== 0) {
    return null
  }
  return out
}

/** Encodes `data` with the human-readable part `hrp`; the result is lowercase unless `upper`. */
export function bech32Encode (hrp: string, data: Uint8Array, upper = false): string {
  const lower = hrp.toLowerCase()
  const words = convertBits(data, 8, 5, true)!
  const chk = polymod([...hrpExpand(lower), ...words, 0, 0, 0, 0, 0, 0]) ^ 1
  let s = lower + '1'
  for (const w of words) s += CHARSET[w]
  for (let i = 0; i < 6; i++) s += CHARSET[(chk >>> (5 * (5 - i))) & 31]
  return upper ? s.toUpperCase() : s
}

/** Decodes a bech32 string; null when malformed (mixed case, bad characters, bad checksum, bad padding). */
export function bech32Decode (s: string): { hrp: string; data: Buffer; upper: boolean } | null {
  const lower = s.toLowerCase()
  const upperS = s.toUpperCase()
  if (s !== lower && s !== upperS) return null
  const pos = lower.lastIndexOf('1')
  if (pos < 1 || pos + 7 > lower.length) return null
  const hrp = lower.slice(0, pos)
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i)
    if (c < 33 || c > 126) return null
  }
  const words: number[] = []
  for (let i = pos + 1; i < lower.length; i++) {
    const v = CHARSET.indexOf(lower[i]!)
    if (v < 0) return null
    words.push(v)
  }
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) return null
  const bytes = convertBits(words.slice(0, -6), 5, 8, false)
  if (bytes === null) return null
  return { hrp, data: Buffer.from(bytes), upper: s === upperS && s !== lower }
}
