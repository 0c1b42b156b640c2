/** How a long command reports to its caller. Neither callback is required; the library prints nothing itself. */
export interface Callbacks<E> {
  /** Each event as it happens: the objects `packer … --json` prints, and progress. */
  onEvent?: (event: E) => void
  /** Warnings: what was skipped or retried and why (the CLI prints them as `packer: warning: …`). */
  onWarning?: (message: string) => void
}

/** Running totals, sent as bytes are read: for progress bars and dashboards (not printed by --json). */
export interface ProgressEvent { event: 'progress', bytes: number, totalBytes: number, files: number, totalFiles: number }

/** A file packed or restored. */
export interface FileEvent { event: 'file', path: string, bytes: number }
