// packer's own commands as the bench times them (lib/sys.mjs's timed(): cold cache, until on disk, peak RSS):
// keygen, pack, unpack, ls, verify, and the sharded path plan → pack --plan --shard I (all at once) → join.
import { existsSync, promises as fs, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { dirStats, diskUsage, run, timed } from './sys.mjs'

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
const NODE = process.execPath
const rm = (p) => fs.rm(p, { recursive: true, force: true })

/** The age recipient of the identity in keyFile, made with `packer keygen` if missing. */
export function recipientOf (keyFile) {
  if (!existsSync(keyFile)) run(NODE, [CLI, 'keygen', '-o', keyFile])
  const recipient = /public key: (age1[0-9a-z]+)/.exec(readFileSync(keyFile, 'utf8'))?.[1]
  if (!recipient) throw new Error(`no recipient in ${keyFile}`)
  return recipient
}

/** What a set's manifest says of its CARs: root CID, piece CIDs, padded piece bytes. */
export function setSummary (out) {
  const man = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'))
  const cars = man.cars ?? []
  return {
    root: man.root,
    pieceCids: cars.map((c) => c.pieceCid),
    carBytes: cars.reduce((a, c) => a + c.size, 0),
    paddedBytes: cars.reduce((a, c) => a + c.pieceSize, 0),
  }
}

export async function pack (src, out, extra, { log, bytes, files }) {
  await rm(out)
  const r = await timed(NODE, [CLI, 'pack', src, '-o', out, '-q', ...extra], { log })
  return { bytes, files, outBytes: diskUsage(out), ...setSummary(out), ...r }
}

/** Unpacks and checks that the files and bytes restored are those expected; bytes, files: the figures to report. */
export async function unpack (set, dest, keyFile, { log, expect, bytes, files }) {
  await rm(dest)
  const r = await timed(NODE, [CLI, 'unpack', set, '-o', dest, '-q', '-i', keyFile], { log })
  const got = await dirStats(dest)
  if (got.bytes !== expect.bytes || got.files !== expect.files) {
    throw new Error(`unpack restored ${got.files} files / ${got.bytes} B, expected ${expect.files} / ${expect.bytes}`)
  }
  return { bytes, files, ...r }
}

/** `packer ls -l` of the whole set, its listing thrown away. */
export async function ls (set, keyFile, { log, files }) {
  const r = await timed('sh', ['-c', '"$0" "$1" ls -l "$2" -i "$3" > /dev/null', NODE, CLI, set, keyFile], { log })
  return { files, ...r }
}

/** `packer verify` (every block, size and piece CID; no decryption). */
export async function verify (set, { log, bytes, files }) {
  const r = await timed(NODE, [CLI, 'verify', set, '-q'], { log })
  return { bytes, files, ...r }
}

/** `packer plan` into WORK; balance: the largest shard's bytes ÷ the mean (from WORK/plan.json). */
export async function plan (src, out, work, shards, extra, { log, files }) {
  await rm(out)
  await rm(work)
  const r = await timed(NODE, [CLI, 'plan', src, '-o', out, '--work', work, '--shards', String(shards), '-q', ...extra], { log })
  const sizes = JSON.parse(readFileSync(path.join(work, 'plan.json'), 'utf8')).shards.map((s) => s.bytes)
  const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length
  return { files, shardBytes: sizes, balance: Math.max(...sizes) / mean, ...r }
}

/** At most this many shard processes at once: 1, 2 and 4 shards run together, 64 shards four at a time (not 10 GB). */
export const SHARDS_AT_ONCE = 4

/** Every shard of the plan in WORK packed, SHARDS_AT_ONCE processes at a time; timed together, RSS of the largest. */
export async function packShards (work, shards, { log, bytes, files }) {
  const script = 'seq 0 $(($3 - 1)) | xargs -P "$4" -I{} "$0" "$1" pack --plan "$2" --shard {} -q'
  const r = await timed('sh', ['-c', script, NODE, CLI, work, String(shards), String(Math.min(shards, SHARDS_AT_ONCE))], { log })
  return { bytes, files, ...r }
}

export async function join (work, out, { log, bytes, files }) {
  const r = await timed(NODE, [CLI, 'join', work, '-q'], { log })
  return { bytes, files, outBytes: diskUsage(out), ...setSummary(out), ...r }
}
