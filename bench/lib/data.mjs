// Test data: one large random file plus many small random files, from AES-128-CTR of zeros (node:crypto, AES-NI:
// GB/s, unlike /dev/urandom), seeded so that every run packs the same bytes.
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
