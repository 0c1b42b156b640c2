// Issue 12's real-tree case: a directory the user names (default /usr/share: tens of thousands of small files, as
// real trees are), packed encrypted by packer (its defaults: age X25519, --compress auto) and backed up by rclone
// crypt, restic and borg, then restored by each; `runs` rounds, the order rotated every round so that no tool always
// runs first or last on a machine whose load drifts. Medians of wall and CPU seconds, largest peak RSS.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import * as packer from './packer.mjs'
import { PEERS } from './peers.mjs'
import { RESTORES } from './restores.mjs'
import { caseRow, ran } from './report.mjs'
import { dirStats, diskUsage, median } from './sys.mjs'

const rm = (p) => fs.rm(p, { recursive: true, force: true })
const TOOLS = ['packer', 'rclone', 'restic', 'borg']
/** The list started at its k-th element: round k's order. */
export const rotate = (xs, k) => xs.map((_, i) => xs[(i + k) % xs.length])

export async function runRealTree (tree, runs, ctx) {
  const { step, log, keyFile, recipient, work, installed, results } = ctx
  const expect = await dirStats(tree)
  console.log(`real tree ${tree}: ${expect.files.toLocaleString('en')} regular files, ${(expect.bytes / 2 ** 20).toFixed(0)} MiB; ${runs} rounds`)
  const fig = { bytes: expect.bytes, files: expect.files }
  const out = (tool) => path.join(work, `real-${tool}`)
  const dest = path.join(work, 'real-dest')
  const tools = TOOLS.filter((t) => t === 'packer' || installed(t))
  for (const t of TOOLS) if (!tools.includes(t)) results.cases[`realPack-${t}`] = { error: 'not installed' }
  for (let r = 1; r <= runs; r++) {
    for (const t of rotate(tools, r - 1)) {
      await step(`realPack-${t}-${r}`, `${t}, encrypted, ${tree} (round ${r})`, async () => t === 'packer'
        ? packer.pack(tree, out(t), ['-r', recipient], { log: log(`real-pack-${t}`), ...fig })
        : { ...fig, ...(await PEERS[t](tree, out(t), log(`real-pack-${t}`))) })
    }
    for (const t of rotate(tools, r - 1)) {
      await step(`realRestore-${t}-${r}`, `${t} restore of ${tree} (round ${r})`, async () => t === 'packer'
        ? packer.unpack(out(t), dest, keyFile, { log: log(`real-restore-${t}`), expect, ...fig })
        : { ...fig, ...(await RESTORES[t](out(t), dest, log(`real-restore-${t}`))) })
      await rm(dest)
    }
  }
  for (const t of tools) await rm(out(t))
  for (const kind of ['Pack', 'Restore']) for (const t of tools) summarizeRounds(results, `real${kind}-${t}`, runs)
}

/** Case `id`'s rounds (cases `id-1` … `id-runs`) summed up as case `id`; the error `none` when none ran. */
export function summarizeRounds (results, id, runs, none = 'no round ran') {
  const rounds = Array.from({ length: runs }, (_, i) => results.cases[`${id}-${i + 1}`]).filter(ran)
  results.cases[id] = rounds.length === 0 ? { error: none } : summary(rounds)
}


/** One case of a tool's rounds: median seconds and CPU, the largest peak RSS, the last round's output size. */
export function summary (rounds) {
  const last = rounds[rounds.length - 1]
  return {
    ...last,
    seconds: median(rounds.map((c) => c.seconds)),
    cpuSeconds: median(rounds.map((c) => c.cpuSeconds)),
    rssBytes: Math.max(...rounds.map((c) => c.rssBytes ?? 0)) || null,
    rounds: rounds.map((c) => ({ seconds: c.seconds, cpuSeconds: c.cpuSeconds, rssBytes: c.rssBytes, load1: c.load1 })),
  }
}

/** Rows: each peer's median against packer's (time ÷ time, and CPU), for the pack and for the restore. */
export function realTreeRows (C, tree, runs) {
  const rows = []
  const add = (r) => { if (r) rows.push(r) }
  const name = tree
  for (const [kind, verb, targetPeers] of [['Pack', 'pack', ['rclone', 'restic', 'borg']], ['Restore', 'restore', ['borg']]]) {
    const mine = C[`real${kind}-packer`]
    add(caseRow(`${name}: packer ${verb}, median of ${runs}`, mine, { vs: 'reference' }))
    for (const peer of ['rclone', 'restic', 'borg']) {
      const c = C[`real${kind}-${peer}`]
      if (!c) continue
      const ratio = ran(c) && ran(mine) ? c.seconds / mine.seconds : null
      const cpu = ran(c) && ran(mine) && c.cpuSeconds && mine.cpuSeconds ? `; packer's CPU ${(mine.cpuSeconds / c.cpuSeconds).toFixed(2)} × ${peer}'s` : ''
      const wanted = targetPeers.includes(peer)
      add(caseRow(`${name}: ${peer} ${kind === 'Pack' ? 'backup' : 'restore'}, median of ${runs}`, c, {
        ratio,
        vs: `${peer}'s time ÷ packer's${cpu}${ran(c) && c.outBytes && ran(mine) && mine.outBytes ? `; stored ${(mine.outBytes / c.outBytes).toFixed(2)} × ${peer}'s` : ''}`,
        target: wanted ? (kind === 'Pack' ? '> 1' : '≥ 1') : '',
        met: !wanted || ratio == null ? null : kind === 'Pack' ? ratio > 1 : ratio >= 1,
      }))
    }
  }
  return rows
}
