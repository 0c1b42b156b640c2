// Issue 16's S3 case: a tree of random 10 MiB files (fauxqs 1.9.2 takes bodies of at most 11 MiB) put in a local S3
// server (fauxqs, in the bench's own process, on 127.0.0.1 only), then, each of `runs` rounds:
//   rclone copy of the bucket to disk, and packer pack --no-encrypt of that copy (the tree "from disk");
//   packer pack --no-encrypt s3://bench/tree (the same tree "from S3");
//   packer pack --no-encrypt of the copy -o s3://bench/out (the set written to S3).
// The server shares the machine's cores with packer, so the bound is on packer's own CPU-seconds per GB
// (from S3 ≤ 1.25 × from disk), user + system of the packer process by /usr/bin/time: the server's work is not in
// it. In clear, every pack must give one root (a figure from a pack that read wrong bytes is none); the order of
// the packs from disk and from S3 swaps every round, so load from other work falls on both.
import crypto from 'node:crypto'
import { existsSync, promises as fs } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as packer from './packer.mjs'
import { summarizeRounds } from './real-tree-cases.mjs'
import { caseRow, ran, rssRow } from './report.mjs'
import { MB, MiB, timed } from './sys.mjs'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const NODE = process.execPath
const rm = (p) => fs.rm(p, { recursive: true, force: true })
const FILE_MIB = 10

/** How many 10 MiB files: quick 100 (1.05 GB: enough that the SDK's fixed loading cost is a small part), full 200. */
export const s3Files = (full, tiny) => (tiny ? 6 : full ? 200 : 100)

/** Credentials only from the environment, as a user's would be; nothing of the caller's AWS profile is read. */
export const BENCH_AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_CONFIG_FILE: '/nonexistent',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
}

/**
 * An S3 server in this process on 127.0.0.1 and plain unsigned requests to it (fauxqs takes any credentials);
 * `setup(app)` may add hooks to the fastify app before it listens (bench/s3-gets.mjs).
 */
export async function startServer (setup = (app) => {}) {
  const { buildApp } = await import('fauxqs')
  const app = buildApp({ logger: false })
  setup(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const endpoint = `http://127.0.0.1:${app.server.address().port}`
  const agent = new http.Agent({ keepAlive: true })
  const request = (method, p, body) => new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/octet-stream', 'content-length': body.length }
    const req = http.request(`${endpoint}/${p}`, { method, agent, headers }, (res) => {
      const chunks = []
      res.on('data', (d) => chunks.push(d))
      res.on('end', () => res.statusCode < 300 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${method} ${p}: HTTP ${res.statusCode}`)))
    })
    req.on('error', reject)
    req.end(body)
  })
  /** Every key under a prefix (one listing page is enough for a set of a few CARs; asserted). */
  const keys = async (bucket, prefix) => {
    const xml = (await request('GET', `${bucket}?list-type=2&max-keys=1000&prefix=${encodeURIComponent(prefix)}`)).toString()
    if (xml.includes('<IsTruncated>true')) throw new Error(`more than 1000 keys under s3://${bucket}/${prefix}`)
    return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1])
  }
  return {
    endpoint,
    put: (p, body) => request('PUT', p, body),
    get: (p) => request('GET', p),
    /** Deletes everything under a prefix: the server keeps objects in memory. */
    purge: async (bucket, prefix) => { for (const k of await keys(bucket, prefix)) await request('DELETE', `${bucket}/${k.split('/').map(encodeURIComponent).join('/')}`) },
    stop: async () => { agent.destroy(); await app.close() },
  }
}

/** The tree: `files` random 10 MiB files (ChaCha20 of zeros keyed by the index: every run packs the same bytes). */
async function makeS3Tree (dir, files) {
  const names = Array.from({ length: files }, (_, i) => `f${String(i).padStart(4, '0')}.bin`)
  const complete = existsSync(dir) && (await fs.readdir(dir)).length === files
  if (!complete) {
    await rm(dir)
    await fs.mkdir(dir, { recursive: true })
    for (const [i, name] of names.entries()) {
      const key = crypto.createHash('sha256').update(`s3-bench ${i}`).digest()
      await fs.writeFile(path.join(dir, name), crypto.createCipheriv('chacha20', key, Buffer.alloc(16)).update(Buffer.alloc(FILE_MIB * MiB)))
    }
  }
  return { names, reused: complete, bytes: files * FILE_MIB * MiB, files }
}

/** Every figure of the case into results.cases (s3Disk, s3Source, s3Output, s3Rclone, each the median of its rounds). */
export async function runS3 (files, runs, ctx) {
  const { step, log, work, installed, results, keep } = ctx
  const tree = path.join(work, 's3-tree')
  const copy = path.join(work, 's3-copy')
  const out = path.join(work, 's3-out')
  const t = await makeS3Tree(tree, files)
  const fig = { bytes: t.bytes, files: t.files }
  console.log(`S3 case: ${files} files of ${FILE_MIB} MiB (${(t.bytes / MB).toFixed(0)} MB)${t.reused ? ', tree reused' : ''}, fauxqs on 127.0.0.1 in this process, ${runs} rounds, --no-encrypt`)
  const server = await startServer()
  const env = {
    ...BENCH_AWS_ENV,
    XDG_STATE_HOME: path.join(work, 's3-state'),
    NO_PROXY: '127.0.0.1', // packer never proxies loopback; rclone (Go) does not either, this says it to both
    RCLONE_CONFIG: path.join(work, 's3-rclone.conf'), // none: the remote is given on the command line
    AWS_CA_BUNDLE: '', // rclone's SDK fails on a CA bundle with its own transport; the server is plain http anyway
  }
  const s3 = ['--s3-endpoint', server.endpoint]
  const roots = new Set()
  const packTimed = async (src, dest, name) => {
    await rm(env.XDG_STATE_HOME)
    if (!dest.startsWith('s3://')) await rm(dest)
    const r = await timed(NODE, [CLI, 'pack', src, '-o', dest, '-q', '--no-encrypt', ...s3], { env, log: log(name) })
    roots.add(dest.startsWith('s3://')
      ? JSON.parse((await server.get('bench/out/manifest.json')).toString()).root
      : packer.setSummary(dest).root)
    return { ...fig, ...r }
  }
  try {
    await server.put('bench', Buffer.alloc(0))
    for (const name of t.names) await server.put(`bench/tree/${name}`, await fs.readFile(path.join(tree, name)))
    await fs.writeFile(env.RCLONE_CONFIG, '')
    // rclone's S3 backend on the command line: provider Other (path-style), keys given, no checksum trailers
    const remote = `:s3,provider=Other,env_auth=false,access_key_id=bench,secret_access_key=bench,endpoint='${server.endpoint}':bench/tree`
    for (let r = 1; r <= runs; r++) {
      if (installed('rclone')) {
        await step(`s3Rclone-${r}`, `rclone copy of the bucket to disk (round ${r})`, async () => {
          await rm(copy)
          const x = await timed('rclone', ['copy', remote, copy], { env, log: log('s3-rclone') })
          if ((await fs.readdir(copy)).length !== files) throw new Error(`rclone copied ${(await fs.readdir(copy)).length} of ${files} objects`)
          return { ...fig, ...x }
        })
      }
      const from = existsSync(copy) && (await fs.readdir(copy)).length === files ? copy : tree
      const pair = [
        () => step(`s3Disk-${r}`, `packer pack --no-encrypt of ${from === copy ? 'the copy' : 'the tree'} on disk (round ${r})`, () => packTimed(from, out, 's3-pack-disk')),
        () => step(`s3Source-${r}`, `packer pack --no-encrypt s3://bench/tree (round ${r})`, () => packTimed('s3://bench/tree', out, 's3-pack-source')),
      ]
      for (const f of r % 2 === 1 ? pair : pair.reverse()) await f()
      await rm(out)
      await step(`s3Output-${r}`, `packer pack --no-encrypt of the tree on disk -o s3://bench/out (round ${r})`, async () => {
        await server.purge('bench', 'out/')
        return await packTimed(from, 's3://bench/out', 's3-pack-output')
      })
      await server.purge('bench', 'out/')
    }
  } finally {
    await server.stop()
    await rm(copy)
    await rm(out)
    await rm(env.XDG_STATE_HOME)
    if (!keep) await rm(tree)
  }
  for (const kind of ['Rclone', 'Disk', 'Source', 'Output']) {
    summarizeRounds(results, `s3${kind}`, runs, kind === 'Rclone' && !installed('rclone') ? 'not installed' : undefined)
  }
  if (roots.size > 1) {
    for (const kind of ['Disk', 'Source', 'Output']) results.cases[`s3${kind}`] = { error: `the packs made ${roots.size} different sets (${[...roots].join(', ')})` }
  }
}

/** Rows: CPU per GB from S3 ÷ from disk (≤ 1.25), packer from S3 against rclone copy + pack, to S3 against to disk, RSS. */
export function s3Rows (C, runs) {
  const rows = []
  const add = (r) => { if (r) rows.push(r) }
  const disk = C.s3Disk
  const source = C.s3Source
  const output = C.s3Output
  const rclone = C.s3Rclone
  if (!disk && !source) return rows
  const m = `median of ${runs}`
  const cpu = (a, b) => (ran(a) && ran(b) && a.cpuSeconds && b.cpuSeconds ? (a.cpuSeconds / a.bytes) / (b.cpuSeconds / b.bytes) : null)
  add(caseRow(`S3: pack --no-encrypt from disk, ${m}`, disk, { vs: 'reference' }))
  const c = cpu(source, disk)
  add(caseRow(`S3: pack --no-encrypt s3://…, ${m}`, source, { ratio: c, vs: 'CPU s/GB ÷ from disk', target: '≤ 1.25', met: c == null ? null : c <= 1.25 }))
  if (rclone) {
    add(caseRow(`S3: rclone copy bucket → disk, ${m}`, rclone, { vs: 'information' }))
    const both = ran(rclone) && ran(disk) ? rclone.seconds + disk.seconds : null
    const ratio = both != null && ran(source) ? both / source.seconds : null
    rows.push({ case: 'S3: rclone copy + pack of the copy', seconds: both, cpuSeconds: ran(rclone) && ran(disk) ? rclone.cpuSeconds + disk.cpuSeconds : null, bytes: disk?.bytes, ratio, vs: 'its time ÷ pack s3://…', target: '> 1', met: ratio == null ? null : ratio > 1, ...(ran(rclone) ? {} : { error: rclone.error }) })
  }
  const time = ran(output) && ran(disk) ? output.seconds / disk.seconds : null
  add(caseRow(`S3: pack --no-encrypt -o s3://…, ${m}`, output, { ratio: time, vs: 'time ÷ to disk (none set)' }))
  if (ran(output)) rows.push({ case: `S3: pack --no-encrypt -o s3://…, ${m}`, ratio: cpu(output, disk), vs: 'CPU s ÷ to disk (none set)' })
  add(rssRow('S3: peak RSS, pack from disk', disk))
  add(rssRow('S3: peak RSS, pack s3://…', source))
  add(rssRow('S3: peak RSS, pack -o s3://…', output))
  return rows
}
