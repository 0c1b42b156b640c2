import { PackerError } from '../errors.js'
import { CarSet } from '../read/car-set.js'
import { missingReport } from '../read/availability.js'
import { subtree } from '../read/set-table.js'
import { openCarSet, pieceInfo, setEntry, storedPath, type PieceInfo, type SetEntry, type SetOptions, warnMisnamed } from './set.js'
import { s3ReadOptions, type S3Access } from './s3.js'

export interface ListOptions extends SetOptions {
  /** List only this path and what is below it. */
  path?: string
  /** Warnings (e.g. CARs found under names not their own). */
  onWarning?: (message: string) => void
}

/** A file that is not fully available, and the CAR files it still needs. */
export interface MissingFile { path: string, cars: string[] }

/**
 * `packer ls`: the set's entries (parents before children) from the file table, reading no file data. The set is
 * opened when iteration starts (errors are thrown then) and closed when it ends, also by `break`.
 */
export async function * list (setDir: string, options: ListOptions = {}): AsyncIterable<SetEntry> {
  const set = await openCarSet(setDir, options)
  await warnMisnamed(set, options.onWarning)
  try {
    let any = false
    for await (const e of subtree(set.files, storedPath(options.path ?? ''))) { any = true; yield setEntry(e) }
    if (options.path && !any) throw new PackerError('USAGE', `${options.path} is not in the set (see 'packer ls ${setDir}')`, { subject: options.path })
  } finally { await set.close() }
}

/**
 * `packer ls --missing`: the files not fully available because a CAR holding their blocks is absent from the CAR
 * directory, each with the CAR files it needs. Nothing when every CAR is there.
 */
export async function * listMissing (setDir: string, options: SetOptions = {}): AsyncIterable<MissingFile> {
  const set = await openCarSet(setDir, options)
  try {
    yield * missingReport(set)
  } finally { await set.close() }
}

/** `packer pieces`: every CAR of the set with its piece CID and sizes, from the manifest (no key needed). */
export async function pieces (setDir: string, options: S3Access = {}): Promise<PieceInfo[]> {
  const set = await CarSet.open(setDir, { skipTable: true, s3: s3ReadOptions(options) })
  await set.close()
  return pieceInfo(set.manifest)
}
