// `--compress auto`'s level by measurement (issue 13): every file of a tree through packer's own codec, as pack
// stores it (1 MiB frames, seek table; auto's rule: the first MiB must shrink by 10 %), for several rules of sample
// level and frame level: the files' stored streams in all (the "file payload") ÷ one zstd -3 frame per file (what
// `zstd -3` of each file stores, to within its 4-byte-smaller header), files compressed, and CPU seconds of
// compression on this thread. Then what compressing small files costs, per file by size, at levels 1 and 3.
// Run by hand after `npm run build`: node bench/auto-level.mjs [DIR …] (default /usr/share/{doc,vim,perl}).
import fs from 'node:fs'
import path from 'node:path'
import { MIN_SAVING, compressBound, seekTableSize, zstdCodec } from '../dist/compress/zstd-seekable.js'

const z = zstdCodec()
if (z === null) throw new Error('no zstd in this build')
const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['doc', 'vim', 'perl'].map((d) => `/usr/share/${d}`).filter((d) => fs.existsSync(d))
const files = []
const walk = (d) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name)
    if (e.isDirectory()) walk(p)
    else if (e.isFile()) files.push(fs.readFileSync(p))
  }
}
dirs.forEach(walk)
const total = files.reduce((a, b) => a + b.length, 0)
const M = 1 << 20
const dst = new Uint8Array(compressBound(M))
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }

/** The stored stream of b, all frames at `level`. */
function stream (b, level) {
  let s = 0
  let n = 0
  for (let at = 0; at < b.length; at += M, n++) s += z.compressFrame(b.subarray(at, at + M), level, dst)
  return s + seekTableSize(n)
}
/** What pack stores for b with a sample at `sample` and frames at `level`: [bytes, compressed?]. */
function auto (b, sample, level) {
  if (b.length === 0) return [0, false]
  const first = b.subarray(0, M)
  const f = z.compressFrame(first, sample, dst)
  if (f + seekTableSize(1) > first.length * (1 - MIN_SAVING)) return [b.length, false]
  let s
  if (sample === level) {
    s = f
    for (let at = M; at < b.length; at += M) s += z.compressFrame(b.subarray(at, at + M), level, dst)
    s += seekTableSize(Math.ceil(b.length / M))
  } else s = stream(b, level)
  return s < b.length ? [s, true] : [b.length, false]
}
const one = (b) => b.length === 0 ? 0 : z.compressFrame(b, 3, new Uint8Array(compressBound(b.length)))

console.log(`${dirs.join(' ')}: ${files.length} files, ${(total / M).toFixed(1)} MiB; ${z.name}`)
let reference = 0
for (const [name, fn] of [['zstd -3, one frame per file', (b) => [one(b), true]], ['auto, sample 1, frames 1', (b) => auto(b, 1, 1)],
  ['auto, sample 1, frames 2', (b) => auto(b, 1, 2)], ['auto, sample 1, frames 3', (b) => auto(b, 1, 3)], ['auto, sample 3, frames 3', (b) => auto(b, 3, 3)]]) {
  for (const b of files.slice(0, 500)) fn(b) // warm up
  const t0 = cpu()
  let stored = 0
  let compressed = 0
  for (const b of files) { const [n, c] = fn(b); stored += n; if (c) compressed++ }
  const t = cpu() - t0
  if (reference === 0) reference = stored
  console.log(`${name.padEnd(28)} ${(stored / M).toFixed(2).padStart(8)} MiB  ${(stored / reference).toFixed(4)} × zstd -3  ${String(compressed).padStart(6)} files compressed  ${t.toFixed(2)} CPU-s`)
}
console.log('compressing small files, CPU per file (20 passes):')
for (const [lo, hi] of [[0, 64], [64, 256], [256, 1024], [1024, 4096], [4096, 16384]]) {
  const some = files.filter((b) => b.length > lo && b.length <= hi)
  if (some.length === 0) continue
  const out = []
  for (const level of [1, 3]) {
    const t0 = cpu()
    for (let r = 0; r < 20; r++) for (const b of some) z.compressFrame(b, level, dst)
    out.push(`level ${level} ${((cpu() - t0) * 1e6 / 20 / some.length).toFixed(1)} µs`)
  }
  const saving = some.filter((b) => { const f = z.compressFrame(b, 3, dst); return f + seekTableSize(1) <= b.length * (1 - MIN_SAVING) }).length
  console.log(`  (${lo}, ${hi}] bytes: ${some.length} files, ${saving} worth compressing; ${out.join(', ')}`)
}
