#!/usr/bin/env node
// What packing from S3 costs against packing the same tree from disk (issue 16: packer's CPU-seconds per GB from a
// local S3 server at most 1.25 × from disk). The server (fauxqs, in this process, on 127.0.0.1) shares the machine's
// cores with packer, so the figure is packer's CPU time (user + system of the packer process, /usr/bin/time), not
// wall time; runs alternate between the two sources so load from other work falls on both.
//
//   node bench/s3-pack.mjs [--files 24] [--mib 10] [--runs 3] [--encrypt] [--prof DIR] [--compare DIST]
//
// --prof DIR writes a CPU profile (node --cpu-prof) of one pack from S3 into DIR. --compare DIST also packs from S3
// with another build's dist directory (a copy of dist/ from before a change, kept beside dist/ so that it finds
// node_modules and native/), in the same rounds: a before/after on the same load.
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from 'fauxqs'
import { BENCH_AWS_ENV } from './lib/s3-cases.mjs'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const CLI = path.join(REPO, 'dist/cli/main.js')
const args = process.argv.slice(2)
const opt = (name, fallback) => { const i = args.indexOf(`--${name}`); return i < 0 ? fallback : args[i + 1] }
const FILES = Number(opt('files', 24))
const MIB = Number(opt('mib', 10))
const RUNS = Number(opt('runs', 3))
const ENCRYPT = args.includes('--encrypt')
const PROF = opt('prof', undefined)
const COMPARE = opt('compare', undefined)

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-bench-s3-'))
const tree = path.join(work, 'tree')
fs.mkdirSync(tree)
for (let i = 0; i < FILES; i++) {
  const bytes = crypto.createCipheriv('chacha20', crypto.createHash('sha256').update(String(i)).digest(), Buffer.alloc(16)).update(Buffer.alloc(MIB << 20))
  fs.writeFileSync(path.join(tree, `f${String(i).padStart(4, '0')}.bin`), bytes)
}

const app = buildApp({ logger: false })
await app.listen({ host: '127.0.0.1', port: 0 })
const endpoint = `http://127.0.0.1:${app.server.address().port}`
const agent = new http.Agent({ keepAlive: true })
const put = (p, body) => new Promise((resolve, reject) => {
  const req = http.request(`${endpoint}/${p}`, { method: 'PUT', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
    res.resume()
    res.on('end', () => res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${p}: HTTP ${res.statusCode}`)))
  })
  req.on('error', reject)
  req.end(body)
})
await put('bench', Buffer.alloc(0))
for (const name of fs.readdirSync(tree)) await put(`bench/tree/${name}`, fs.readFileSync(path.join(tree, name)))

const env = { ...process.env, ...BENCH_AWS_ENV, XDG_STATE_HOME: path.join(work, 'state') }
const keyArgs = []
if (ENCRYPT) {
  const key = path.join(work, 'key.txt')
  spawnSync(process.execPath, [CLI, 'keygen', '-o', key], { env })
  keyArgs.push('-r', /age1[0-9a-z]+/.exec(fs.readFileSync(key, 'utf8'))[0])
} else {
  keyArgs.push('--no-encrypt')
}

/** One pack in a child process (async: the server in this one goes on answering); its CPU-seconds, peak RSS, wall. */
async function packOnce (source, nodeArgs = [], cli = CLI) {
  const out = path.join(work, 'out')
  fs.rmSync(out, { recursive: true, force: true })
  fs.rmSync(env.XDG_STATE_HOME, { recursive: true, force: true })
  const timeFile = path.join(work, 'time.txt')
  const child = spawn('/usr/bin/time', ['-f', '%U %S %M %e', '-o', timeFile, process.execPath, ...nodeArgs, cli, 'pack', source, '-o', out, '-q', ...keyArgs, '--s3-endpoint', endpoint], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const code = await new Promise((resolve) => child.on('close', resolve))
  if (code !== 0) throw new Error(`pack ${source} exited ${code}: ${stderr}`)
  const [user, sys, rssKb, wall] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number)
  return { cpu: user + sys, user, sys, rssMb: rssKb / 1024, wall, root: JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')).root }
}

const gb = FILES * MIB * 1048576 / 1e9
const rows = { disk: [], s3: [], ...(COMPARE === undefined ? {} : { s3cmp: [] }) }
try {
  if (PROF !== undefined) {
    fs.mkdirSync(PROF, { recursive: true })
    await packOnce('s3://bench/tree', ['--cpu-prof', '--cpu-prof-dir', PROF])
    console.log(`profile of a pack from S3 in ${PROF}`)
  }
  for (let r = 0; r < RUNS; r++) {
    rows.disk.push(await packOnce(tree))
    if (COMPARE !== undefined && r % 2 === 1) rows.s3cmp.push(await packOnce('s3://bench/tree', [], path.resolve(COMPARE, 'cli/main.js')))
    rows.s3.push(await packOnce('s3://bench/tree'))
    if (COMPARE !== undefined && r % 2 === 0) rows.s3cmp.push(await packOnce('s3://bench/tree', [], path.resolve(COMPARE, 'cli/main.js')))
  }
} finally {
  agent.destroy()
  await app.close()
  fs.rmSync(work, { recursive: true, force: true })
}
// In clear, the same tree gives the same set from either source: a figure from a pack that read wrong bytes is none.
if (!ENCRYPT && new Set(Object.values(rows).flat().map((x) => x.root)).size !== 1) throw new Error('the packs from disk and from S3 made different sets')
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const show = (name) => {
  const cpu = rows[name].map((x) => x.cpu)
  console.log(`${name.padEnd(6)} CPU-s ${cpu.map((c) => c.toFixed(2)).join(' ')} (median ${median(cpu).toFixed(2)}, ${(median(cpu) / gb).toFixed(2)} CPU-s/GB), wall ${rows[name].map((x) => x.wall.toFixed(1)).join(' ')} s, peak RSS ${Math.max(...rows[name].map((x) => x.rssMb)).toFixed(0)} MB`)
}
console.log(`${FILES} files of ${MIB} MiB (${gb.toFixed(2)} GB), ${ENCRYPT ? 'encrypted' : '--no-encrypt'}, ${RUNS} runs each, alternating; load ${os.loadavg()[0].toFixed(1)}`)
show('disk')
show('s3')
console.log(`from S3 / from disk, CPU (medians): ${(median(rows.s3.map((x) => x.cpu)) / median(rows.disk.map((x) => x.cpu))).toFixed(2)}`)
if (COMPARE !== undefined) {
  show('s3cmp')
  console.log(`s3cmp: ${COMPARE}; its from S3 / from disk, CPU (medians): ${(median(rows.s3cmp.map((x) => x.cpu)) / median(rows.disk.map((x) => x.cpu))).toFixed(2)}`)
}
