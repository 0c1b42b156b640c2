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
  const planned = await step('shardPlan', `packer plan --shards ${shards} --no-encrypt, ${n} files`, () => packer.plan(tree, out, W, shards, ['--no-encrypt'], { log: log('shard-plan'), files }))
  if (!planned) return
  const packed = await step('shardPack', `${shards} × packer pack --plan --shard I at once`, () => packer.packShards(W, shards, { log: log('shard-pack'), ...fig }))
  if (!packed) return
  await step('shardJoin', 'packer join', () => packer.join(W, out, { log: log('shard-join'), ...fig }))
  await fs.rm(dir, { recursive: true, force: true })
}

/** The table rows of runShards's cases against the single pack `single` (a case of packer.pack, in clear). */
export function shardRows (C, files, shards, single) {
  const rows = []
  const add = (r) => { if (r) rows.push(r) }
  const n = files.toLocaleString('en')
  const plan = C.shardPlan
  add(caseRow(`plan, ${shards} shards, ${n} files`, plan, ran(plan) ? { ratio: plan.balance, vs: 'largest shard ÷ mean (balance)', target: '≤ 1.05', met: plan.balance <= 1.05 } : {}))
  add(caseRow(`${shards} shards packed at once`, C.shardPack, {}))
  add(caseRow('join', C.shardJoin, {}))
  add(rssRow(`peak RSS: plan, ${n} files`, plan))
  add(rssRow('peak RSS: one shard\'s pack', C.shardPack))
  add(rssRow(`peak RSS: join, ${n} files`, C.shardJoin))
  const parts = [plan, C.shardPack, C.shardJoin]
  if (!parts.every(ran) || !ran(single)) return rows
  const total = parts.reduce((a, c) => a + c.seconds, 0)
  const joined = C.shardJoin
  rows.push({
    case: `plan + ${shards} shards + join, ${n} files`,
    files,
    seconds: total,
    ratio: single.seconds / total,
    vs: 'one pack --no-encrypt (time ÷ time)',
    load1: C.shardPack.load1,
  })
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
  rows.push({ case: 'joined root CID = one pack\'s', vs: joined.root, target: 'equal', met: joined.root === single.root })
  rows.push({ case: 'joined piece CIDs = one pack\'s', vs: `${joined.pieceCids.length} vs ${single.pieceCids.length} pieces`, target: '', met: same(joined.pieceCids, single.pieceCids) })
  rows.push({
    case: 'padded piece bytes, joined ÷ one pack',
    bytes: joined.paddedBytes,
    ratio: joined.paddedBytes / single.paddedBytes,
    vs: `one pack: ${single.pieceCids.length} pieces, ${(single.paddedBytes / 2 ** 20).toFixed(0)} MiB padded`,
    target: '1',
    met: joined.paddedBytes === single.paddedBytes,
  })
  return rows
}
