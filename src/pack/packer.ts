import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { INDEX_FILE } from '../car/block-index.js'
import { MANIFEST_FILE, readManifest, setIdOf, type Manifest } from '../format/manifest.js'
import { formatSize } from '../format/size.js'
import { walkSource } from '../source/walk.js'
import { defaultJobs } from './leaf-workers.js'
import type { SetEncryption } from './set-encryption.js'
import { PackJournal, sameArgs } from './journal.js'
import { OutDirLock, LOCK_FILE } from './out-dir-lock.js'
import { keepCompleteCars } from './car-check.js'
import { finishSet } from './finish.js'
import { packFiles, type OnChange, type PackEvent, type PackFilesResult } from './files.js'
import { compressName } from './compress.js'
import type { Compress } from './leaf-workers.js'
import { faultPoint } from '../fault.js'
import { collectGarbage, trimMalloc } from '../memory.js'

export type { OnChange, PackEvent } from './files.js'

export interface PackOptions {
  source: string
  out: string
  binSize: number
  /** null: files are stored in clear (`--no-encrypt`). */
  encryption: SetEncryption | null
  onChange?: OnChange
  /**
   * Threads that hash and encrypt leaves (`--jobs`; default: the cores available). 1: all on the main thread.
   * The set's bytes do not depend on it (for --no-encrypt they are identical whatever the value).
   */
  jobs?: number
  /** How files are compressed before they are sealed (compressionOf; default null: not at all). */
  compress?: Compress | null
  /** Where the pack journal lives (default: the user's state directory, never OUTDIR). */
  stateDir?: string
  warn: (msg: string) => void
  progress?: (event: PackEvent) => void
}

export interface PackResult extends Omit<PackFilesResult, 'resumedFiles'> {
  manifest: Manifest
  /** Set when this run continued an interrupted one. */
  resumed: { cars: number, files: number } | null
  /** True when OUTDIR already held the set these arguments make: nothing was done. */
  nothingToDo: boolean
}

/** Written at the end of every pack, before the manifest: a resumed pack writes it again. */
const REWRITTEN = new Set([INDEX_FILE])
const isLeftover = (n: string): boolean => n.startsWith('.partial-') || (n.startsWith('.') && n.endsWith('.tmp'))
const isOurCar = (n: string): boolean => /^baga[a-z2-7]+\.car$/.test(n)

export async function ensureDir (out: string): Promise<void> {
  try {
    await fs.mkdir(out, { recursive: true })
    if (!(await fs.stat(out)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    if (isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) throw new PackerError('OUTPUT', `output ${out} exists and is not a directory; choose a directory`, { subject: out })
    throw new PackerError('OUTPUT', `cannot create output directory ${out}: ${(err as Error).message}`, { subject: out, cause: err })
  }
}

/** The one-line error for a full disk while packing. */
export function noSpaceError (out: string, bytes: number, err: unknown): PackerError {
  return new PackerError('NO_SPACE', `no space left on the device of ${out} or of the state directory (the set needs about ${formatSize(bytes)} plus 1% so far); free space and rerun: packer continues where it stopped`, { subject: out, cause: err })
}

/**
 * pack: SOURCE → CAR set in OUT (docs/FORMAT.md). One pass over the source, walked in the file table's order: each
 * byte is read once, each CAR byte written once and hashed for its piece CID as it is written. Every entry goes to the
 * journal as it is packed (on disk: memory does not grow with the number of files); the final stage (finish.ts) then
 * builds the directory nodes, the file table, the descriptor and the block index from the journal. manifest.json is
 * written last: its presence means the set is complete. Complete CARs are journaled, so a rerun after a crash
 * continues.
 */
export async function pack (opts: PackOptions): Promise<PackResult> {
  const source = path.resolve(opts.source)
  const onChange = opts.onChange ?? 'retry'
  await ensureDir(opts.out)
  const lock = await OutDirLock.acquire(opts.out)
  try {
    return await packLocked(opts, source, onChange)
  } finally {
    await lock.release()
  }
}

async function packLocked (opts: PackOptions, source: string, onChange: OnChange): Promise<PackResult> {
  const journal = await PackJournal.for(opts.out, opts.stateDir)
  let enc = opts.encryption
  const args = { source, binSize: opts.binSize, encryption: enc?.fingerprint ?? 'none', names: enc ? enc.names : 'clear' as const, compress: compressName(opts.compress ?? null) }
  const present = await fs.readdir(opts.out)

  if (present.includes(MANIFEST_FILE)) {
    const done = await journal.done()
    const manifest = await readManifest(opts.out).catch(() => null)
    if (done && manifest && sameArgs(done as any, args) && done.setId === setIdOf(manifest)) {
      return { manifest, files: 0, bytes: 0, skipped: [], skippedCount: 0, resumed: null, nothingToDo: true }
    }
    throw new PackerError('OUTPUT', `output ${opts.out} already holds a packer set (manifest.json); choose an empty directory`, { subject: opts.out })
  }

  let state = await journal.load()
  // A journal is stale when OUTDIR holds nothing packer wrote (it was emptied or removed): start afresh.
  if (state && !present.some((n) => isLeftover(n) || isOurCar(n) || REWRITTEN.has(n))) state = null
  if (state && !sameArgs(state.header, args)) {
    throw new PackerError('OUTPUT', `output ${opts.out} holds an interrupted pack made with other arguments (source ${state.header.source}); rerun it with those arguments, or choose an empty directory`, { subject: opts.out })
  }
  const kept = state ? await keepCompleteCars(opts.out, state, async (n) => await journal.record(n)) : 0
  const keptCars = state ? state.cars.slice(0, kept) : []
  const keptNames = new Set(keptCars.map((c) => c.file))
  for (const n of present) {
    if (n === LOCK_FILE || keptNames.has(n)) continue
    if (isLeftover(n) || (state && (isOurCar(n) || REWRITTEN.has(n)))) await fs.rm(path.join(opts.out, n), { force: true })
    else throw new PackerError('OUTPUT', `output ${opts.out} is not empty (it holds ${n}); choose an empty or new directory`, { subject: opts.out })
  }
  if (enc?.withSetIdentity && state?.header.setIdentity) enc = enc.withSetIdentity(state.header.setIdentity)
  await journal.open({ out: await fs.realpath(opts.out), ...args, setIdentity: enc?.setIdentity }, state ?? undefined, kept)

  const writer = new CarSetWriter({
    dir: opts.out,
    binSize: opts.binSize,
    onRecord: async (r) => { await journal.addRecord(r) },
    onCarDone: async (car, index) => {
      faultPoint('car-done')
      await journal.addCar(car)
      faultPoint('car-journaled')
      opts.progress?.({ type: 'car', car, index })
    },
  })
  if (kept > 0) await writer.resume(keptCars, journal.records())

  let walkedBytes = 0
  try {
    const walk = await walkSource(source, { warn: opts.warn, tmpDir: path.join(journal.workDir, 'walk') })
    const packed = await packFiles({
      runs: walk.runs,
      writer,
      journal,
      enc,
      onChange,
      jobs: Math.max(1, Math.floor(opts.jobs ?? defaultJobs())),
      kept,
      compress: opts.compress ?? null,
      tmpDir: journal.workDir,
      warn: opts.warn,
      progress: (e) => { if (e.type === 'scan') walkedBytes = e.bytes; opts.progress?.(e) },
    })
    if (walk.single && packed.files === 0) {
      throw new PackerError('SOURCE', `${source} was not packed (${packed.skipped[0]?.reason ?? 'nothing to pack'})`, { subject: source })
    }
    // The leaf workers are done: their heaps and the ~50 MB malloc arena each leaves go back to the system.
    collectGarbage('major')
    trimMalloc()
    const manifest = await finishSet({
      out: opts.out,
      writer,
      items: () => journal.items(),
      records: () => journal.records(),
      enc,
      single: walk.single,
      binSize: opts.binSize,
      workDir: journal.workDir,
    })
    await journal.finish({ ...args, setId: setIdOf(manifest) })
    const { resumedFiles, ...done } = packed
    return { ...done, manifest, resumed: kept > 0 ? { cars: kept, files: resumedFiles } : null, nothingToDo: false }
  } catch (err) {
    await writer.abort()
    await journal.close()
    if (isErrno(err, 'ENOSPC')) throw noSpaceError(opts.out, walkedBytes, err)
    throw err
  }
}

