import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError } from '../errors.js'
import { encodeHeader, newFileKey, passphraseRecipient } from '../crypto/index.js'
import type { TreeSource } from '../source/tree-source.js'
import { VERSION } from '../version.js'
import { ensureDir } from './dir-output.js'
import type { SetEncryption } from './set-encryption.js'
import type { Compress } from './leaf-workers.js'
import { compressName } from './compress.js'
import { ShardListWriter, WorkDir, newPlan, type Plan, type PlannedEncryption, type ShardTotals } from './work-dir.js'
import { Appender, readLines } from '../spill/lines.js'

export interface PlanOptions {
  source: TreeSource
  out: string
  work: string
  binSize: number
  /** How many shards; or `shardBytes`, the bytes a shard should hold. */
  shards?: number
  shardBytes?: number
  encryption: SetEncryption | null
  compress: Compress | null
  /** Passphrase sets: the passphrase, to seal the table index's key now (the join will not ask for it). */
  passphrase?: string
  warn: (msg: string) => void
  progress?: (files: number, bytes: number) => void
}

/** What a shard's share is weighed by: its bytes, and a little for each entry (blocks, table lines). */
const ENTRY_WEIGHT = 1024

async function emptyOrNew (dir: string, what: string, mode?: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode })
  const present = await fs.readdir(dir)
  if (present.length > 0) throw new PackerError('OUTPUT', `${what} ${dir} is not empty (it holds ${present[0]}); choose an empty or new directory`, { subject: dir })
}

function plannedEncryption (enc: SetEncryption | null, passphrase: string | undefined): PlannedEncryption {
  if (enc === null) return null
  if (enc.setIdentity === undefined) return { names: enc.names, recipients: enc.fileRecipients, kinds: enc.recipientKinds, fingerprint: enc.fingerprint }
  if (passphrase === undefined) throw new Error('plan: a passphrase set without its passphrase')
  const indexKey = newFileKey()
  const indexHeader = encodeHeader(indexKey, [passphraseRecipient(passphrase)])
  return { names: enc.names, passphrase: { setIdentity: enc.setIdentity, indexKey: indexKey.toString('base64'), indexHeader: indexHeader.toString('base64') } }
}

/**
 * plan: walks SOURCE once (metadata only, in the file table's order) and cuts it into shards, each a run of the
 * order weighing about as much as the others (bytes, and a little per entry): a cut falls between two entries, never
 * inside a file, so a shard exceeds its share by at most its largest file. The whole list goes to WORK first (one
 * walk, memory bounded), then is cut once its total is known. Everything a shard needs is in WORK (mode 0700).
 */
export async function makePlan (o: PlanOptions): Promise<Plan> {
  if ((o.shards === undefined) === (o.shardBytes === undefined)) throw new PackerError('USAGE', 'give either --shards N or --shard-size SIZE')
  if (o.shards !== undefined && (!Number.isSafeInteger(o.shards) || o.shards < 1 || o.shards > 100_000)) throw new PackerError('USAGE', `--shards ${o.shards}: give a whole number from 1 to 100000`)
  const work = new WorkDir(o.work)
  await emptyOrNew(work.dir, 'work directory', 0o700)
  await fs.chmod(work.dir, 0o700)
  await ensureDir(o.out)
  await emptyOrNew(path.resolve(o.out), 'output', undefined)
  const tmp = path.join(work.dir, 'plan-tmp')
  await fs.mkdir(tmp, { mode: 0o700 })
  try {
    const walk = await o.source.walk({ warn: o.warn, tmpDir: tmp })
    // One walk: everything to a list, weighed as it goes.
    const all = new ShardListWriter(path.join(tmp, 'all.jsonl'))
    let total = 0
    let files = 0
    let bytes = 0
    for await (const run of walk.runs) {
      await all.add(run)
      for (const e of run.entries) {
        total += ENTRY_WEIGHT
        if (e.type !== 'file') continue
        files++
        bytes += Number(e.stat.size)
        total += Number(e.stat.size)
      }
      o.progress?.(files, bytes)
    }
    await all.close()
    const count = o.shards ?? Math.max(1, Math.ceil(total / o.shardBytes!))
    const share = total / count
    const shards = await cut(path.join(tmp, 'all.jsonl'), count, share, work)
    const plan = newPlan({
      ...o.source.spec, out: path.resolve(o.out), binSize: o.binSize, single: walk.single,
      encryption: plannedEncryption(o.encryption, o.passphrase), compress: compressName(o.compress), shards, createdBy: `packer ${VERSION}`,
    })
    await work.writePlan(plan)
    return plan
  } finally {
    await fs.rm(tmp, { recursive: true, force: true })
  }
}

/** Splits the whole list into `count` shard lists of about `share` weight each, repeating the directory line at a cut. */
async function cut (all: string, count: number, share: number, work: WorkDir): Promise<ShardTotals[]> {
  const totals: ShardTotals[] = []
  let shard = -1
  let out: Appender | null = null
  let dirLine = ''
  let weight = 0
  const open = async (): Promise<void> => {
    await out?.close()
    shard++
    await fs.mkdir(work.shardDir(shard), { recursive: true, mode: 0o700 })
    out = new Appender(work.entries(shard))
    await fs.writeFile(out.file, '', { mode: 0o600 })
    totals.push({ entries: 0, files: 0, bytes: 0 })
    if (dirLine !== '') await out.write(dirLine + '\n')
  }
  await open()
  for await (const line of readLines(all)) {
    if (line === '') continue
    if (line.startsWith('{"dir":')) { dirLine = line; await out!.write(line + '\n'); continue }
    const o = JSON.parse(line)
    const size = o.t === 'file' ? Number(o.s[2]) : 0
    // A new shard starts when this entry would carry the current one past its share (never before its first entry).
    if (shard < count - 1 && totals[shard]!.entries > 0 && weight + (ENTRY_WEIGHT + size) / 2 > share * (shard + 1)) await open()
    weight += ENTRY_WEIGHT + size
    const t = totals[shard]!
    t.entries++
    if (o.t === 'file') { t.files++; t.bytes += size }
    await out!.write(line + '\n')
  }
  while (shard < count - 1) await open()
  await out!.close()
  return totals
}
