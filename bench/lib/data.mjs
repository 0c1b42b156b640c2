// Test data, seeded so that every run packs the same bytes: one large random file plus many small random files, from
// AES-128-CTR of zeros (node:crypto, AES-NI: GB/s, unlike /dev/urandom); generated text (logs, CSV, JSON lines).
import { createCipheriv, createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { MiB } from './sys.mjs'

const CHUNK = 8 * MiB

class RandomStream {
  constructor (seed) {
    const k = createHash('sha256').update(`packer-bench:${seed}`).digest()
    this.cipher = createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32))
    this.zeros = Buffer.alloc(CHUNK)
  }

  /** n random bytes (n ≤ CHUNK), a fresh buffer */
  next (n) {
    return this.cipher.update(this.zeros.subarray(0, n))
  }
}

/** Small deterministic PRNG for file sizes (mulberry32). */
function prng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function treeSpec (full, tiny = false) {
  if (tiny) return { bigBytes: 2 ** 26, smallCount: 200, smallTotal: 2 ** 23, perDir: 100, seed: 1 }
  // The tree: 4 GiB = one 3 GiB file + 20,000 small files (1 GiB, i.e. 52 KiB on average).
  // Quick mode: the same shape at 1/4 scale on the big file, 1/4 of the small files.
  return full
    ? { bigBytes: 3 * 2 ** 30, smallCount: 20000, smallTotal: 2 ** 30, perDir: 100, seed: 1 }
    : { bigBytes: 2 ** 30, smallCount: 5000, smallTotal: 2 ** 28, perDir: 100, seed: 1 }
}

/**
 * The compression case's trees: generated text (`textBytes`) and random files (a makeTree spec), small enough for
 * quick mode to stay under a minute on 2 cores.
 */
export function compressSpec (full, tiny = false) {
  if (tiny) return { textBytes: 8 * MiB, random: { bigBytes: 4 * MiB, smallCount: 50, smallTotal: 4 * MiB, perDir: 100, seed: 2 } }
  return full
    ? { textBytes: 512 * MiB, random: { bigBytes: 384 * MiB, smallCount: 2000, smallTotal: 128 * MiB, perDir: 100, seed: 2 } }
    : { textBytes: 48 * MiB, random: { bigBytes: 32 * MiB, smallCount: 200, smallTotal: 16 * MiB, perDir: 100, seed: 2 } }
}

/** Sizes of the small files: uniform in [1, 2·mean), scaled so that they sum exactly to smallTotal. */
function smallSizes ({ smallCount, smallTotal, seed }) {
  const rnd = prng(seed)
  const raw = Array.from({ length: smallCount }, () => 1 + rnd() * 2)
  const sum = raw.reduce((a, b) => a + b, 0)
  const sizes = raw.map((r) => Math.max(1, Math.floor((r / sum) * smallTotal)))
  let diff = smallTotal - sizes.reduce((a, b) => a + b, 0)
  for (let i = 0; diff !== 0; i = (i + 1) % sizes.length) {
    const d = diff > 0 ? 1 : -1
    if (sizes[i] + d >= 1) { sizes[i] += d; diff -= d }
  }
  return sizes
}

/**
 * Makes (or reuses, if its marker matches spec) the tree in dir:
 *   dir/big.bin                           spec.bigBytes random bytes
 *   dir/small/dNNN/fNNNNN.bin             spec.smallCount random files, spec.perDir per directory
 * Returns { files, bytes, reused, seconds }.
 */
export async function makeTree (dir, spec) {
  const marker = `${dir}.json`
  const want = JSON.stringify(spec)
  try {
    if ((await fs.readFile(marker, 'utf8')) === want) {
      const sizes = smallSizes(spec)
      return { files: 1 + sizes.length, bytes: spec.bigBytes + spec.smallTotal, reused: true, seconds: 0 }
    }
  } catch {}
  await fs.rm(marker, { force: true })
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(path.join(dir, 'small'), { recursive: true })
  const t0 = performance.now()
  const rs = new RandomStream(spec.seed)
  const fh = await fs.open(path.join(dir, 'big.bin'), 'w')
  for (let off = 0; off < spec.bigBytes; off += CHUNK) {
    await fh.write(rs.next(Math.min(CHUNK, spec.bigBytes - off)))
  }
  await fh.close()
  const sizes = smallSizes(spec)
  let pool = Buffer.alloc(0)
  let poolOff = 0
  for (let i = 0; i < sizes.length; i++) {
    const d = path.join(dir, 'small', `d${String(Math.floor(i / spec.perDir)).padStart(3, '0')}`)
    if (i % spec.perDir === 0) await fs.mkdir(d, { recursive: true })
    const n = sizes[i]
    const parts = []
    let need = n
    while (need > 0) {
      if (poolOff >= pool.length) { pool = rs.next(CHUNK); poolOff = 0 }
      const take = Math.min(need, pool.length - poolOff)
      parts.push(pool.subarray(poolOff, poolOff + take))
      poolOff += take
      need -= take
    }
    await fs.writeFile(path.join(d, `f${String(i).padStart(5, '0')}.bin`), parts.length === 1 ? parts[0] : Buffer.concat(parts))
  }
  await fs.writeFile(marker, want)
  return { files: 1 + sizes.length, bytes: spec.bigBytes + spec.smallTotal, reused: false, seconds: (performance.now() - t0) / 1000 }
}

/** A directory holding one sparse file of `bytes` (all holes: reads as zeros, costs no disk). */
export async function makeSparseTree (dir, bytes) {
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(dir, { recursive: true })
  const fh = await fs.open(path.join(dir, 'sparse.img'), 'w')
  await fh.truncate(bytes)
  await fh.close()
  return { files: 1, bytes }
}

// A seeded generator (xorshift) so every run sees the same generated files.
function rng (seed) {
  let s = seed >>> 0 || 1
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32 }
}

/**
 * `size` bytes of generated text of a kind: 'log' (web server lines), 'csv' (sensor rows) or 'jsonl' (events), with
 * names picked from `words`, seeded: compressible as such files are (~3–6× at zstd's fast levels), not 100×.
 */
export function generatedText (kind, size, words, seed) {
  const r = rng(seed)
  const pick = (a) => a[Math.floor(r() * a.length)]
  const parts = []
  let n = 0
  let t = Date.UTC(2024, 0, 1)
  const levels = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR']
  const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE']
  while (n < size) {
    t += Math.floor(r() * 2000)
    let line
    if (kind === 'log') {
      line = `${new Date(t).toISOString()} ${pick(levels)} [worker-${Math.floor(r() * 16)}] ${pick(methods)} /${pick(words)}/${pick(words)} ` +
        `${r() < 0.9 ? 200 : 404} ${Math.floor(r() * 100000)} bytes ${(r() * 300).toFixed(1)}ms ip=10.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)} user=${pick(words)}\n`
    } else if (kind === 'csv') {
      line = `${n},${new Date(t).toISOString()},${(r() * 180 - 90).toFixed(6)},${(r() * 360 - 180).toFixed(6)},${(r() * 1000).toFixed(2)},${pick(words)},${pick(words)},${Math.floor(r() * 1e9)}\n`
    } else {
      line = JSON.stringify({ id: n, time: new Date(t).toISOString(), name: pick(words), tags: [pick(words), pick(words)], value: Math.floor(r() * 1e6), ok: r() < 0.95 }) + '\n'
    }
    parts.push(line)
    n += line.length
  }
  return Buffer.from(parts.join('')).subarray(0, size)
}

/** Words for generated text that does not depend on the machine. */
const WORDS = ('alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec ' +
  'romeo sierra tango uniform victor whiskey xray yankee zulu account archive backup bucket cache checkout cluster ' +
  'config customer dataset deploy device export gateway invoice journal ledger metrics node order payment profile ' +
  'query report sample search session shard sensor storage upload user volume worker').split(' ')

/**
 * Makes (or reuses, if its marker matches) a tree of about `bytes` of generated text in dir: log, CSV and JSON-lines
 * files in turn, dir/tNN/NNNN.{log,csv,jsonl}, most of 4–64 KiB, one in ten of 1–8 MiB (seeded sizes), each file
 * its own text (seeded by its number). Returns { files, bytes, reused, seconds }.
 */
export async function makeTextTree (dir, bytes) {
  const marker = `${dir}.json`
  const want = JSON.stringify({ text: bytes })
  const sizes = []
  const rnd = prng(7)
  for (let total = 0; total < bytes;) {
    const n = Math.min(bytes - total, sizes.length % 10 === 9 ? Math.floor(MiB + rnd() * 7 * MiB) : Math.floor(4096 + rnd() * 60 * 1024))
    sizes.push(n)
    total += n
  }
  try {
    if ((await fs.readFile(marker, 'utf8')) === want) return { files: sizes.length, bytes, reused: true, seconds: 0 }
  } catch {}
  await fs.rm(marker, { force: true })
  await fs.rm(dir, { recursive: true, force: true })
  const t0 = performance.now()
  const kinds = ['log', 'csv', 'jsonl']
  for (const [i, n] of sizes.entries()) {
    const d = path.join(dir, `t${String(Math.floor(i / 100)).padStart(2, '0')}`)
    if (i % 100 === 0) await fs.mkdir(d, { recursive: true })
    const kind = kinds[i % kinds.length]
    await fs.writeFile(path.join(d, `${String(i).padStart(4, '0')}.${kind}`), generatedText(kind, n, WORDS, i + 1))
  }
  await fs.writeFile(marker, want)
  return { files: sizes.length, bytes, reused: false, seconds: (performance.now() - t0) / 1000 }
}
