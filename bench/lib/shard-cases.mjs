// Issue 14's sharded packing on the many-files tree: `packer plan --shards K` (time, peak RSS, balance), the K
// shards packed at once on this machine (`pack --plan WORK --shard I`, one process each), `join`; their total
// against one plain `pack` of the same tree in the same run (lib/many-files-cases.mjs's manyPackPlain), and what
// the joined set holds against it: the same root CID (issue 14: in clear, a sharded set's root is a single pack's),
// the same piece CIDs, pieces and padded bytes.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { manyFilesTree } from './many-files.mjs'
import * as packer from './packer.mjs'
import { caseRow, ran, rssRow } from './report.mjs'

/** Plans, packs and joins the `files`-file tree in `shards` shards, in clear. ctx: { step, log, work }. */
export async function runShards (files, shards, { step, log, work }) {
  const tree = manyFilesTree(files)
  const dir = path.join(work, `shards-${files}-${shards}`)
  const W = path.join(dir, 'work')
  const out = path.join(dir, 'out')
  const fig = { files }
  const n = files.toLocaleString('en')
  await fs.mkdir(dir, { recursive: true })
  const planned = await step(`shardPlan${shards}`, `packer plan --shards ${shards} --no-encrypt, ${n} files`, () => packer.plan(tree, out, W, shards, ['--no-encrypt'], { log: log('shard-plan'), files }))
  if (!planned) return
  const packed = await step(`shardPack${shards}`, `${shards} × packer pack --plan --shard I, ${Math.min(shards, packer.SHARDS_AT_ONCE)} at once`, () => packer.packShards(W, shards, { log: log('shard-pack'), ...fig }))
  if (!packed) return
  await step(`shardJoin${shards}`, `packer join of ${shards} shards`, () => packer.join(W, out, { log: log('shard-join'), ...fig }))
  await fs.rm(dir, { recursive: true, force: true })
}

/** The table rows of runShards's cases against the single pack `single` (a case of packer.pack, in clear). */
export function shardRows (C, files, shards, single) {
  const rows = []
  const add = (r) => { if (r) rows.push(r) }
  const n = files.toLocaleString('en')
  const k = `${shards} shard${shards === 1 ? '' : 's'}`
  const plan = C[`shardPlan${shards}`]
  const pack = C[`shardPack${shards}`]
  const joined = C[`shardJoin${shards}`]
  add(caseRow(`plan, ${k}, ${n} files`, plan, ran(plan) ? { ratio: plan.balance, vs: 'largest shard ÷ mean (balance)', target: '≤ 1.05', met: plan.balance <= 1.05 } : {}))
  add(caseRow(`${k} packed, ${Math.min(shards, packer.SHARDS_AT_ONCE)} at once`, pack, {}))
  add(caseRow(`join of ${k}`, joined, {}))
  add(rssRow(`peak RSS: plan, ${k}, ${n} files`, plan))
  add(rssRow(`peak RSS: pack of one of ${k}`, pack))
  add(rssRow(`peak RSS: join of ${k}, ${n} files`, joined))
  const parts = [plan, pack, joined]
  if (!parts.every(ran) || !ran(single)) return rows
  const total = parts.reduce((a, c) => a + c.seconds, 0)
  // CPU seconds tell sharding's overhead better than wall time on a shared machine: others' load changes between runs.
  const cpu = parts.every((c) => c.cpuSeconds != null) ? parts.reduce((a, c) => a + c.cpuSeconds, 0) : null
  const cpuVs = cpu != null && single.cpuSeconds != null ? `; CPU ${(cpu / single.cpuSeconds).toFixed(2)} × one pack's` : ''
  rows.push({
    case: `plan + ${k} + join, ${n} files`,
    files,
    seconds: total,
    cpuSeconds: cpu,
    ratio: single.seconds / total,
    vs: `one pack --no-encrypt (time ÷ time)${cpuVs}`,
    load1: pack.load1,
  })
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
  rows.push({ case: `${k} joined: root CID = one pack's`, vs: joined.root, target: 'equal', met: joined.root === single.root })
  rows.push({ case: `${k} joined: piece CIDs = one pack's`, vs: `${joined.pieceCids.length} vs ${single.pieceCids.length} pieces`, target: '', met: same(joined.pieceCids, single.pieceCids) })
  rows.push({
    case: `${k} joined: padded piece bytes ÷ one pack's`,
    bytes: joined.paddedBytes,
    ratio: joined.paddedBytes / single.paddedBytes,
    vs: `one pack: ${single.pieceCids.length} pieces, ${(single.paddedBytes / 2 ** 20).toFixed(0)} MiB padded`,
    target: '1',
    met: joined.paddedBytes === single.paddedBytes,
  })
  return rows
}
