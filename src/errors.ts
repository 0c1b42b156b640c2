/**
 * Typed errors. Every error packer raises on purpose is a PackerError: it names the thing it concerns
 * (a path, a CAR, a CID) and says what the user can do. The CLI prints `packer: <message>` and exits with `exitCode`.
 */
export type ErrorCode =
  | 'USAGE' // bad command-line arguments
  | 'SOURCE' // source tree unreadable, changed while read
  | 'OUTPUT' // output directory unusable, already holds another set
  | 'NO_SPACE' // ENOSPC
  | 'FORMAT' // manifest, file table, index or CAR not in the expected format
  | 'MISSING_CAR' // a CAR the set needs is absent
  | 'CORRUPT' // a block's hash or an authentication tag does not match
  | 'CRYPTO' // key, recipient or identity problems
  | 'NO_IDENTITY' // no identity opens this set
  | 'EXISTS' // would overwrite an existing file
  | 'UNSAFE_PATH' // a stored path would escape the destination
  | 'MOUNT' // mount point or FUSE problems
  | 'LOCKED' // another packer process holds the output directory
  | 'REMOTE' // an object store refused, failed or could not be reached

export class PackerError extends Error {
  readonly code: ErrorCode
  /** The path, CAR file or CID the error is about, when there is one. */
  readonly subject?: string
  readonly exitCode: number

  constructor (code: ErrorCode, message: string, options: { subject?: string, cause?: unknown, exitCode?: number } = {}) {
    // One line, always: a name or a quoted input may hold line breaks; show them escaped.
    super(message.replace(/\r/g, '\\r').replace(/\n/g, '\\n'), { cause: options.cause })
    this.name = 'PackerError'
    this.code = code
    this.subject = options.subject
    this.exitCode = options.exitCode ?? (code === 'USAGE' ? 2 : 1)
  }
}

/** True when `err` is a Node system error with the given errno code (ENOENT, ENOSPC…). */
export function isErrno (err: unknown, code: string): err is NodeJS.ErrnoException {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code
}
