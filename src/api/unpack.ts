import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import { restore } from '../restore/restorer.js'
import { openCarSet, storedPath, type SetOptions, warnMisnamed } from './set.js'
import type { Callbacks, FileEvent, ProgressEvent } from './events.js'

export interface UnpackOptions extends SetOptions, Callbacks<UnpackEvent> {
  /** Destination directory (created if missing). Rerun into the same one to continue an interrupted unpack. */
  output: string
  /** Paths inside the set to restore, with everything below them (default: everything). */
  paths?: Array<string | Uint8Array>
  /** Replace existing files (default: refuse). */
  overwrite?: boolean
  /** Restore owners (as root). */
  sameOwner?: boolean
}

/** unpack's events: what `packer unpack --json` prints, plus `progress`. */
export type UnpackEvent = FileEvent | ProgressEvent | ({ event: 'done' } & UnpackResult)

export interface UnpackResult {
  files: number
  bytes: number
  dirs: number
  symlinks: number
  /** Files found already restored by an interrupted unpack into the same destination, and skipped. */
  already: number
  /**
   * Files that could not be restored, each reported to onWarning as it happened (always 0 in a result: unpack then
   * throws, after its `done` event).
   */
  failed: number
  seconds: number
}

/**
 * `packer unpack`: restores the set (or `paths`) into `output`, checking every block and authenticating every byte.
 * A file that cannot be restored (missing CAR, damaged block) leaves nothing under its name; the others are restored,
 * then a PackerError names the first failure.
 */
export async function unpack (setDir: string, options: UnpackOptions): Promise<UnpackResult> {
  const emit = options.onEvent ?? (() => {})
  const set = await openCarSet(setDir, options)
  await warnMisnamed(set, options.onWarning)
  const started = Date.now()
  const paths = options.paths ?? []
  try {
    const progress: ProgressEvent = { event: 'progress', bytes: 0, totalBytes: 0, files: 0, totalFiles: 0 }
    const r = await restore(set, {
      dest: options.output,
      paths: paths.map((p) => Buffer.from(p)),
      overwrite: !!options.overwrite,
      sameOwner: !!options.sameOwner,
      warn: options.onWarning ?? (() => {}),
      onPlan: (plan) => { progress.totalFiles = plan.files; progress.totalBytes = plan.bytes },
      progress: (e) => {
        if (e.type === 'read') progress.bytes += e.bytes
        else {
          progress.files++
          emit({ event: 'file', path: displayPath(e.path), bytes: e.bytes })
        }
        emit({ ...progress })
      },
    })
    const { firstFailure, ...counts } = r
    const result: UnpackResult = { ...counts, seconds: (Date.now() - started) / 1000 }
    emit({ event: 'done', ...result })
    if (firstFailure !== null) {
      throw new PackerError(firstFailure.code === 'MISSING_CAR' ? 'MISSING_CAR' : 'CORRUPT',
        `${r.failed} file(s) could not be restored (first: ${firstFailure.message}); the others are in ${options.output}`)
    }
    return result
  } finally { await set.close() }
}
