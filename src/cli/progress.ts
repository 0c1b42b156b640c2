import { formatSize } from '../format/size.js'

export type ProgressMode = 'bar' | 'json' | 'none'

/** A bar on a terminal, JSON lines for scripts (--json), or nothing (--quiet, or output not a terminal). */
export function progressMode (o: { quiet?: boolean, json?: boolean }): ProgressMode {
  if (o.json) return 'json'
  if (o.quiet || !process.stdout.isTTY || !process.stderr.isTTY) return 'none'
  return 'bar'
}

function clock (s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--'
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = Math.floor(s % 60)
  return (h > 0 ? `${h}:${String(m).padStart(2, '0')}` : String(m)) + `:${String(sec).padStart(2, '0')}`
}

/**
 * Progress of one long command: bytes done and total, files, MB/s, ETA and what it is working on. Redraws the bar at
 * most five times a second on stderr; JSON mode prints each event as one line on stdout.
 */
export class Progress {
  readonly mode: ProgressMode
  /** When the first counts arrived: the rate leaves out what came before (a passphrase typed, a key read). */
  #started: number | undefined
  totalBytes = 0
  totalFiles = 0
  bytes = 0
  files = 0
  current = ''
  #drawn = 0
  #label: string

  constructor (mode: ProgressMode, label: string) { this.mode = mode; this.#label = label }

  /** New running totals (the API's progress event; `files` counts CARs for verify); redraws the bar. */
  update (c: { bytes: number, totalBytes: number, files: number, totalFiles: number }): void {
    this.#started ??= Date.now()
    this.bytes = c.bytes
    this.totalBytes = c.totalBytes
    this.files = c.files
    this.totalFiles = c.totalFiles
    this.tick()
  }

  event (obj: object): void {
    if (this.mode === 'json') process.stdout.write(JSON.stringify(obj) + '\n')
  }

  status (text: string): void {
    if (this.mode !== 'bar') return
    process.stderr.write(`\r\x1b[K${this.#label}: ${text}`)
  }

  get rate (): number { return this.bytes / Math.max((Date.now() - (this.#started ?? Date.now())) / 1000, 1e-3) }

  tick (force = false): void {
    if (this.mode !== 'bar') return
    const now = Date.now()
    if (!force && now - this.#drawn < 200) return
    this.#drawn = now
    const frac = this.totalBytes > 0 ? Math.min(1, this.bytes / this.totalBytes) : (this.totalFiles > 0 ? this.files / this.totalFiles : 0)
    const width = 24
    const full = Math.round(frac * width)
    const eta = this.rate > 0 ? (this.totalBytes - this.bytes) / this.rate : NaN
    const line = `${this.#label} [${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}% ` +
      `${formatSize(this.bytes)}/${formatSize(this.totalBytes)}  ${this.files}/${this.totalFiles} files  ` +
      `${(this.rate / 1e6).toFixed(0)} MB/s  ETA ${clock(eta)}${this.current ? `  ${this.current}` : ''}`
    // A terminal that reports no size (0 columns, e.g. a bare pty) gets a 120-column line.
    const cols = (process.stderr.columns ?? 0) > 20 ? process.stderr.columns : 120
    process.stderr.write(`\r\x1b[K${line.slice(0, cols - 1)}`)
  }

  /** Clears the bar so the summary starts on a clean line. */
  end (): void {
    if (this.mode === 'bar') process.stderr.write('\r\x1b[K')
  }
}
