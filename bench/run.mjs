#!/usr/bin/env node
// packer's benchmark (issue 6): pack/unpack against dd, ipfs-car, restic, borg and rclone on the same generated
// tree; issues 12 and 14: many tiny files and sharded packing (lib/many-files-cases.mjs, lib/shard-cases.mjs). Every
// timing ends when the output is on disk (`sync` after the process exits), page cache dropped before every timed
// command. Prints a table and writes bench/results.json. See bench/README.md.
//
//   npm run bench                  quick mode: issue 6's tree at 1/4 scale, 100,000 tiny files (issues 12, 14)
//   npm run bench -- --full        issue 6's 4 GiB tree, the 16 GiB sparse file packed encrypted, 1 M tiny files
//   npm run bench -- --only pack,unpack --keep      iterate on a few cases, keeping the generated tree
//
// MB = 10^6 bytes, MiB = 2^20. Ratios divide the subject's MB/s by its reference's (on the tiny files, the
// reference's time by the subject's: the same thing), both measured in this run.
import { spawnSync } from 'node:child_process'
import { existsSync, promises as fs, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CASES, USAGE, parseArgs } from './lib/args.mjs'
import { summariseProfile, printProfile } from './lib/cpuprofile.mjs'
import { compressSpec, makeSparseTree, makeTextTree, makeTree, treeSpec } from './lib/data.mjs'
import { compressRealTreeRows, mountRows, runCompressedMount, runCompressRealTree } from './lib/compress-cases.mjs'
import { manyFilesPaths, manyFilesRows, packPlain, runManyFiles } from './lib/many-files-cases.mjs'
import * as packer from './lib/packer.mjs'
import { PEERS } from './lib/peers.mjs'
import { caseRow, markdownTable, printTable, ran, rate, rssRow } from './lib/report.mjs'
import { realTreeRows, runRealTree } from './lib/real-tree-cases.mjs'
import { runShards, shardRows } from './lib/shard-cases.mjs'
import { runS3, s3Files, s3Rows } from './lib/s3-cases.mjs'
import { measureRemoteMount, printRemoteMount, remoteMountMissing, remoteMountRows } from './lib/remote-mount-cases.mjs'
import { GiB, MB, config, diskUsage, dropCaches, ensureTool, isRoot, machine, rssMethod, timed } from './lib/sys.mjs'

const BENCH = path.dirname(fileURLToPath(import.meta.url))
const REPO = path.resolve(BENCH, '..')
const CLI = path.join(REPO, 'dist/cli/main.js')
const NODE = process.execPath

let opts
try {
  opts = parseArgs(process.argv.slice(2), BENCH)
} catch (e) {
  console.error(e.message)
  process.exit(2)
}
if (opts.help) {
  console.log(USAGE)
  process.exit(0)
}

const W = opts.work
config.waitQuiet = opts.wait
config.maxWait = opts.maxWait
const P = {
  tree: path.join(W, 'tree'),
  key: path.join(W, 'key.txt'),
  outEnc: path.join(W, 'out-enc'),
  outPlain: path.join(W, 'out-plain'),
  peer: (name) => path.join(W, `peer-${name}`),
  dest: path.join(W, 'unpack-dest'),
  ddFile: path.join(W, 'dd.out'),
  sparseTree: path.join(W, 'sparse-tree'),
  outSparse: path.join(W, 'out-sparse'),
  destSparse: path.join(W, 'unpack-sparse'),
  prof: path.join(W, 'cpuprof'),
  outProf: path.join(W, 'out-prof'),
  logs: path.join(W, 'logs'),
  textTree: path.join(W, 'text-tree'),
  randomTree: path.join(W, 'random-tree'),
  outCompress: path.join(W, 'out-compress'),
  tarZstd: path.join(W, 'tree.tar.zst'),
}
const rm = (p) => fs.rm(p, { recursive: true, force: true })
const log = (name) => path.join(P.logs, `${name}.log`)
const has = (c) => opts.cases.has(c)
const mbps = (bytes, s) => bytes / s / MB

const spec = treeSpec(opts.full, opts.tiny)
const SPARSE_BYTES = 16 * GiB
const results = {
  date: new Date().toISOString(),
  command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  mode: opts.full ? 'full' : opts.tiny ? 'tiny' : 'quick',
  cases: {},
  notes: [],
}

// ---------------------------------------------------------------- setup
await fs.mkdir(P.logs, { recursive: true })
results.machine = machine(W)
const m = results.machine
console.log(`packer bench, ${results.mode} mode — ${results.date}`)
console.log(`machine: ${m.nproc} × ${m.cpuModel} [${m.cpuFlags.join(' ')}], ${(m.memoryBytes / GiB).toFixed(1)} GiB RAM, ${m.kernel}, ${m.os}, node ${m.node}`)
console.log(`work dir: ${W} (${m.fsType ?? '?'} on ${m.disk?.device ?? '?'}, ${m.disk ? (m.disk.availBytes / GiB).toFixed(0) : '?'} GiB free)`)
const needsTree = ['dd', 'read', 'pack', 'pack-plain', 'ipfs-car', 'restic', 'borg', 'rclone', 'unpack', 'profile'].some(has)
if (opts.tiny) console.log('TINY MODE: a smoke test of the bench script; the figures mean nothing')
else if (!opts.full && needsTree) {
  console.log('QUICK MODE: the issue\'s tree at 1/4 scale — one 1 GiB file + 5,000 small files (256 MiB) instead of one 3 GiB file +')
  console.log('            20,000 small files (1 GiB); no 16 GiB sparse case. `npm run bench -- --full` runs the issue\'s sizes.')
}
console.log(`cases: ${CASES.filter(has).join(', ')}`)
if (!existsSync(CLI)) {
  console.error(`${CLI} missing: run npm run build (npm run bench does)`)
  process.exit(1)
}
if (!isRoot) results.notes.push('not root: page cache not dropped, peers not installed by the bench')

const peers = {}
for (const [bin, pkg, cs] of [['time', 'time', null], ['restic', 'restic', ['restic', 'compress', 'real-tree']], ['borg', 'borgbackup', ['borg', 'compress', 'real-tree']], ['rclone', 'rclone', ['rclone', 'real-tree', 's3', 'remote-mount']], ['zstd', 'zstd', ['compress']]]) {
  if (cs && !cs.some(has) && !has('many-peers')) continue
  const r = ensureTool(bin === 'time' ? '/usr/bin/time' : bin, pkg, { install: opts.install })
  peers[bin] = r
  if (!r.ok) console.log(`  ${bin}: ${r.why}`)
}
// /usr/bin/time is looked up when lib/sys.mjs loads; if it was just installed, RSS falls back to polling VmHWM.
results.rssMethod = rssMethod()
if (m.disk) {
  const needed = (opts.full ? 4 * (spec.bigBytes + spec.smallTotal) + 2.2 * SPARSE_BYTES : 4.5 * (spec.bigBytes + spec.smallTotal))
  if (m.disk.availBytes < needed) console.log(`WARNING: ${(m.disk.availBytes / GiB).toFixed(0)} GiB free, this mode wants about ${(needed / GiB).toFixed(0)} GiB`)
}

let tree = null
if (needsTree) {
  process.stdout.write(`generating the tree in ${P.tree}… `)
  const t = await makeTree(P.tree, spec)
  spawnSync('sync')
  tree = { ...t, spec, bigBytes: spec.bigBytes, smallCount: spec.smallCount, smallBytes: spec.smallTotal }
  results.tree = tree
  console.log(t.reused ? `reused (${t.files} files, ${(t.bytes / GiB).toFixed(2)} GiB)` : `${t.files} files, ${(t.bytes / GiB).toFixed(2)} GiB in ${t.seconds.toFixed(1)} s`)
}

let recipient = null
const keygen = () => (recipient ??= packer.recipientOf(P.key))

/** Runs one case in isolation: a failure is recorded and printed, and the run goes on. */
async function step (name, label, fn) {
  process.stdout.write(`▶ ${label}… `)
  try {
    const r = await fn()
    results.cases[name] = r
    const parts = []
    if (r.seconds != null) parts.push(`${r.seconds.toFixed(1)} s`)
    if (r.bytes != null && r.seconds != null) parts.push(`${mbps(r.bytes, r.seconds).toFixed(0)} MB/s`)
    if (r.files != null && r.seconds != null) parts.push(`${(r.files / r.seconds).toFixed(0)} files/s`)
    if (r.syncSeconds != null && r.syncSeconds > 0.05) parts.push(`final sync ${r.syncSeconds.toFixed(1)} s`)
    if (r.rssBytes != null) parts.push(`peak RSS ${(r.rssBytes / MB).toFixed(0)} MB`)
    if (r.cpuSeconds != null) parts.push(`CPU ${r.cpuSeconds.toFixed(1)} s`)
    if (r.othersCpu != null && r.othersCpu >= 0.05) parts.push(`others used ${(100 * r.othersCpu).toFixed(0)} % of the cores`)
    if (r.load1 != null) parts.push(`load ${r.load1.toFixed(1)}`)
    if (r.quietWait?.seconds > 3) parts.push(`(waited ${r.quietWait.seconds.toFixed(0)} s for a quiet machine${r.quietWait.busyBefore >= 0.1 ? ', gave up' : ''})`)
    console.log(parts.join(', ') || 'done')
    return r
  } catch (e) {
    const msg = String(e?.message ?? e)
    results.cases[name] = { error: msg }
    console.log(`FAILED\n    ${msg.split('\n').join('\n    ')}`)
    return null
  }
}

async function ddWrite (bytes) {
  await rm(P.ddFile)
  const r = await timed('dd', ['if=/dev/zero', `of=${P.ddFile}`, 'bs=1M', `count=${bytes}`, 'iflag=count_bytes', 'conv=fdatasync'], { log: log('dd') })
  await rm(P.ddFile)
  return { bytes, ...r }
}

// ---------------------------------------------------------------- the cases
const B = tree?.bytes
if (has('dd')) await step('dd1', `dd write ${(B / GiB).toFixed(2)} GiB, conv=fdatasync (start)`, () => ddWrite(B))
if (has('read')) {
  await step('read', 'cold read of the large file (dd of=/dev/null)', async () => {
    const r = await timed('dd', [`if=${path.join(P.tree, 'big.bin')}`, 'of=/dev/null', 'bs=1M'], { log: log('read') })
    return { bytes: spec.bigBytes, ...r }
  })
}
if (has('pack') || has('unpack')) {
  await step('pack', 'packer pack, encrypted (age X25519), CommP', () => packer.pack(P.tree, P.outEnc, ['-r', keygen()], { log: log('pack'), bytes: B, files: tree.files }))
}
if (has('pack-plain')) {
  await step('packPlain', 'packer pack --no-encrypt', () => packer.pack(P.tree, P.outPlain, ['--no-encrypt'], { log: log('pack-plain'), bytes: B, files: tree.files }))
  if (!opts.keep) await rm(P.outPlain)
}
const notInstalled = (bin) => peers[bin] && !peers[bin].ok
const peerLabels = { 'ipfs-car': 'ipfs-car pack', restic: 'restic init + backup', borg: 'borg init -e repokey + create', rclone: 'rclone copy to a crypt remote (local dir)' }
const peerKeys = { 'ipfs-car': 'ipfsCar', restic: 'restic', borg: 'borg', rclone: 'rclone' }
for (const peer of Object.keys(PEERS)) {
  if (!has(peer)) continue
  if (notInstalled(peer)) { results.cases[peerKeys[peer]] = { error: 'not installed' }; continue }
  await step(peerKeys[peer], peerLabels[peer], async () => ({ bytes: B, ...(await PEERS[peer](P.tree, P.peer(peer), log(peer))) }))
  if (!opts.keep) await rm(P.peer(peer))
}
if (has('dd')) await step('dd2', `dd write ${(B / GiB).toFixed(2)} GiB, conv=fdatasync (middle)`, () => ddWrite(B))
if (has('unpack')) {
  if (results.cases.pack?.error) results.cases.unpack = { error: 'no encrypted set (pack failed)' }
  else {
    await step('unpack', 'packer unpack of the encrypted set', () => packer.unpack(P.outEnc, P.dest, P.key, { log: log('unpack'), expect: tree, bytes: tree.bytes, files: tree.files }))
    if (!opts.keep) await rm(P.dest)
  }
}
if (has('profile')) {
  await step('profile', 'packer pack, encrypted, under node --cpu-prof (not a timing)', async () => {
    await rm(P.prof)
    await rm(P.outProf)
    const r = await timed(NODE, ['--cpu-prof', '--cpu-prof-dir', P.prof, CLI, 'pack', P.tree, '-o', P.outProf, '-r', keygen()], { log: log('profile') })
    await rm(P.outProf)
    const files = (await fs.readdir(P.prof)).filter((f) => f.endsWith('.cpuprofile')).sort()
    const summaries = []
    for (const f of files) summaries.push(await summariseProfile(path.join(P.prof, f), 20))
    return { bytes: B, ...r, profiles: summaries, profileDir: P.prof }
  })
}
if (has('dd')) await step('dd3', `dd write ${(B / GiB).toFixed(2)} GiB, conv=fdatasync (end)`, () => ddWrite(B))
if (!opts.keep) await rm(P.outEnc)

if (['many', 'many-peers', 'many-growth'].some(has)) {
  console.log(`tiny-files tree: ${opts.files.toLocaleString('en')} files (bench/lib/many-files.mjs; made once under /tmp, reused)`)
  const installed = (peer) => !notInstalled(peer)
  await runManyFiles(opts.files, { step, has, log, keyFile: P.key, recipient: keygen(), work: W, installed, results })
  if (!opts.keep) await rm(manyFilesPaths(W, opts.files).dir)
}
if (has('real-tree')) {
  const installed = (peer) => !notInstalled(peer)
  await runRealTree(opts.tree ?? '/usr/share', opts.runs, { step, log, keyFile: P.key, recipient: keygen(), work: W, installed, results })
}
if (has('shards')) {
  if (!results.cases.manyPackPlain) await packPlain(opts.files, { step, log, work: W })
  for (const k of opts.shards) await runShards(opts.files, k, { step, log, work: W })
  if (!opts.keep) await rm(manyFilesPaths(W, opts.files).dir)
}
// Object storage (issue 16): packing from a local S3 server against from disk, against rclone copy + pack, and to S3
if (has('s3')) await runS3(s3Files(opts.full, opts.tiny), opts.runs, { step, log, work: W, installed: (bin) => !notInstalled(bin), results, keep: opts.keep })

if (has('sparse')) {
  const sparse = await makeSparseTree(P.sparseTree, SPARSE_BYTES)
  await step('ddSparse', 'dd write 16 GiB, conv=fdatasync', () => ddWrite(SPARSE_BYTES))
  const p = await step('packSparse', 'packer pack of a 16 GiB sparse file, encrypted', () => packer.pack(P.sparseTree, P.outSparse, ['-r', keygen()], { log: log('pack-sparse'), bytes: SPARSE_BYTES, files: 1 }))
  if (p) {
    await step('unpackSparse', 'packer unpack of the 16 GiB sparse set', () => packer.unpack(P.outSparse, P.destSparse, P.key, { log: log('unpack-sparse'), expect: sparse, bytes: sparse.bytes, files: 1 }))
  } else results.cases.unpackSparse = { error: 'no sparse set (pack failed)' }
  await rm(P.destSparse)
  await rm(P.outSparse)
  await rm(P.sparseTree)
}

// Compression (issue 13): packer's encrypted pack with --compress off, auto (and zstd, level 3, on text) on a tree of
// generated text and on one of random files, against tar | zstd -3 -T0 of the same tree: stored size and time.
const cspec = compressSpec(opts.full, opts.tiny)
if (has('compress')) {
  if (notInstalled('zstd')) results.cases.compress = { error: 'not installed (zstd)' }
  const trees = [
    ['text', 'Text', P.textTree, () => makeTextTree(P.textTree, cspec.textBytes)],
    ['random', 'Random', P.randomTree, () => makeTree(P.randomTree, cspec.random)],
  ]
  for (const [name, id, dir, make] of trees) {
    process.stdout.write(`generating the ${name} tree in ${dir}… `)
    const t = await make()
    console.log(t.reused ? `reused (${t.files} files, ${(t.bytes / 2 ** 20).toFixed(0)} MiB)` : `${t.files} files, ${(t.bytes / 2 ** 20).toFixed(0)} MiB in ${t.seconds.toFixed(1)} s`)
    const modes = name === 'text' ? [['Off', 'off'], ['Auto', 'auto'], ['Zstd', 'zstd']] : [['Off', 'off'], ['Auto', 'auto']]
    for (const [m, mode] of modes) {
      await step(`compress${m}${id}`, `packer pack, encrypted, --compress ${mode}, ${name} tree`, () => packer.pack(dir, P.outCompress, ['-r', keygen(), '--compress', mode], { log: log(`compress-${mode}-${name}`), bytes: t.bytes, files: t.files }))
    }
    if (!notInstalled('zstd')) {
      await step(`tarZstd${id}`, `tar | zstd -3 -T0, ${name} tree`, async () => {
        await rm(P.tarZstd)
        const r = await timed('sh', ['-c', 'tar -C "$T" -cf - . | zstd -3 -T0 -q -o "$O"'], { env: { T: dir, O: P.tarZstd }, log: log(`tar-zstd-${name}`) })
        return { bytes: t.bytes, outBytes: diskUsage(P.tarZstd), ...r }
      })
    }
  }
  await rm(P.outCompress)
  await rm(P.tarZstd)
  await runCompressRealTree(opts, { step, log, work: W, keygen, keyFile: P.key, installed: (bin) => !notInstalled(bin), results })
  await runCompressedMount(opts, { step, log, work: W, keyFile: P.key, keygen })
}

// Remote mount (issue 15): the same file through the local mount, a mount of its set on nginx, rclone's HTTP mount.
if (has('remote-mount')) {
  const sizeMib = opts.full ? 1024 : opts.tiny ? 16 : 256
  for (const delayMs of [0, 50]) {
    const missing = remoteMountMissing(delayMs)
    if (missing.length > 0) { results.cases[`remoteMount${delayMs}`] = { error: `not installed (${missing.join(', ')})` }; continue }
    await step(`remoteMount${delayMs}`, `remote mount, ${sizeMib} MiB, ${delayMs} ms before each answer, ${opts.runs} rounds`, async () => {
      const m = await measureRemoteMount({ cli: CLI, work: path.join(W, 'remote-mount'), sizeMib, runs: opts.runs, delayMs })
      console.log('')
      printRemoteMount(m)
      return m
    })
  }
}

/** Runs another engineer's bench script; its output is reported as is, a failure as "not available". */
async function otherScript (name, file, args, timeoutMs) {
  if (!existsSync(file)) {
    results.cases[name] = { error: `not available (${path.relative(REPO, file)} does not exist)` }
    console.log(`▶ ${path.relative(REPO, file)}: not available (no such file)`)
    return null
  }
  return step(name, `node ${path.relative(REPO, file)} ${args.join(' ')}`.trim(), async () => {
    dropCaches()
    const t0 = performance.now()
    const r = spawnSync(NODE, [file, ...args], { cwd: REPO, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 })
    const seconds = (performance.now() - t0) / 1000
    await fs.writeFile(log(name), `${r.stdout ?? ''}\n--- stderr\n${r.stderr ?? ''}`)
    if (r.error || r.status !== 0) throw new Error(`not available: ${r.error?.message ?? `exit ${r.status}`}\n${(r.stderr ?? '').trim().split('\n').slice(-5).join('\n')}`)
    let json = null
    try { json = JSON.parse(r.stdout) } catch {
      const i = r.stdout.indexOf('\n{')
      if (i >= 0) try { json = JSON.parse(r.stdout.slice(i + 1)) } catch {}
    }
    return { wallSeconds: seconds, json, output: json ? null : r.stdout.trim() }
  })
}
if (has('commp')) await otherScript('commp', path.join(BENCH, 'commp.mjs'), ['--json'], 10 * 60e3)
if (has('mount')) {
  const f = path.join(BENCH, 'mount.mjs')
  const wantsJson = existsSync(f) && readFileSync(f, 'utf8').includes('--json')
  await otherScript('mount', f, wantsJson ? ['--json'] : [], 15 * 60e3)
}

// ---------------------------------------------------------------- rows
const C = results.cases
// dd runs three times (start, middle, end): the disk under these VMs swings from 250 MB/s to 2 GB/s between runs
// (a host-side write cache), so the reference is the median of the three.
const ddRates = [C.dd1, C.dd2, C.dd3].filter(ran).map(rate)
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n === 0 ? null : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2 }
const ddRef = median(ddRates)
const rows = []
const row = (name, c, extra) => { const r = caseRow(name, c, extra); if (r) rows.push(r) }
const ratioRow = (name, c, refRate, vs, target, min, extra = {}) => {
  const ratio = ran(c) && refRate ? rate(c) / refRate : null
  row(name, c, { ratio, vs, target, met: ratio == null ? null : ratio >= min, ...extra })
}
const rssLimitRow = (name, c) => { const r = rssRow(name, c); if (r) rows.push(r) }

row('dd write, conv=fdatasync (start)', C.dd1, { vs: 'reference' })
row('dd write, conv=fdatasync (middle)', C.dd2, { vs: 'reference' })
row('dd write, conv=fdatasync (end)', C.dd3, { vs: 'reference' })
row('cold read of the large file (dd)', C.read, { vs: 'information' })
const ddName = ddRates.length > 1 ? `dd (median of ${ddRates.length})` : 'dd'
ratioRow('pack, encrypted + CommP', C.pack, ddRef, ddName, '≥ 0.8', 0.8)
ratioRow('pack --no-encrypt', C.packPlain, rate(C.ipfsCar), 'ipfs-car', '≥ 1.5', 1.5)
row('ipfs-car pack (no CommP)', C.ipfsCar, { vs: 'reference' })
for (const [k, label] of [['restic', 'restic init + backup'], ['borg', 'borg init + create'], ['rclone', 'rclone copy to crypt']]) {
  if (!C[k]) continue
  const packRate = rate(C.pack)
  const ratio = ran(C[k]) && packRate ? packRate / rate(C[k]) : null
  row(label, C[k], { ratio, vs: `pack ÷ ${k}`, target: '> 1', met: ratio == null ? null : ratio > 1 })
}
ratioRow('unpack, encrypted set', C.unpack, ddRef, ddName, '≥ 0.8', 0.8)
rssLimitRow('peak RSS: pack, encrypted', C.pack)
rssLimitRow('peak RSS: pack --no-encrypt', C.packPlain)
rssLimitRow('peak RSS: unpack', C.unpack)
if (C.ddSparse || C.packSparse) {
  row('dd write 16 GiB, conv=fdatasync', C.ddSparse, { vs: 'reference' })
  ratioRow('pack 16 GiB sparse file, encrypted', C.packSparse, rate(C.ddSparse), 'dd 16 GiB', '≥ 0.8', 0.8)
  ratioRow('unpack 16 GiB sparse set', C.unpackSparse, rate(C.ddSparse), 'dd 16 GiB', '≥ 0.8', 0.8)
  rssLimitRow('peak RSS: pack 16 GiB sparse', C.packSparse)
  rssLimitRow('peak RSS: unpack 16 GiB sparse', C.unpackSparse)
}
// CommP figures from bench/commp.mjs (its own data: random bytes in memory, MB/s of CAR bytes)
if (C.commp) {
  const j = C.commp.json
  if (C.commp.error || !j) rows.push({ case: 'CommP (bench/commp.mjs)', error: C.commp.error ? 'not available' : 'no JSON output' })
  else {
    const n1 = j.native?.['threads=1']
    const n2 = j.native?.['threads=2']
    const ds = j.dataSegment
    const sha = j.sha256sum
    const fig = (name, f, extra) => rows.push({ case: name, bytes: f?.bytes ?? j.size, seconds: f?.seconds, mbps: f?.mbps, ...extra })
    if (n1) {
      const r = ds?.mbps ? n1.mbps / ds.mbps : null
      fig('CommP native, 1 thread', n1, { ratio: r, vs: 'data-segment', target: '≥ 35', met: r == null ? null : r >= 35 })
      fig('CommP native, 1 thread', n1, { ratio: n1.mbps / 350, vs: '350 MB/s', target: '≥ 1 (350 MB/s)', met: n1.mbps >= 350 })
      if (sha?.mbps) fig('CommP native, 1 thread', n1, { ratio: n1.mbps / sha.mbps, vs: 'sha256sum', target: '', met: null })
    }
    if (n2) fig('CommP native, 2 threads', n2, { ratio: sha?.mbps ? n2.mbps / sha.mbps : null, vs: 'sha256sum', target: '', met: null })
    if (ds) fig('@web3-storage/data-segment', ds, { vs: 'reference' })
    if (sha) fig('sha256sum (page cache)', sha, { vs: 'reference' })
  }
}
if (C.mount) {
  if (C.mount.error) rows.push({ case: 'mount (bench/mount.mjs)', error: 'not available' })
}
// Compression: ratios of stored sizes (the set's bytes on disk, or the .tar.zst's) and of times, lower is better.
const sizeRatio = (c, ref) => (ran(c) && ran(ref) && c.outBytes && ref.outBytes ? c.outBytes / ref.outBytes : null)
const timeRatio = (c, ref) => (ran(c) && ran(ref) ? c.seconds / ref.seconds : null)
// CPU seconds too: on a shared machine the wall time of a few seconds' run is mostly other processes' doing.
const cpuRatio = (c, ref) => (ran(c) && ran(ref) && c.cpuSeconds && ref.cpuSeconds ? c.cpuSeconds / ref.cpuSeconds : null)
const atMost = (r, max) => (r == null ? null : r <= max)
const compressed = []
for (const [name, id] of [['text', 'Text'], ['random', 'Random']]) {
  const off = C[`compressOff${id}`]
  const auto = C[`compressAuto${id}`]
  const zstd3 = C[`compressZstd${id}`]
  const peer = C[`tarZstd${id}`]
  if (!off && !auto) continue
  const random = name === 'random'
  row(`${name} tree: pack --compress off`, off, { vs: 'reference' })
  const t = timeRatio(auto, off)
  row(`${name} tree: pack --compress auto`, auto, { ratio: t, vs: 'time ÷ off', target: random ? '≤ 1.10' : '', met: random ? atMost(t, 1.1) : null })
  rows.push({ case: `${name} tree: pack --compress auto`, ratio: cpuRatio(auto, off), vs: 'CPU s ÷ off' })
  const s = sizeRatio(auto, off)
  rows.push({ case: `${name} tree: pack --compress auto`, ratio: s, vs: 'size ÷ off', target: random ? '≤ 1.01' : '', met: random ? atMost(s, 1.01) : null })
  if (zstd3) {
    row(`${name} tree: pack --compress zstd (level 3)`, zstd3, { ratio: timeRatio(zstd3, off), vs: 'time ÷ off' })
    rows.push({ case: `${name} tree: pack --compress zstd (level 3)`, ratio: sizeRatio(zstd3, peer), vs: 'size ÷ tar|zstd -3' })
  }
  if (peer) {
    row(`${name} tree: tar | zstd -3 -T0`, peer, { ratio: ran(peer) ? peer.outBytes / peer.bytes : null, vs: 'size ÷ tree' })
    rows.push({ case: `${name} tree: pack --compress auto`, ratio: sizeRatio(auto, peer), vs: 'size ÷ tar|zstd -3' })
    rows.push({ case: `${name} tree: pack --compress auto`, ratio: timeRatio(auto, peer), vs: 'time ÷ tar|zstd -3' })
  }
  const mib = (c) => (ran(c) && c.outBytes ? `${(c.outBytes / 2 ** 20).toFixed(1)} MiB` : '–')
  compressed.push(`${name} tree ${ran(off) ? `${(off.bytes / 2 ** 20).toFixed(0)} MiB` : ''}: set with --compress off ${mib(off)}, auto ${mib(auto)}${zstd3 ? `, zstd ${mib(zstd3)}` : ''}; tar | zstd -3 -T0 ${mib(peer)}`)
}
const realTree = compressRealTreeRows(C, row, rows)
const mountFigures = mountRows(C, row, rows)
rows.push(...manyFilesRows(C, opts.files))
if (has('real-tree')) rows.push(...realTreeRows(C, opts.tree ?? '/usr/share', opts.runs))
if (has('shards')) for (const k of opts.shards) rows.push(...shardRows(C, opts.files, k, C.manyPackPlain))
if (has('s3')) rows.push(...s3Rows(C, opts.runs))
rows.push(...remoteMountRows(C))
results.rows = rows
results.references = { ddMBps: ddRef, ddRuns: ddRates }

// ---------------------------------------------------------------- report
console.log('')
console.log(`${{ quick: 'QUICK MODE (1/4 scale tree)', full: 'FULL MODE', tiny: 'TINY MODE (smoke test, meaningless)' }[results.mode]}; MB = 10^6 B; every timing ends after \`sync\`; page cache dropped before each (${isRoot ? 'yes' : 'NO: not root'}); RSS by ${results.rssMethod}`)
console.log('CPU s = user + system of the command; others = CPU used meanwhile by every other process (the machine is shared), share of all cores')
if (tree) console.log(`tree: ${tree.files} files, ${(tree.bytes / GiB).toFixed(2)} GiB (one ${tree.bigBytes / GiB >= 1 ? `${(tree.bigBytes / GiB).toFixed(0)} GiB` : `${(tree.bigBytes / 2 ** 20).toFixed(0)} MiB`} random file + ${tree.smallCount} random files of 1 B–${Math.round(2 * tree.smallBytes / tree.smallCount / 1024)} KiB in ${Math.ceil(tree.smallCount / spec.perDir)} directories)`)
printTable(rows)
if (compressed.length > 0) console.log(`\nstored sizes (du): ${compressed.join('; ')}`)
if (realTree.length > 0) console.log(`\nreal tree (${C.realPackAuto?.tree ?? ''}), stored bytes (apparent) and time: ${realTree.join('; ')}`)
if (mountFigures.length > 0) console.log(`\nmount of one compressible file: ${mountFigures.join('; ')}`)
if (C.mount && !C.mount.error) {
  console.log('\nbench/mount.mjs reported:')
  console.log(C.mount.json ? JSON.stringify(C.mount.json, null, 2) : C.mount.output)
}
if (C.profile?.profiles) {
  console.log(`\nCPU profile of one encrypted pack (${C.profile.seconds.toFixed(1)} s under the profiler; files in ${C.profile.profileDir}):`)
  for (const s of C.profile.profiles) printProfile(s)
}
results.markdown = markdownTable(rows)
if (opts.markdown) console.log(`\n${results.markdown}`)
await fs.writeFile(opts.json, `${JSON.stringify(results, null, 2)}\n`)
console.log(`\nresults: ${path.relative(process.cwd(), opts.json) || opts.json}`)

// ---------------------------------------------------------------- cleanup
if (!opts.keep) {
  for (const p of [path.join(W, 'real-tree'), path.join(W, 'real-tree.json'), path.join(W, 'mount-text'), P.tree, `${P.tree}.json`, P.textTree, `${P.textTree}.json`, P.randomTree, `${P.randomTree}.json`, P.outEnc, P.outPlain, ...Object.keys(PEERS).map(P.peer), P.dest, P.ddFile, P.sparseTree, P.outSparse, P.destSparse, P.outProf]) await rm(p)
}
const failed = rows.filter((r) => r.error && !r.error.startsWith('not ')).length
process.exitCode = failed ? 1 : 0
