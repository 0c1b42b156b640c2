#!/usr/bin/env node
/**
 * `packer mount` with many files (issue 12): run as root after `npm run build`, by hand (the 1 M-file set takes a
 * while to make the first time; everything is made once under /tmp/packer-bench-* and reused):
 *   node bench/mount-scale.mjs [--files 10000,1000000] [--wide 100000] [--small-tree /usr/share] [--runs 3]
 *                              [--only ready,wide,diff] [--no-borg] [--out bench/mount-scale-results.json]
 *
 * - ready: for each file count, a tree of tiny files (bench/lib/many-files.mjs: 1,000 per directory) packed
 *   encrypted; time from spawn to the ready line (page cache dropped before each of --runs fresh mounts, median);
 *   peak RSS of the mount process when ready, after `find -printf '%s'` of every entry (a getattr each, 1,000
 *   readdirs per million) and after `cat` of 1,000 files spread over the tree.
 * - wide: one directory of --wide tiny files, packed encrypted and archived with borg (repokey, lz4); cold `ls -f`
 *   and cold `find -printf '%p %s %m %T@'` of it, each on a fresh mount with the page cache dropped (median of --runs).
 * - diff: `diff -r --no-dereference SRC MNT` of --small-tree (default /usr/share, the issue's reference) through a fresh mount, page
 *   cache dropped; packer vs borg mount.
 * Prints each figure and writes them all as JSON to --out.
 */
import { spawnSync, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { manyFilesTree } from './lib/many-files.mjs'
import { startMount, stopMount } from './lib/mounts.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(ROOT, 'dist/cli/main.js')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const FILES = opt('--files', '10000,1000000').split(',').map(Number)
const WIDE = Number(opt('--wide', '100000'))
const SMALL_TREE = path.resolve(opt('--small-tree', '/usr/share'))
const RUNS = Number(opt('--runs', '3'))
const ONLY = new Set(opt('--only', 'ready,wide,diff').split(','))
const BORG = !args.includes('--no-borg')
const OUT = path.resolve(opt('--out', path.join(ROOT, 'bench/mount-scale-results.json')))
const WORK = '/tmp/packer-bench-mount-scale'
const PASS = 'packer-bench-passphrase'

const say = (l) => process.stdout.write(l + '\n')
const sh = (cmd, opts = {}) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts })
const dropCaches = () => { sh('sync; echo 3 > /proc/sys/vm/drop_caches') }
const median = (xs) => { const s = xs.filter((x) => x != null).sort((a, b) => a - b); return s.length === 0 ? null : s[Math.floor((s.length - 1) / 2)] }
const r2 = (x) => x == null ? null : Math.round(x * 100) / 100
const mib = (bytes) => Math.round(bytes / 1048576)
const loadavg = () => os.loadavg().map((x) => Math.round(x * 10) / 10)
const secs = (fn) => { const t0 = performance.now(); const out = fn(); return { secs: (performance.now() - t0) / 1000, out } }
const peakRss = (pid) => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024
const which = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0

function packer (...a) { return execFileSync(process.execPath, [CLI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) }

/**
 * What SRC holds now (every entry's path, size and mtime, hashed): a set or archive made of SRC is reused only while
 * SRC is unchanged (a real tree such as /usr/share changes as packages are installed; diff would then fail).
 */
const stampOf = (src) => sh(`find ${JSON.stringify(src)} -printf '%p %s %T@\\n' | LC_ALL=C sort | sha256sum`).split(' ')[0]
const unchanged = (src, made) => fs.existsSync(made) && fs.readFileSync(made, 'utf8') === stampOf(src)

/** SRC packed encrypted once into DIR/set (DIR/key.txt its key), again when SRC changed. */
function ensureSet (src, dir) {
  if (unchanged(src, path.join(dir, 'source.stamp')) && fs.existsSync(path.join(dir, 'set/manifest.json'))) return dir
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  const recipient = packer('keygen', '-o', path.join(dir, 'key.txt')).trim()
  say(`packing ${src} (once)…`)
  const t = secs(() => packer('pack', src, '-o', path.join(dir, 'set'), '-r', recipient, '-q', '--state-dir', path.join(dir, 'state')))
  say(`  packed in ${t.secs.toFixed(0)} s`)
  fs.writeFileSync(path.join(dir, 'source.stamp'), stampOf(src))
  return dir
}

function borgEnv () {
  return { ...process.env, BORG_PASSPHRASE: PASS, BORG_BASE_DIR: path.join(WORK, 'borg-base'), BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes', BORG_DISPLAY_PASSPHRASE: 'no' }
}

/** An archive `a` of SRC (stored as its base name, from its parent) in a borg repository made once in DIR, again when SRC changed. */
function ensureBorg (src, dir) {
  const done = dir + '.done'
  if (!unchanged(src, done)) {
    fs.rmSync(dir, { recursive: true, force: true })
    say(`borg: archiving ${src} (once)…`)
    execFileSync('borg', ['init', '-e', 'repokey', dir], { env: borgEnv(), stdio: 'ignore' })
    execFileSync('borg', ['create', `${dir}::a`, path.basename(src)], { env: borgEnv(), cwd: path.dirname(src), stdio: 'ignore' })
    fs.writeFileSync(done, stampOf(src))
  }
  return dir
}

const mnt = path.join(WORK, 'mnt')
const packerMount = (dir) => startMount(process.execPath, [CLI, 'mount', path.join(dir, 'set'), mnt, '-i', path.join(dir, 'key.txt')], mnt, { readyText: 'mounted set', timeoutSecs: 120 })
const borgMount = (repo) => startMount('borg', ['mount', '-f', `${repo}::a`, mnt], mnt, { env: borgEnv(), timeoutSecs: 120 })

/** Median seconds of `cmd` (MNT replaced by the mount point) over fresh mounts, page cache dropped before each. */
async function coldRuns (start, cmd, check) {
  const times = []
  let rss = 0
  for (let r = 0; r < RUNS; r++) {
    dropCaches()
    const m = await start()
    try {
      const t = secs(() => sh(cmd.replaceAll('MNT', m.mnt)))
      check?.(t.out)
      times.push(t.secs)
      rss = Math.max(rss, peakRss(m.proc.pid))
    } finally { await stopMount(m, 10) }
  }
  return { runs: times.map(r2), median: r2(median(times)), peakRssMiB: mib(rss) }
}

async function ready (result) {
  result.ready = []
  for (const n of FILES) {
    const tree = manyFilesTree(n)
    const dir = ensureSet(tree, path.join(WORK, `many-${n}`))
    const spawnToReady = []
    const own = []
    for (let r = 0; r < RUNS; r++) {
      dropCaches()
      const m = await packerMount(dir)
      spawnToReady.push(m.secs)
      own.push(Number(/ready in ([\d.]+) s/.exec(m.out)?.[1]))
      if (r < RUNS - 1) { await stopMount(m); continue }
      try {
        const row = { files: n, spawnToReady: spawnToReady.map(r2), median: r2(median(spawnToReady)), ownCount: own.map(r2), rssReadyMiB: mib(peakRss(m.proc.pid)) }
        const find = secs(() => sh(`find ${m.mnt} -printf '%s\\n' | wc -l`))
        if (Number(find.out) !== n + Math.ceil(n / 1000) + 1) throw new Error(`find listed ${find.out.trim()} entries, expected ${n + Math.ceil(n / 1000) + 1}`)
        row.findSecs = r2(find.secs)
        row.rssAfterFindMiB = mib(peakRss(m.proc.pid))
        const sample = Array.from({ length: 1000 }, (_, i) => Math.floor(i * n / 1000)).map((i) => `${m.mnt}/d${String(Math.floor(i / 1000)).padStart(5, '0')}/f${String(i % 1000).padStart(4, '0')}`)
        fs.writeFileSync(path.join(WORK, 'sample.txt'), sample.join('\n') + '\n')
        const cat = secs(() => sh(`xargs -a ${path.join(WORK, 'sample.txt')} -d '\\n' cat | wc -l`))
        if (Number(cat.out) !== 1000) throw new Error(`cat gave ${cat.out.trim()} lines, expected 1000`)
        row.cat1000Secs = r2(cat.secs)
        row.rssAfterCatMiB = mib(peakRss(m.proc.pid))
        result.ready.push(row)
        say(`${n} files: ready ${spawnToReady.map((t) => t.toFixed(2)).join(', ')} s from spawn (median ${row.median} s; packer's own count ${own.map((t) => t.toFixed(2)).join(', ')} s); peak RSS ${row.rssReadyMiB} MiB ready, ${row.rssAfterFindMiB} MiB after find of every entry (${row.findSecs} s), ${row.rssAfterCatMiB} MiB after cat of 1,000 files (${row.cat1000Secs} s)`)
      } finally { await stopMount(m) }
    }
  }
}

async function wide (result) {
  const tree = manyFilesTree(WIDE, `/tmp/packer-bench-wide-${WIDE}`, WIDE)
  const dir = ensureSet(tree, path.join(WORK, `wide-${WIDE}`))
  const cases = [['lsF', `ls -f MNT/d00000 | wc -l`, WIDE + 2], ['find', `find MNT/d00000 -printf '%p %s %m %T@\\n' | wc -l`, WIDE + 1]]
  result.wide = { entries: WIDE }
  for (const [name, cmd, want] of cases) {
    const check = (out) => { if (Number(out) !== want) throw new Error(`${cmd}: ${out.trim()} lines, expected ${want}`) }
    result.wide[name] = { packer: await coldRuns(() => packerMount(dir), cmd, check) }
    if (BORG) {
      const repo = ensureBorg(tree, path.join(WORK, `borg-wide-${WIDE}`))
      result.wide[name].borg = await coldRuns(() => borgMount(repo), cmd.replace('MNT', 'MNT/tree'), check)
    }
    const w = result.wide[name]
    say(`cold ${cmd.replace(/ \|.*/, '')} of ${WIDE} entries: packer ${w.packer.runs.join(', ')} s (median ${w.packer.median}, peak RSS ${w.packer.peakRssMiB} MiB)${w.borg ? `; borg ${w.borg.runs.join(', ')} s (median ${w.borg.median}, peak RSS ${w.borg.peakRssMiB} MiB)` : ''}`)
  }
}

async function diff (result) {
  const count = sh(`find ${SMALL_TREE} -type f | wc -l; find ${SMALL_TREE} -type l | wc -l; du -sm ${SMALL_TREE} | cut -f1`).trim().split('\n').map(Number)
  const dir = ensureSet(SMALL_TREE, path.join(WORK, `tree-${SMALL_TREE.replaceAll('/', '_')}`))
  const check = (out) => { if (out.trim() !== '') throw new Error(`diff found differences: ${out.slice(0, 300)}`) }
  result.diff = { tree: SMALL_TREE, files: count[0], symlinks: count[1], MiB: count[2], locale: process.env.LC_ALL ?? process.env.LANG ?? null }
  result.diff.packer = await coldRuns(() => packerMount(dir), `diff -r --no-dereference ${SMALL_TREE} MNT`, check)
  if (BORG) {
    const repo = ensureBorg(SMALL_TREE, path.join(WORK, `borg-tree-${SMALL_TREE.replaceAll('/', '_')}`))
    result.diff.borg = await coldRuns(() => borgMount(repo), `diff -r --no-dereference ${SMALL_TREE} MNT/${path.basename(SMALL_TREE)}`, check)
  }
  const d = result.diff
  say(`cold diff -r --no-dereference of ${SMALL_TREE} (${d.files} files, ${d.symlinks} symlinks, ${d.MiB} MiB): packer ${d.packer.runs.join(', ')} s (median ${d.packer.median}, peak RSS ${d.packer.peakRssMiB} MiB)${d.borg ? `; borg ${d.borg.runs.join(', ')} s (median ${d.borg.median}, peak RSS ${d.borg.peakRssMiB} MiB)` : ''}`)
}

async function main () {
  if (process.getuid() !== 0) throw new Error('run as root (drops the page cache, mounts FUSE)')
  if (BORG && !which('borg')) throw new Error('borg is not installed: apt-get install borgbackup, or pass --no-borg')
  fs.mkdirSync(WORK, { recursive: true })
  const started = performance.now()
  const result = {
    date: new Date().toISOString(),
    command: `node bench/mount-scale.mjs ${args.join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0].model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version, borg: BORG ? sh('borg --version').trim() : null, loadBefore: loadavg() },
    unit: 'times in seconds, memory in MiB',
  }
  say(`packer mount at scale (${os.cpus().length} CPUs; load ${loadavg().join(' ')})`)
  if (ONLY.has('ready')) await ready(result)
  if (ONLY.has('wide')) await wide(result)
  if (ONLY.has('diff')) await diff(result)
  result.machine.loadAfter = loadavg()
  result.wallSeconds = Math.round((performance.now() - started) / 1000)
  say(`load ${result.machine.loadBefore.join(' ')} before, ${result.machine.loadAfter.join(' ')} after; ${result.wallSeconds} s`)
  fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n')
  say(`figures written to ${path.relative(process.cwd(), OUT) || OUT}`)
}

main().catch((err) => { console.error(err); process.exit(1) })
