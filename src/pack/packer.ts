import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { INDEX_FILE } from '../car/block-index.js'
import type { SetOutput } from '../car/set-output.js'
import { MANIFEST_FILE, parseManifest, setIdOf, type Manifest } from '../format/manifest.js'
import { formatSize } from '../format/size.js'
import type { TreeSource } from '../source/tree-source.js'
import { defaultJobs } from './leaf-workers.js'
import type { SetEncryption } from './set-encryption.js'
import { PackJournal, sameArgs } from './journal.js'
import { keepCompleteCars } from './car-check.js'
import { finishSet } from './finish.js'
import { packFiles, type OnChange, type PackEvent, type PackFilesResult } from './files.js'
import { compressName } from './compress.js'
import type { Compress } from './leaf-workers.js'
import { faultPoint } from '../fault.js'
import { collectGarbage, trimMalloc } from '../memory.js'

export type { OnChange, PackEvent } from './files.js'

export interface PackOptions {
  source: TreeSource
  output: SetOutput
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

/** The one-line error for a full disk while packing. */
export function noSpaceError (out: string, bytes: number, err: unknown): PackerError {
  return new PackerError('NO_SPACE', `no space left on the device of ${out} or of the state directory (the set needs about ${formatSize(bytes)} plus 1% so far); free space and rerun: packer continues where it stopped`, { subject: out, cause: err })
}

/** The manifest of a set in `out`, or null when it cannot be read. */
async function readOutputManifest (out: SetOutput): Promise<Manifest | null> {
  try {
    const size = await out.size(MANIFEST_FILE)
    return size === null ? null : parseManifest((await out.readAt(MANIFEST_FILE, 0, size)).toString('utf8'), `${out.where}${MANIFEST_FILE}`)
  } catch {
    return null
  }
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
  const onChange = opts.onChange ?? 'retry'
  await opts.output.prepare()
  const lock = await opts.output.lock()
  try {
    return await packLocked(opts, onChange)
  } finally {
    await lock.release()
  }
}

async function packLocked (opts: PackOptions, onChange: OnChange): Promise<PackResult> {
  const { source, output } = opts
  const where = output.where
  const journal = await PackJournal.for(await output.identity(), opts.stateDir)
  let enc = opts.encryption
  const args = { source: source.name, binSize: opts.binSize, encryption: enc?.fingerprint ?? 'none', names: enc ? enc.names : 'clear' as const, compress: compressName(opts.compress ?? null) }
  const present = await output.names()

  if (present.includes(MANIFEST_FILE)) {
    const done = await journal.done()
    const manifest = await readOutputManifest(output)
    if (done && manifest && sameArgs(done as any, args) && done.setId === setIdOf(manifest)) {
      return { manifest, files: 0, bytes: 0, skipped: [], skippedCount: 0, resumed: null, nothingToDo: true }
    }
    throw new PackerError('OUTPUT', `output ${where} already holds a packer set (manifest.json); choose an empty ${output.kind}`, { subject: where })
  }

  let state = await journal.load()
  if (state && !sameArgs(state.header, args) && present.some((n) => isLeftover(n) || isOurCar(n) || REWRITTEN.has(n))) {
    throw new PackerError('OUTPUT', `output ${where} holds an interrupted pack made with other arguments (source ${state.header.source}); rerun it with those arguments, or choose an empty ${output.kind}`, { subject: where })
  }
  // Drafts a killed run left (S3 multipart uploads) go, whatever follows: they cost storage and nothing lists them.
  if (state) await output.discardDrafts(state.drafts)
  // A journal is stale when OUTDIR holds nothing packer wrote (it was emptied or removed): start afresh.
  if (state && !present.some((n) => isLeftover(n) || isOurCar(n) || REWRITTEN.has(n))) state = null
  const kept = state ? await keepCompleteCars(output, state, async (n) => await journal.record(n)) : 0
  const keptCars = state ? state.cars.slice(0, kept) : []
  const keptNames = new Set(keptCars.map((c) => c.file))
  for (const n of present) {
    if (keptNames.has(n)) continue
    if (isLeftover(n) || (state && (isOurCar(n) || REWRITTEN.has(n)))) await output.remove(n)
    else throw new PackerError('OUTPUT', `output ${where} is not empty (it holds ${n}); choose an empty or new ${output.kind}`, { subject: where })
  }
  if (enc?.withSetIdentity && state?.header.setIdentity) enc = enc.withSetIdentity(state.header.setIdentity)
  await journal.open({ out: await output.identity(), ...args, setIdentity: enc?.setIdentity }, state ?? undefined, kept)

  const writer = new CarSetWriter({
    sink: output.cars({ onDraft: async (d) => await journal.addDraft(d), largestCar: opts.binSize }),
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
    const walk = await source.walk({ warn: opts.warn, tmpDir: path.join(journal.workDir, 'walk') })
    const packed = await packFiles({
      source,
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
      throw new PackerError('SOURCE', `${source.name} was not packed (${packed.skipped[0]?.reason ?? 'nothing to pack'})`, { subject: source.name })
    }
    // The leaf workers are done: their heaps and the ~50 MB malloc arena each leaves go back to the system.
    collectGarbage('major')
    trimMalloc()
    const manifest = await finishSet({
      output,
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
    if (isErrno(err, 'ENOSPC')) throw noSpaceError(where, walkedBytes, err)
    throw err
  }
}

