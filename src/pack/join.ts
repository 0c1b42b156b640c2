import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { CarBlockIterator } from '@ipld/car/iterator'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter, MIN_BIN_SIZE } from '../car/car-set-writer.js'
import { dirCarSink } from '../car/dir-sink.js'
import { MANIFEST_FILE, readManifest, setIdOf, type CarRecord, type Manifest } from '../format/manifest.js'
import { PackJournal, type JournalState } from './journal.js'
import { finishSet } from './finish.js'
import { dirOutput } from './dir-output.js'
import { plannedSetEncryption } from './set-encryption.js'
import { WorkDir, type Plan } from './work-dir.js'
import type { PackEvent } from './files.js'

export interface JoinOptions {
  work: string
  warn: (msg: string) => void
  progress?: (event: PackEvent | { type: 'moving', bytes: number }) => void
}

export interface JoinResult {
  manifest: Manifest
  nothingToDo: boolean
  shards: number
  /** Shards' last CARs, partly filled, whose blocks went into full CARs; and their bytes. */
  movedCars: number
  movedBytes: number
  /** What the join removed: from OUTDIR (moved CARs, CARs of runs that lost or were killed) and from WORK. */
  removed: string[]
}

/** One committed shard as the join reads it. */
interface Shard {
  index: number
  journal: PackJournal
  state: JournalState
  /** Index of its last CAR when partly filled (its blocks move), else null. */
  tail: number | null
  /** Set index of each of its CARs (undefined for the tail). */
  global: Array<number | undefined>
  /** Where the tail's blocks went: runs of record numbers → the CAR holding them from there on. */
  moved: Array<{ from: number, car: number }>
}

/** The CAR a record of a shard's tail went to (runs sorted by `from`). */
function movedCar (moved: Shard['moved'], record: number): number {
  let lo = 0
  let hi = moved.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (moved[mid]!.from <= record) lo = mid
    else hi = mid - 1
  }
  return moved[lo]!.car
}

/** The CARs holding records [first, end) of a shard's tail (one lookup per run they cross). */
function movedCars (s: Shard, first: number, end: number, into: Set<number>): void {
  const tailFirst = s.tail === 0 ? 0 : s.state.blockCounts[s.tail! - 1]!
  const tailEnd = s.state.blockCounts[s.tail!]!
  const a = Math.max(first, tailFirst)
  const b = Math.min(end, tailEnd)
  if (a >= b) return
  into.add(movedCar(s.moved, a))
  for (const r of s.moved) if (r.from > a && r.from < b) into.add(r.car)
}

/**
 * join: makes one ordinary set of a plan's committed shards without reading source data again: the shards' CARs (all
 * but their partly filled last ones) keep their place; the blocks of those last CARs are written again into full CARs
 * (no re-encryption: the same blocks); then, as a pack's final stage, the directories, the file table (each file's
 * `cars` in the set's numbering), the descriptor, the block index and the manifest. Then it removes what the set does
 * not need: the moved CARs and any CAR no committed run made (killed or losing runs), from OUTDIR; the shards'
 * journals (names, keys) and lists from WORK.
 */
export async function joinShards (o: JoinOptions): Promise<JoinResult> {
  const work = new WorkDir(o.work)
  const joined = await fs.readFile(work.joined, 'utf8').then((t) => JSON.parse(t) as { setId: string, out: string }, () => null)
  if (joined !== null) {
    const manifest = await readManifest(joined.out)
    if (setIdOf(manifest) !== joined.setId) throw new PackerError('OUTPUT', `${joined.out} no longer holds the set ${work.dir} joined (${joined.setId})`, { subject: joined.out })
    return { manifest, nothingToDo: true, shards: 0, movedCars: 0, movedBytes: 0, removed: await cleanUp(work, manifest, joined.out) }
  }
  const plan = await work.readPlan()
  const missing: number[] = []
  for (let i = 0; i < plan.shards.length; i++) if (!await fs.access(work.done(i)).then(() => true, () => false)) missing.push(i)
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? ` and ${missing.length - 10} more` : '')
    throw new PackerError('USAGE', `${missing.length} of ${plan.shards.length} shard(s) have not committed (shard ${shown}); run them (packer pack --plan ${work.dir} --shard I), see 'packer status ${work.dir}', then join again`)
  }
  const shards = await loadShards(work, plan)

  const journal = await PackJournal.at(path.join(work.joinDir, 'pack'))
  // A join that stopped half-way: its CARs go, it starts again (the shards' CARs are untouched until the end).
  const earlier = await journal.load().catch(() => null)
  for (const c of earlier?.cars ?? []) await fs.rm(path.join(plan.out, c.file), { force: true })
  for (const n of await fs.readdir(plan.out)) if (n.startsWith('.partial-join-')) await fs.rm(path.join(plan.out, n), { force: true })
  const enc = plannedSetEncryption(plan.encryption)
  await journal.open({ out: plan.out, source: plan.source, binSize: plan.binSize, encryption: enc?.fingerprint ?? 'none', names: enc ? enc.names : 'clear', setIdentity: enc?.setIdentity })

  const kept: CarRecord[] = []
  for (const s of shards) {
    s.state.cars.forEach((c, i) => {
      if (i === s.tail) return
      s.global[i] = kept.length
      kept.push(c)
    })
  }
  const writer = new CarSetWriter({
    sink: dirCarSink(plan.out, { partialName: (n) => `.partial-join-${n}.car` }),
    binSize: plan.binSize,
    onRecord: async (r) => { await journal.addRecord(r) },
    onCarDone: async (car, index) => { await journal.addCar(car); o.progress?.({ type: 'car', car, index }) },
  })
  await writer.resume(kept, (async function * () {})())
  try {
    let movedBytes = 0
    for (const s of shards) {
      if (s.tail === null) continue
      movedBytes += await moveTail(plan, s, writer, (n) => o.progress?.({ type: 'moving', bytes: n }))
    }
    // The set's entries in table order: each shard's, its CARs renumbered; a directory cut by a shard boundary once.
    let lastDir: Buffer | null = null
    for (const s of shards) {
      for await (const item of s.journal.items()) {
        if ('dir' in item) {
          if (lastDir === null || !lastDir.equals(item.dir)) await journal.addDir(item.dir)
          lastDir = item.dir
          continue
        }
        const e = item.entry
        if (e.type !== 'file') { await journal.addEntry({ entry: e }); continue }
        const cars = new Set<number>()
        for (const c of e.cars!) if (c !== s.tail) cars.add(s.global[c]!)
        if (s.tail !== null && e.cars!.includes(s.tail)) {
          movedCars(s, item.records![0], item.records![1], cars)
          for (const r of item.refs ?? []) movedCars(s, r, r + 1, cars)
        }
        await journal.addEntry({ entry: { ...e, cars: [...cars].sort((a, b) => a - b) }, dagSize: item.dagSize })
      }
    }
    const manifest = await finishSet({
      output: dirOutput(plan.out),
      writer,
      items: () => journal.items(),
      records: () => allRecords(shards, journal),
      enc,
      single: plan.single,
      binSize: plan.binSize,
      workDir: journal.workDir,
    })
    await fs.writeFile(work.joined, JSON.stringify({ setId: setIdOf(manifest), root: manifest.root, out: plan.out, plan: plan.id }) + '\n', { mode: 0o600 })
    const removed = await cleanUp(work, manifest, plan.out)
    return { manifest, nothingToDo: false, shards: shards.length, movedCars: shards.filter((s) => s.tail !== null).length, movedBytes, removed }
  } catch (err) {
    await writer.abort()
    await journal.close()
    throw err
  }
}

/** Every committed shard's journal and CARs, checked present in OUTDIR (by name and size). */
async function loadShards (work: WorkDir, plan: Plan): Promise<Shard[]> {
  const shards: Shard[] = []
  for (let i = 0; i < plan.shards.length; i++) {
    const run = (await fs.readFile(work.done(i), 'utf8')).trim()
    const journal = await PackJournal.at(path.join(work.runDir(i, run), 'pack'))
    const state = await journal.load()
    if (state === null) throw new PackerError('FORMAT', `shard ${i}'s committed run ${run} has no journal in ${work.runDir(i, run)}; pack the shard again (remove ${work.done(i)})`, { subject: work.runDir(i, run) })
    for (const c of state.cars) {
      const st = await fs.stat(path.join(plan.out, c.file)).catch(() => null)
      if (st === null || st.size !== c.size) {
        throw new PackerError('MISSING_CAR', `CAR ${c.file} of shard ${i} is ${st === null ? 'missing from' : 'of the wrong size in'} ${plan.out}; pack the shard again (remove ${work.done(i)} and its runs) before joining`, { subject: c.file })
      }
    }
    const last = state.cars.length - 1
    const tail = last >= 0 && state.cars[last]!.size + MIN_BIN_SIZE <= plan.binSize ? last : null
    shards.push({ index: i, journal, state, tail, global: [], moved: [] })
  }
  return shards
}

/** Writes the blocks of a shard's partly filled last CAR again, in order, into the join's CARs; notes where each went. */
async function moveTail (plan: Plan, s: Shard, writer: CarSetWriter, onBytes: (n: number) => void): Promise<number> {
  const car = s.state.cars[s.tail!]!
  const file = path.join(plan.out, car.file)
  let record = s.tail === 0 ? 0 : s.state.blockCounts[s.tail! - 1]!
  const it = await CarBlockIterator.fromIterable(createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>)
  for await (const { cid, bytes } of it) {
    if (!crypto.createHash('sha256').update(bytes).digest().equals(cid.multihash.digest)) {
      throw new PackerError('CORRUPT', `CAR ${car.file} of shard ${s.index} is damaged: block ${cid} does not match its hash; pack the shard again`, { subject: car.file })
    }
    const at = await writer.put(cid, bytes)
    const last = s.moved[s.moved.length - 1]
    if (last === undefined || last.car !== at.car) s.moved.push({ from: record, car: at.car })
    record++
    onBytes(bytes.length)
  }
  if (record !== s.state.blockCounts[s.tail!]) throw new PackerError('CORRUPT', `CAR ${car.file} of shard ${s.index} holds other blocks than its journal says; pack the shard again`, { subject: car.file })
  return car.size
}

/** Every block record of the set: the shards' (but their moved CARs'), renumbered, then the join's own. */
async function * allRecords (shards: Shard[], journal: PackJournal): AsyncGenerator<Buffer> {
  for (const s of shards) {
    const count = s.state.blockCounts[s.state.blockCounts.length - 1] ?? 0
    for await (const r of s.journal.records(count)) {
      const car = r.readUInt32LE(32)
      if (car === s.tail) continue
      r.writeUInt32LE(s.global[car]!, 32)
      yield r
    }
  }
  yield * journal.records()
}

/**
 * After the join: OUTDIR keeps exactly the manifest's CARs (moved ones, and those of runs that lost or were killed,
 * go), WORK keeps only joined.json (the shards' lists name files, their journals hold keys). Idempotent.
 */
async function cleanUp (work: WorkDir, manifest: Manifest, out: string): Promise<string[]> {
  const removed: string[] = []
  const keep = new Set(manifest.cars.map((c) => c.file))
  for (const n of await fs.readdir(out)) {
    if ((n.endsWith('.car') && !keep.has(n)) || n.startsWith('.partial-')) {
      await fs.rm(path.join(out, n), { force: true })
      removed.push(path.join(out, n))
    }
  }
  for (const n of ['shards', 'join', 'plan.json']) {
    const p = path.join(work.dir, n)
    try {
      await fs.access(p)
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue
      throw err
    }
    await fs.rm(p, { recursive: true, force: true })
    removed.push(p)
  }
  if (!await fs.access(path.join(out, MANIFEST_FILE)).then(() => true, () => false)) throw new Error('join: no manifest after the join')
  return removed
}
