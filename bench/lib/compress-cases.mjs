// Compression (issue 13) on a real tree and through the mount. Real tree: packer pack --compress auto, zstd and off
// (encrypted), per-file `zstd -3` of the same files (one zstd process, `-r --output-dir-mirror`: each file its own
// .zst), restic (repository v2, --compression auto, its default) and borg (-C zstd,3, and its default, lz4): stored
// bytes (apparent: sums of file sizes, so 46,000 small .zst files are not rounded up to 4 KiB blocks each) and time.
// `--runs` rounds (default 3), each tool once a round in an order rotated every round; medians of time and CPU.
// For packer also its files' stored payload (from the file table through the library's openSet: each file's stored
// content before encryption, the zstd stream when compressed), which the issue's goal compares with the .zst files. Mount: one large
// compressible file packed encrypted with --compress auto and with --compress off, each mounted by itself: cold
// sequential read (dd bs=1M, page cache dropped) and random 4 KiB O_DIRECT reads (p50/p99) on a fresh mount.
import { existsSync, promises as fs, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { generatedText } from './data.mjs'
import { ddSeq, randomReads, startMount, stopMount } from './mounts.mjs'
import * as packer from './packer.mjs'
import { rotate, summarizeRounds } from './real-tree-cases.mjs'
import { dropCaches, run, timed } from './sys.mjs'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const LIB = new URL('../../dist/index.js', import.meta.url).href
const rm = (p) => fs.rm(p, { recursive: true, force: true })
const PASSWORD = 'bench-password'
const MiB = 2 ** 20

/**
 * The real tree's default: in quick mode three directories of /usr/share (doc, vim, perl: 162 MiB in 7,430 files here;
 * text, man-like docs, scripts and already-gzipped changelogs), copied once into the work directory so that every
 * tool reads the same files; with --full the whole of /usr/share (675 MiB, 46,600 files here), with --tiny
 * /usr/share/perl. `--tree DIR` names any other.
 */
export function realTreeSource (opts) {
  if (opts.tree) return { dirs: [opts.tree], label: opts.tree }
  if (opts.full) return { dirs: ['/usr/share'], label: '/usr/share' }
  if (opts.tiny) return { dirs: ['/usr/share/perl'], label: '/usr/share/perl' }
  const dirs = ['doc', 'vim', 'perl'].map((d) => `/usr/share/${d}`).filter((d) => existsSync(d))
  return { dirs, label: `/usr/share/{${dirs.map((d) => path.basename(d)).join(',')}}` }
}

/** The sum of the sizes of the regular files under p (not du: it counts directories, restic's 256 among them). */
function apparentBytes (p) {
  return treeFigures(p).bytes
}

/** The real tree in dir: the source itself when it is one directory, else a copy of its directories (kept). */
async function realTree (src, dir) {
  if (src.dirs.length === 1) return src.dirs[0]
  const marker = `${dir}.json`
  const want = JSON.stringify(src.dirs)
  try { if ((await fs.readFile(marker, 'utf8')) === want) return dir } catch {}
  await rm(dir)
  await fs.mkdir(dir, { recursive: true })
  run('cp', ['-a', ...src.dirs, dir])
  await fs.writeFile(marker, want)
  return dir
}

/** Files and apparent bytes of regular files under dir (symlinks not followed). */
function treeFigures (dir) {
  const files = Number(run('sh', ['-c', 'find "$0" -type f | wc -l', dir]).trim())
  const bytes = Number(run('sh', ['-c', 'find "$0" -type f -printf "%s\\n" | awk "{s+=\\$1} END {printf \\"%d\\", s}"', dir]).trim())
  return { files, bytes }
}

/**
 * What packer stores for the files of a set, from its file table (openSet with the key): payload, the sum of the
 * files' stored contents before encryption (a compressed file's zstd seekable stream: frames and seek table; other
 * files their own bytes), and the files stored compressed.
 */
async function payloadOf (set, keyFile) {
  const { openSet } = await import(LIB)
  const s = await openSet(set, { identities: [keyFile] })
  let payload = 0
  let compressed = 0
  let files = 0
  try {
    for await (const e of s.entries()) {
      if (e.type !== 'file') continue
      files++
      payload += e.payloadSize
      if (e.compression) compressed++
    }
  } finally { await s.close() }
  return { payloadBytes: payload, compressedFiles: compressed, payloadFiles: files }
}

export async function runCompressRealTree (opts, { step, log, work, keygen, keyFile, installed, results }) {
  const src = realTreeSource(opts)
  const dir = await realTree(src, path.join(work, 'real-tree'))
  const t = treeFigures(dir)
  const runs = Math.max(1, opts.runs ?? 1)
  console.log(`real tree: ${src.label}${dir !== src.dirs[0] ? ` (copied to ${dir})` : ''}: ${t.files} files, ${(t.bytes / MiB).toFixed(0)} MiB; ${runs} rounds`)
  const out = path.join(work, 'out-real')
  const base = { bytes: t.bytes, files: t.files, tree: src.label }
  /** [case id, label, run]: each tool once a round, the order rotated every round (no tool always first or last). */
  const tools = []
  // zstd (level 3, every file) too: it tells auto's level 1 and the set's own overhead apart against zstd -3.
  for (const mode of ['auto', 'zstd', 'off']) {
    tools.push([`realPack${mode[0].toUpperCase()}${mode.slice(1)}`, `packer pack, encrypted, --compress ${mode}, real tree`, async () => {
      const r = await packer.pack(dir, out, ['-r', keygen(), '--compress', mode], { log: log(`real-${mode}`), ...base })
      return { ...r, ...base, storedBytes: r.carBytes, ...(keyFile ? await payloadOf(out, keyFile) : {}) }
    }])
  }
  if (installed('zstd')) {
    tools.push(['realZstd', 'zstd -3 of each file (zstd -r --output-dir-mirror), real tree', async () => {
      await rm(out)
      // No -f: with it zstd follows symlinks, which the others store as links.
      const r = await timed('zstd', ['-3', '-r', '-q', '--output-dir-mirror', out, dir], { log: log('real-zstd') })
      return { ...base, ...r, storedBytes: apparentBytes(out) }
    }])
  }
  if (installed('restic')) {
    tools.push(['realRestic', 'restic init (repository v2) + backup --compression auto, real tree', async () => {
      await rm(out)
      const r = await timed('sh', ['-c', 'restic -r "$R" init --repository-version 2 && restic -r "$R" backup --compression auto "$T"'], {
        env: { R: path.join(out, 'repo'), T: dir, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(out, 'cache') },
        log: log('real-restic'),
      })
      return { ...base, ...r, storedBytes: apparentBytes(path.join(out, 'repo')) }
    }])
  }
  if (installed('borg')) {
    // -C zstd,3, then borg's default (lz4: no -C).
    for (const [id, c, what] of [['realBorg', ['-C', 'zstd,3'], '-C zstd,3'], ['realBorgLz4', [], 'default compression (lz4)']]) {
      tools.push([id, `borg init -e repokey + create ${what}, real tree`, async () => {
        await rm(out)
        await fs.mkdir(out, { recursive: true })
        const r = await timed('sh', ['-c', 'borg init -e repokey "$R" && borg create "$@" "$R::bench" .', 'sh', ...c], {
          cwd: dir,
          env: { R: path.join(out, 'repo'), BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: path.join(out, 'home'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes', BORG_DISPLAY_PASSPHRASE: 'no' },
          log: log(id === 'realBorg' ? 'real-borg' : 'real-borg-lz4'),
        })
        return { ...base, ...r, storedBytes: apparentBytes(path.join(out, 'repo')) }
      }])
    }
  }
  for (let r = 1; r <= runs; r++) {
    for (const [id, label, fn] of rotate(tools, r - 1)) await step(`${id}-${r}`, `${label} (round ${r})`, fn)
  }
  await rm(out)
  for (const [id] of tools) summarizeRounds(results, id, runs)
}

/**
 * Rows: each tool's stored bytes and time, and their ratios to packer auto's (lower is better for packer); packer's
 * stored file payload against per-file zstd -3 (the issue's goal: at most 1.03), beside the whole set's.
 */
export function compressRealTreeRows (C, row, rows) {
  const auto = C.realPackAuto
  if (!auto && !C.realPackOff) return []
  const ok = (c) => c && !c.error
  const label = auto?.tree ?? C.realPackOff?.tree ?? 'real tree'
  const lines = []
  for (const [k, name] of [['realPackAuto', 'packer --compress auto'], ['realPackZstd', 'packer --compress zstd (level 3)'], ['realPackOff', 'packer --compress off'], ['realZstd', 'zstd -3 per file'], ['realRestic', 'restic --compression auto'], ['realBorg', 'borg -C zstd,3'], ['realBorgLz4', 'borg default (lz4)']]) {
    const c = C[k]
    if (!c) continue
    const ratio = ok(c) && ok(auto) && k !== 'realPackAuto' ? c.seconds / auto.seconds : null
    // the issue's goal: on the compressible tree, auto faster than restic and borg
    const goal = ['realRestic', 'realBorg', 'realBorgLz4'].includes(k)
    row(`${label}: ${name}`, c, { vs: k === 'realPackAuto' ? 'reference' : 'time ÷ packer auto', ratio, target: goal ? '> 1' : '', met: goal && ratio !== null ? ratio > 1 : null })
    if (ok(c)) {
      rows.push({ case: `${label}: ${name}`, ratio: c.storedBytes / c.bytes, vs: 'stored ÷ tree' })
      if (ok(auto) && k !== 'realPackAuto') rows.push({ case: `${label}: packer auto`, ratio: auto.storedBytes / c.storedBytes, vs: `stored ÷ ${name}` })
      if (ok(auto) && k !== 'realPackAuto') rows.push({ case: `${label}: packer auto`, ratio: auto.cpuSeconds / c.cpuSeconds, vs: `CPU s ÷ ${name}` })
      const payload = c.payloadBytes !== undefined ? `, file payload ${(c.payloadBytes / MiB).toFixed(1)} MiB (${c.compressedFiles} of ${c.payloadFiles} files compressed)` : ''
      lines.push(`${name} ${(c.storedBytes / MiB).toFixed(1)} MiB${payload} in ${c.seconds.toFixed(1)} s (CPU ${c.cpuSeconds?.toFixed(1) ?? '?'} s)`)
    }
  }
  const z = C.realZstd
  if (ok(z)) {
    for (const [k, name] of [['realPackAuto', 'packer auto'], ['realPackZstd', 'packer zstd (level 3)']]) {
      const c = C[k]
      if (!ok(c) || c.payloadBytes === undefined) continue
      const r = c.payloadBytes / z.storedBytes
      rows.push({ case: `${label}: ${name}, file payload`, ratio: r, vs: 'payload ÷ zstd -3 per file', target: k === 'realPackAuto' ? '≤ 1.03' : '', met: k === 'realPackAuto' ? r <= 1.03 : null })
    }
  }
  return lines
}

/**
 * The mount case: a file of generated log text (compresses ~4× at level 1), packed encrypted with --compress auto
 * and off; each set mounted alone: cold sequential dd (page cache dropped before each of `runs` runs, median), then
 * on a fresh mount random 4 KiB O_DIRECT reads (p50/p99, cold: the file was never read by that mount).
 */
export async function runCompressedMount (opts, { step, log, work, keyFile, keygen }) {
  const size = (opts.full ? 1024 : opts.tiny ? 32 : 256) * MiB
  const src = path.join(work, 'mount-text')
  const file = path.join(src, 'big.log')
  if (!existsSync(file) || (await fs.stat(file)).size !== size) {
    await rm(src)
    await fs.mkdir(src, { recursive: true })
    await fs.writeFile(file, generatedText('log', size, 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima'.split(' '), 99))
  }
  for (const mode of ['auto', 'off']) {
    const id = mode === 'auto' ? 'Auto' : 'Off'
    const set = path.join(work, `mount-set-${mode}`)
    await step(`mountPack${id}`, `packer pack, encrypted, --compress ${mode}, one ${size / MiB} MiB log file`, async () => {
      const r = await packer.pack(src, set, ['-r', keygen(), '--compress', mode], { log: log(`mount-pack-${mode}`), bytes: size, files: 1 })
      return { ...r, storedBytes: r.carBytes }
    })
    await step(`mountRead${id}`, `mount of the --compress ${mode} set: cold sequential read (dd bs=1M), random 4 KiB reads`, async () => {
      const mnt = path.join(work, `mnt-${mode}`)
      const seq = []
      const mainCpu = []
      const allCpu = []
      for (let i = 0; i < 3; i++) {
        const m = await startMount(process.execPath, [CLI, 'mount', set, mnt, '-i', keyFile], mnt)
        try {
          dropCaches()
          const [main0, all0] = [cpuOf(m.proc.pid, m.proc.pid), cpuOf(m.proc.pid)]
          seq.push(ddSeq(path.join(mnt, 'big.log'), 600))
          mainCpu.push(cpuOf(m.proc.pid, m.proc.pid) - main0)
          allCpu.push(cpuOf(m.proc.pid) - all0)
        } finally { await stopMount(m) }
      }
      const m = await startMount(process.execPath, [CLI, 'mount', set, mnt, '-i', keyFile], mnt)
      let rand
      try {
        dropCaches()
        // 300 reads over 256 MiB (quick mode): most land in a frame (and leaf) the mount has not read yet.
        rand = randomReads(path.join(mnt, 'big.log'), 300, 7)
      } finally { await stopMount(m) }
      const s = seq.filter((x) => x != null).sort((a, b) => a - b)
      const seconds = s[Math.floor((s.length - 1) / 2)]
      return { bytes: size, seconds, runs: seq, p50: rand.p50, p99: rand.p99, mainCpu: median(mainCpu), mountCpu: median(allCpu) }
    })
    if (!opts.keep) await rm(set)
  }
}

/**
 * CPU seconds (user + system) of a process, or of one of its threads (`tid`; the main thread's is the pid): what the
 * mount's FUSE thread spends, which decompression on the workers takes off it.
 */
function cpuOf (pid, tid) {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100 // utime, stime in clock ticks (USER_HZ 100 on Linux)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]

export function mountRows (C, row, rows) {
  const a = C.mountReadAuto
  const o = C.mountReadOff
  if (!a && !o) return []
  const ok = (c) => c && !c.error
  row('mount, compressed (auto): cold sequential read', a, { ratio: ok(a) && ok(o) ? (a.bytes / a.seconds) / (o.bytes / o.seconds) : null, vs: 'MB/s ÷ --compress off' })
  row('mount, --compress off: cold sequential read', o, { vs: 'reference' })
  if (ok(a) && ok(o)) {
    rows.push({ case: 'mount, compressed (auto): random 4 KiB p50', ratio: a.p50 / o.p50, vs: 'latency ÷ --compress off' })
    rows.push({ case: 'mount, compressed (auto): random 4 KiB p99', ratio: a.p99 / o.p99, vs: 'latency ÷ --compress off' })
    rows.push({ case: 'mount, compressed (auto): sequential, main-thread CPU s', ratio: a.mainCpu / o.mainCpu, vs: 'CPU s ÷ --compress off' })
    rows.push({ case: 'mount, compressed (auto): sequential, mount CPU s', ratio: a.mountCpu / o.mountCpu, vs: 'CPU s ÷ --compress off' })
  }
  const f = (c) => ok(c) ? `seq ${(c.bytes / c.seconds / 1e6).toFixed(0)} MB/s (runs ${c.runs.map((x) => x?.toFixed(2)).join(', ')} s; mount CPU ${c.mountCpu.toFixed(2)} s, its main thread ${c.mainCpu.toFixed(2)} s), 4 KiB p50 ${c.p50.toFixed(0)} µs p99 ${c.p99.toFixed(0)} µs` : 'failed'
  const p = (c) => ok(c) ? `${(c.storedBytes / MiB).toFixed(1)} MiB stored` : ''
  return [`compressed: ${f(a)}, ${p(C.mountPackAuto)}`, `off: ${f(o)}, ${p(C.mountPackOff)}`]
}
