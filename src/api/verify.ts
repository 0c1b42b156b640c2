import { PackerError } from '../errors.js'
import type { CarSet } from '../read/car-set.js'
import path from 'node:path'
import { verifyFiles, verifySet } from '../restore/verifier.js'
import { fixNames as fixCarNames, type Rename } from '../restore/fix-names.js'
import { filesIn, fixNamesCommand } from '../read/availability.js'
import { openCarSet, type SetOptions } from './set.js'
import type { Callbacks } from './events.js'

export interface VerifyOptions extends SetOptions, Callbacks<VerifyEvent> {
  /** Also read every file through decryption (needs a key): checks every age header and chunk, writes nothing. */
  decrypt?: boolean
  /**
   * Check the CARs even when the file table cannot be read (no key, a missing or damaged CAR holding it): the files
   * affected are then not named. Default: only when no identity, passphrase or expected set ID is given.
   */
  tableOptional?: boolean
  /**
   * Then give every CAR found whole under another file name its own name (`<pieceCid>.car`): renames only, in the
   * CAR directory, never overwriting or deleting a file.
   */
  fixNames?: boolean
}

/**
 * A CAR's state: as the manifest says, whole but under a file name that is not its own (deal tools and storage
 * providers take a CAR by its name), absent, shorter, or with bytes that do not match.
 */
export type CarStatus = 'ok' | 'misnamed' | 'missing' | 'truncated' | 'corrupt'

/** One CAR checked: its name in the manifest, and the file read as it (null when none was found). */
export interface CarCheck { car: string, status: CarStatus, detail: string, file: string | null }

/** verify's events: what `packer verify --json` prints (with `event` added), plus `progress`. */
export type VerifyEvent =
  | ({ event: 'car' } & CarCheck)
  /**
   * A file with blocks in a missing or damaged CAR, and those CARs: one event per file, after every CAR's (one pass
   * over the file table; none when it was not read).
   */
  | { event: 'affected', file: string, cars: string[] }
  | { event: 'file', file: string, ok: boolean, detail: string }
  | { event: 'renamed', from: string, to: string }
  | { event: 'notRenamed', from: string, to: string, why: string }
  | { event: 'progress', bytes: number, totalBytes: number, cars: number, totalCars: number }

export interface VerifyResult {
  /** Every CAR as the manifest says and, with decrypt, every file authenticated. */
  ok: boolean
  cars: CarCheck[]
  /** CARs missing or damaged. */
  badCars: number
  /** Files with blocks in those CARs (each sent as an `affected` event); null when the file table was not (wholly) read. */
  affected: number | null
  /** CARs whole under a name not their own (after fixNames: those it could not rename). */
  misnamed: number
  /** CARs given their own names by fixNames. */
  renamed: Rename[]
  /** What to run to give CARs their own names, when some are misnamed. */
  fixCommand: string | null
  /** Files read through decryption (0 without decrypt), and how many of them failed. */
  files: number
  badFiles: number
  seconds: number
}

/**
 * `packer verify`: reads every CAR once, re-hashing every block and recomputing every piece CID against the manifest;
 * with `decrypt`, reads every file too. Problems in the set are reported (`ok: false`), not thrown.
 */
export async function verify (setDir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const emit = options.onEvent ?? (() => {})
  const keyGiven = (options.identities?.length ?? 0) > 0 || options.passphrase !== undefined
  if (options.decrypt && !keyGiven) throw new PackerError('USAGE', '--decrypt needs the identity: give -i FILE or --passphrase')
  let set: CarSet
  let unnamed: string | undefined
  try {
    set = await openCarSet(setDir, options)
  } catch (err) {
    const tableOptional = options.tableOptional ?? (!keyGiven && options.expect === undefined)
    // The table lives in the CARs: when one holding it is missing or damaged, the CARs are still all checked.
    const damaged = err instanceof PackerError && (err.code === 'MISSING_CAR' || err.code === 'CORRUPT')
    if (!((tableOptional && err instanceof PackerError && err.code === 'NO_IDENTITY') || (damaged && (tableOptional || !options.decrypt)))) throw err
    if (damaged) options.onWarning?.(`the file table cannot be read (${(err as Error).message}): the files affected are not named`)
    else unnamed = 'give -i FILE (or --passphrase) to name the files affected'
    set = await openCarSet(setDir, options, true)
  }
  const started = Date.now()
  const named = set.table !== null
  const progress = { event: 'progress' as const, bytes: 0, totalBytes: set.manifest.cars.reduce((n, c) => n + c.size, 0), cars: 0, totalCars: set.manifest.cars.length }
  const result: VerifyResult = { ok: true, cars: [], badCars: 0, affected: named ? 0 : null, misnamed: 0, renamed: [], fixCommand: null, files: 0, badFiles: 0, seconds: 0 }
  try {
    const report = await verifySet(set, (r) => {
      progress.cars++
      emit({ ...progress })
      const check: CarCheck = { car: r.car.file, status: r.status, detail: r.detail, file: r.file === null ? null : path.basename(r.file) }
      result.cars.push(check)
      if (r.status === 'misnamed') result.misnamed++
      else if (r.status !== 'ok') result.badCars++
      emit({ event: 'car', ...check })
    }, (n) => { progress.bytes += n; emit({ ...progress }) })
    const bad = new Set(report.cars.flatMap((r) => r.status === 'ok' || r.status === 'misnamed' ? [] : [r.index]))
    if (unnamed !== undefined && bad.size > 0) options.onWarning?.(unnamed)
    if (named && bad.size > 0) {
      try {
        for await (const f of filesIn(set, bad)) {
          result.affected!++
          emit({ event: 'affected', file: f.path, cars: f.cars })
        }
      } catch (err) {
        if (!(err instanceof PackerError) || (err.code !== 'MISSING_CAR' && err.code !== 'CORRUPT')) throw err
        result.affected = null
        options.onWarning?.(`the file table cannot be read to the end (${err.message}): not every file affected is named`)
      }
    }
    for (const c of report.copies) {
      const car = set.manifest.cars[c.car]!.file
      options.onWarning?.(`${path.basename(c.file)} is another copy of CAR ${car} (by its header; not read); deal tools need only ${car}`)
    }
    if (options.decrypt) {
      await verifyFiles(set, (f) => {
        result.files++
        if (!f.ok) result.badFiles++
        emit({ event: 'file', file: f.path, ok: f.ok, detail: f.detail })
      })
    }
    if (options.fixNames) {
      const fix = await fixCarNames(set.cars.where, report.cars, (r) => { result.renamed.push(r); emit({ event: 'renamed', ...r }) })
      for (const b of fix.blocked) emit({ event: 'notRenamed', ...b })
      result.misnamed -= fix.renamed.length
    }
    if (result.misnamed > 0) result.fixCommand = fixNamesCommand(set)
  } finally { await set.close() }
  result.ok = result.badCars + result.misnamed + result.badFiles === 0
  result.seconds = (Date.now() - started) / 1000
  return result
}
