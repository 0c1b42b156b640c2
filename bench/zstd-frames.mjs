#!/usr/bin/env node
// How packer's zstd seekable streams should be cut and at what level (src/compress/zstd-seekable.ts), on a mixed real
// corpus: the regular files of /usr/share (text, man pages already gzipped, images, jars, fonts…), the shared
// libraries of /usr/lib/x86_64-linux-gnu (binaries), and generated log, CSV and JSON-lines files (seeded).
//
//   npm run build && node bench/zstd-frames.mjs [--limit 400MiB] [--gen 32MiB] [--json]
//   PACKER_NO_NATIVE=1 node bench/zstd-frames.mjs …     the same with node:zlib's zstd (Node ≥ 22.15)
//
// Prints, on one core:
//   ratio      stored size vs the files' size, per class, for whole-file frames (the reference: one frame per file,
//              what `zstd -3 FILE` does) and for frames of 64 KiB, 256 KiB and 1 MiB, at levels 1 and 3
//   speed      compression and decompression MB/s per core through the codec (1 MiB frames)
//   frame      CPU time to decompress one frame, by frame size: what a 4 KiB random read costs
//   auto       the auto rule (first MiB shrinks ≥ 10 % at level 1): share of bytes compressed, what it saves, its
//              cost on incompressible files; whether level 3 would decide otherwise
//   cli        `zstd -b1`/`-b3` on the generated log file (the reference implementation, one thread)
// Times are this process's CPU time (user + system, process.cpuUsage), not wall time: the machines are shared, and a
// core busy elsewhere must not count against zstd. MB = 10^6 bytes, MiB = 2^20.
import { spawnSync } from 'node:child_process'
import { createCipheriv } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generatedText } from './lib/data.mjs'

const args = process.argv.slice(2)
const arg = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def }
const MiB = 1 << 20
const sizeArg = (s) => Math.round(Number(/^(\d+(?:\.\d+)?)MiB$/i.exec(s)?.[1] ?? NaN) * MiB)
const LIMIT = sizeArg(arg('limit', '400MiB'))
const GEN = sizeArg(arg('gen', '32MiB'))
if (!(LIMIT > 0 && GEN > 0)) { console.error('usage: node bench/zstd-frames.mjs [--limit NMiB] [--gen NMiB] [--json]'); process.exit(2) }

const z = await import('../dist/compress/zstd-seekable.js')
const codec = z.zstdCodec()
if (codec === null) { console.error(`no zstd: ${z.zstdMissingReason()}`); process.exit(1) }

// ---------------------------------------------------------------- corpus
const CLASSES = ['text', 'compressed', 'binary', 'generated']
const COMPRESSED = /\.(gz|bz2|xz|zst|zip|jar|png|jpe?g|gif|webp|woff2?|ogg|mp3|deb|tgz)$/i

/** CPU seconds this process spends in `fn`. */
function cpu (fn) {
  const start = process.cpuUsage()
  fn()
  const d = process.cpuUsage(start)
  return (d.user + d.system) / 1e6
}

function walk (root, skip) {
  const files = []
  for (const rel of fs.readdirSync(root, { recursive: true })) {
    const p = path.join(root, rel)
    if (skip !== undefined && p.startsWith(skip)) continue
    let st
    try { st = fs.lstatSync(p) } catch { continue }
    if (st.isFile() && st.size > 0) files.push({ path: p, size: st.size })
  }
  return files.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
}

function isElf (bytes) { return bytes.length > 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46 }

/** About `limit` bytes of files: every n-th of the sorted list, so every part of the tree is in. */
function take (files, limit) {
  const out = []
  let total = 0
  const step = Math.max(1, Math.ceil(files.reduce((s, f) => s + f.size, 0) / limit))
  for (let i = 0; i < files.length && total < limit; i += step) {
    let bytes
    try { bytes = fs.readFileSync(files[i].path) } catch { continue }
    const cls = COMPRESSED.test(files[i].path) ? 'compressed' : isElf(bytes) ? 'binary' : 'text'
    out.push({ name: files[i].path, bytes, cls })
    total += bytes.length
  }
  return out
}

const t0 = Date.now()
const share = walk('/usr/share', '/usr/share/package-lists') // package-lists: this workplace's, not Debian's
const libs = walk('/usr/lib/x86_64-linux-gnu').filter((f) => /\.so(\.\d+)*$/.test(f.path))
const corpus = [...take(share, LIMIT * 0.8), ...take(libs, LIMIT * 0.2)]
const words = [...new Set(share.map((f) => path.basename(f.path).replace(/\W.*$/, '')).filter((w) => w.length > 2))]
for (const kind of ['log', 'csv', 'jsonl']) corpus.push({ name: `generated.${kind}`, bytes: generatedText(kind, GEN, words, kind.length * 7919), cls: 'generated' })
const random = Buffer.alloc(16 * MiB)
createCipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16)).update(random).copy(random)
const bytesOf = (cls) => corpus.filter((f) => cls === undefined || f.cls === cls).reduce((s, f) => s + f.bytes.length, 0)
const loadS = (Date.now() - t0) / 1000

// ---------------------------------------------------------------- ratio per frame size and level
const scratch = new Uint8Array(z.compressBound(64 * MiB))
/** Stored size of `bytes` as a seekable stream of `frame`-byte frames (Infinity: one frame for the whole file). */
function storedSize (bytes, frame, level) {
  if (frame === Infinity) {
    const dst = bytes.length <= scratch.length / 1.01 ? scratch : new Uint8Array(z.compressBound(bytes.length))
    return codec.compressFrame(bytes, level, dst) + z.seekTableSize(1)
  }
  let total = 0
  let frames = 0
  for (let at = 0; at < bytes.length; at += frame, frames++) total += codec.compressFrame(bytes.subarray(at, at + frame), level, scratch)
  return total + z.seekTableSize(frames)
}

const FRAMES = [Infinity, 1 * MiB, 256 << 10, 64 << 10]
const frameName = (f) => f === Infinity ? 'whole file' : f >= MiB ? `${f / MiB} MiB` : `${f >> 10} KiB`
const ratio = []
for (const level of [1, 3]) {
  for (const frame of FRAMES) {
    const row = { level, frame: frameName(frame) }
    const stored = {}
    let inBig = 0
    let storedBig = 0
    const seconds = cpu(() => {
      for (const f of corpus) {
        const s = storedSize(f.bytes, frame, level)
        stored[f.cls] = (stored[f.cls] ?? 0) + s
        if (f.bytes.length >= MiB) { inBig += f.bytes.length; storedBig += s }
      }
    })
    for (const cls of CLASSES) row[cls] = bytesOf(cls) / stored[cls]
    row.all = bytesOf() / Object.values(stored).reduce((a, b) => a + b, 0)
    row['files ≥ 1 MiB'] = inBig / storedBig
    row['MB/s'] = bytesOf() / seconds / 1e6
    ratio.push(row)
  }
}

// ---------------------------------------------------------------- speed per core, 1 MiB frames
function speed (bytes, level) {
  const frames = []
  const dst = new Uint8Array(z.compressBound(bytes.length))
  let used = 0
  const cs = cpu(() => {
    for (let at = 0; at < bytes.length; at += MiB) {
      const plain = bytes.subarray(at, at + MiB)
      const frame = z.compressFrame(codec, plain, level, dst.subarray(used))
      used += frame.length
      frames.push({ frame, at: { index: 0, compressedSize: frame.length, decompressedSize: plain.length, checksum: z.frameEntry(frame, plain.length).checksum } })
    }
  })
  const out = new Uint8Array(MiB)
  const ds = cpu(() => { for (const { frame, at } of frames) z.decompressFrame(codec, at, frame, out, 'bench') })
  return { compress: bytes.length / cs / 1e6, decompress: bytes.length / ds / 1e6, ratio: bytes.length / frames.reduce((s, f) => s + f.frame.length, 0) }
}
const mixed = Buffer.concat(corpus.filter((f) => f.cls !== 'generated').map((f) => f.bytes)).subarray(0, 256 * MiB)
const log = corpus.find((f) => f.name === 'generated.log').bytes
const speeds = []
for (const level of [1, 3]) {
  for (const [data, bytes] of [['mixed corpus', mixed], ['generated log', log], ['random', random]]) speeds.push({ level, data, ...speed(bytes, level) })
}

// ---------------------------------------------------------------- one frame: the cost of a 4 KiB random read
const frameCost = []
for (const frame of [64 << 10, 256 << 10, MiB]) {
  const row = { frame: frameName(frame) }
  for (const [data, bytes] of [['log', log], ['mixed', mixed.subarray(0, 64 * MiB)]]) {
    const frames = []
    for (let at = 0; at + frame <= bytes.length && frames.length < 256; at += frame) {
      const f = z.compressFrame(codec, bytes.subarray(at, at + frame), 3, scratch).slice()
      frames.push({ f, at: { index: 0, compressedSize: f.length, decompressedSize: frame, checksum: z.frameEntry(f, frame).checksum } })
    }
    const out = new Uint8Array(frame)
    const rounds = 3
    const seconds = cpu(() => { for (let round = 0; round < rounds; round++) for (const { f, at } of frames) z.decompressFrame(codec, at, f, out, 'bench') })
    row[`${data} µs`] = seconds / (rounds * frames.length) * 1e6
  }
  frameCost.push(row)
}

// ---------------------------------------------------------------- the auto rule
const sampleDst = new Uint8Array(z.compressBound(z.SAMPLE_SIZE))
const auto = { files: 0, compressed: 0, bytes: 0, bytesCompressed: 0, storedAuto: 0, storedAll: 0, disagreeL3: 0, leftAloneSeconds: 0, leftAloneFiles: 0, leftAloneMiB: 0 }
for (const f of corpus) {
  const sample = f.bytes.subarray(0, z.SAMPLE_SIZE)
  let first
  const seconds = cpu(() => { first = z.worthCompressing(codec, sample, sampleDst) })
  const l3 = codec.compressFrame(sample, 3, scratch) + z.seekTableSize(1) <= sample.length * (1 - z.MIN_SAVING)
  if (l3 !== (first !== null)) auto.disagreeL3++
  const all = storedSize(f.bytes, z.FRAME_SIZE, z.AUTO_LEVEL)
  auto.files++
  auto.bytes += f.bytes.length
  auto.storedAll += all
  if (first !== null) {
    auto.compressed++
    auto.bytesCompressed += f.bytes.length
    auto.storedAuto += all
  } else {
    auto.storedAuto += f.bytes.length
    auto.leftAloneSeconds += seconds
    auto.leftAloneFiles++
    auto.leftAloneMiB += sample.length / MiB
  }
}
const randomSamples = random.length / z.SAMPLE_SIZE
const randomMsPerSample = cpu(() => {
  for (let at = 0; at < random.length; at += z.SAMPLE_SIZE) z.worthCompressing(codec, random.subarray(at, at + z.SAMPLE_SIZE), sampleDst)
}) * 1000 / randomSamples

// ---------------------------------------------------------------- the zstd CLI, for reference
let cli = 'zstd not installed'
const logFile = path.join(os.tmpdir(), `packer-zstd-bench-${process.pid}.log`)
try {
  fs.writeFileSync(logFile, log)
  /** CPU seconds of a shell command (bash's `time`, user + system). */
  const cpuOf = (command) => {
    const r = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; time (${command}) >/dev/null`], { encoding: 'utf8' })
    const [u, s] = r.stderr.trim().split('\n').pop().split(' ').map(Number)
    return r.status === 0 ? u + s : NaN
  }
  if (spawnSync('zstd', ['--version']).status === 0) {
    const lines = []
    for (const level of [1, 3]) {
      const c = cpuOf(`zstd -q -${level} --single-thread -c ${logFile} > ${logFile}.zst`)
      const d = cpuOf(`zstd -q -d -c ${logFile}.zst`)
      lines.push(`level ${level}: compress ${(log.length / c / 1e6).toFixed(0)} MB/s, decompress ${(log.length / d / 1e6).toFixed(0)} MB/s, ratio ${(log.length / fs.statSync(`${logFile}.zst`).size).toFixed(2)} (whole file)`)
    }
    cli = lines.join('\n')
  }
} finally {
  fs.rmSync(logFile, { force: true })
  fs.rmSync(`${logFile}.zst`, { force: true })
}

// ---------------------------------------------------------------- report
const result = {
  codec: codec.name,
  node: process.version,
  cpu: os.cpus()[0]?.model,
  corpus: Object.fromEntries(CLASSES.map((c) => [c, { files: corpus.filter((f) => f.cls === c).length, MiB: +(bytesOf(c) / MiB).toFixed(1) }])),
  loadSeconds: +loadS.toFixed(1),
  ratio,
  speeds,
  frameCost,
  auto: { ...auto, randomMsPerMiBSample: randomMsPerSample },
  cli,
}
if (args.includes('--json')) {
  console.log(JSON.stringify(result, null, 2))
} else {
  const fmt = (v) => typeof v === 'number' ? (v >= 100 ? v.toFixed(0) : v.toFixed(2)) : String(v)
  const table = (title, rows) => {
    console.log(`\n${title}`)
    const cols = Object.keys(rows[0])
    console.log(`| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|`)
    for (const r of rows) console.log(`| ${cols.map((c) => fmt(r[c])).join(' | ')} |`)
  }
  console.log(`codec: ${result.codec}; node ${result.node}; ${result.cpu}; one core`)
  console.log(`corpus: ${Object.entries(result.corpus).map(([c, v]) => `${c} ${v.files} files ${v.MiB} MiB`).join(', ')}`)
  table('ratio (files / stored; stored = frames + seek table)', ratio)
  table('speed per core, 1 MiB frames (MB/s of plaintext)', speeds)
  table('CPU time to decompress one frame (level 3): the cost of a 4 KiB random read', frameCost)
  console.log(`\nauto (first MiB at level ${z.AUTO_LEVEL}, ≥ ${z.MIN_SAVING * 100} % saving): ${auto.compressed}/${auto.files} files, ` +
    `${(auto.bytesCompressed / MiB).toFixed(0)}/${(auto.bytes / MiB).toFixed(0)} MiB compressed; stored ${(auto.storedAuto / MiB).toFixed(1)} MiB ` +
    `vs ${(auto.storedAll / MiB).toFixed(1)} MiB compressing everything, ${(auto.bytes / MiB).toFixed(1)} MiB compressing nothing; ` +
    `level 3 samples decide otherwise for ${auto.disagreeL3} files`)
  console.log(`auto's cost on the ${auto.leftAloneFiles} files it leaves alone (${auto.leftAloneMiB.toFixed(1)} MiB sampled): ` +
    `${(auto.leftAloneSeconds * 1e6 / Math.max(auto.leftAloneFiles, 1)).toFixed(0)} µs per file; on random bytes: ${randomMsPerSample.toFixed(2)} ms per 1 MiB sample`)
  console.log(`\nzstd CLI (one thread) on the generated log:\n${cli}`)
}
