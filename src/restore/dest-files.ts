import fs from 'node:fs/promises'
import { constants, type BigIntStats } from 'node:fs'
import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import type { TableEntry } from '../format/table-entry.js'
import { nativeAddon, setFileTimesNs, splitNs, type FileOpFailure, type NativeAddon } from '../native-addon.js'
import { faultPoint } from '../fault.js'
import { processAlive } from '../process-alive.js'
import { WriteQueue } from '../car/write-queue.js'
import type { SetReader } from '../read/reader.js'

/**
 * Files as unpack writes them into DEST: each under a temporary name of its own in its directory, renamed to its
 * name only once its bytes are all written and verified and its mode, owner and mtime set. So a file under its name
 * is complete (a rerun keeps it), and a killed unpack leaves only temporaries, which the next run removes.
 */

const SLASH = Buffer.from('/')
const TMP_PREFIX = '.packer-tmp-'
const TMP_NAME = /^\.packer-tmp-(\d+)-/
let tmpCounter = 0

/** A temporary name beside `p`: short (pid and a counter), whatever the length of the file's own name. */
function temporaryFor (p: Buffer): Buffer {
  return Buffer.concat([p.subarray(0, p.lastIndexOf(0x2f) + 1), Buffer.from(`${TMP_PREFIX}${process.pid}-${tmpCounter++}`)])
}

/** Removes the temporary files of an unpack that was killed (its pid is gone) from one directory, read as a stream. */
export async function removeStaleTemporaries (dir: Buffer): Promise<void> {
  const names = await fs.opendir(dir, { encoding: 'buffer' as BufferEncoding, bufferSize: 256 }).catch(() => null)
  if (names === null) return
  for await (const d of names) {
    const name = d.name as unknown as Buffer
    const m = TMP_NAME.exec(name.toString('latin1'))
    if (m && !processAlive(Number(m[1]))) await fs.rm(Buffer.concat([dir, SLASH, name]), { force: true })
  }
}

/** True when `p` (whose lstat is `st`) holds exactly what `e` restores: what an interrupted unpack left complete. */
export async function matches (p: Buffer, st: BigIntStats, e: TableEntry): Promise<boolean> {
  if (e.type === 'symlink') return st.isSymbolicLink() && (await fs.readlink(p, { encoding: 'buffer' })).equals(e.target!)
  // A file's mtime is set only once it is complete and verified, just before its rename.
  return st.isFile() && Number(st.size) === e.size && st.mtimeNs === e.mtimeNs && Number(st.mode & 0o7777n) === e.mode
}

export async function alreadyRestored (p: Buffer, e: TableEntry): Promise<boolean> {
  const st = await fs.lstat(p, { bigint: true }).catch(() => null)
  return st !== null && await matches(p, st, e)
}

/**
 * Streams a file of any size from the reader into `p`: written by a WriteQueue (one writev at a time per file) while
 * the next bytes are read. `onBytes` gets each piece's size as it is read.
 */
export async function restoreFile (view: SetReader, e: TableEntry, p: Buffer, sameOwner: boolean, onBytes: (n: number) => void): Promise<void> {
  const tmp = temporaryFor(p)
  const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  let ok = false
  try {
    let written = 0
    const writes = new WriteQueue(fh)
    try {
      for await (const chunk of view.stream(e)) {
        await writes.write(chunk, written)
        written += chunk.length
        onBytes(chunk.length)
      }
    } catch (err) {
      await writes.drain().catch(() => {}) // the stream's error is the one to report
      throw err
    }
    await writes.drain()
    if (written !== e.size) throw new PackerError('CORRUPT', `${displayPath(e.path)}: restored ${written} bytes, the file table says ${e.size}`)
    faultPoint('restore-write')
    if (sameOwner) await fh.chown(e.uid, e.gid) // before chmod: a chown clears the setuid and setgid bits
    await fh.chmod(e.mode)
    ok = true
  } finally {
    await fh.close()
    if (!ok) await fs.rm(tmp, { force: true })
  }
  await setFileTimesNs(tmp, e.mtimeNs, e.mtimeNs)
  await fs.rename(tmp, p)
}

/** A file's whole content, read (and verified) through the reader. */
export async function readWhole (view: SetReader, e: TableEntry): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of view.stream(e)) parts.push(p)
  const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  if (data.length !== e.size) throw new PackerError('CORRUPT', `${displayPath(e.path)}: restored ${data.length} bytes, the file table says ${e.size}`)
  return data
}

/** Largest file written by WholeFiles: one leaf. */
export const WHOLE_FILE_MAX = 1 << 20
const BATCH_FILES = 64
const BATCH_BYTES = 4 << 20
const BATCHES_IN_FLIGHT = 2

/** A write error as Node gives them (code, syscall, path), naming the file it was restoring. */
export type FileWriteError = NodeJS.ErrnoException & { entry: TableEntry }

function writeError ([, code, syscall]: FileOpFailure, e: TableEntry, p: Buffer): FileWriteError {
  return Object.assign(new Error(`${code}: ${syscall} '${displayPath(p)}'`), { code, syscall, path: displayPath(p), entry: e })
}

const NUL = Buffer.of(0)

interface Pending { entry: TableEntry, path: Buffer, tmp: Buffer, data: Buffer }

/**
 * Small files (read whole, verified) written in batches on libuv's thread pool by the native addon: a batch's
 * temporaries are all written (and their mode, owner and mtime set) in one call, then renamed in a second. A file
 * costs two round trips per batch instead of six of its own (open, write, chmod, close, utimensat, rename): on a tree
 * of small files those were most of the main thread's time. A batch goes when it is full, or at once when no batch is
 * being written, so files do not wait on an idle pool. null without the addon (restoreFile then writes every file).
 */
export class WholeFiles {
  readonly #addon: NativeAddon
  readonly #sameOwner: boolean
  readonly #onWritten: (e: TableEntry) => void
  #batch: Pending[] = []
  #bytes = 0
  #inFlight = 0
  #error: { err: unknown } | undefined
  #wake: Array<() => void> = []

  private constructor (addon: NativeAddon, sameOwner: boolean, onWritten: (e: TableEntry) => void) {
    this.#addon = addon
    this.#sameOwner = sameOwner
    this.#onWritten = onWritten
  }

  static create (sameOwner: boolean, onWritten: (e: TableEntry) => void): WholeFiles | null {
    const addon = nativeAddon()
    return addon === null ? null : new WholeFiles(addon, sameOwner, onWritten)
  }

  /**
   * Queues a file for writing; waits while two batches are being written. Throws the first write error of any batch
   * (a FileWriteError): the files of that batch that were written are kept, renamed into place.
   */
  async add (entry: TableEntry, p: Buffer, data: Buffer): Promise<void> {
    this.#throwIfFailed()
    this.#batch.push({ entry, path: p, tmp: temporaryFor(p), data })
    this.#bytes += data.length
    if (this.#batch.length >= BATCH_FILES || this.#bytes >= BATCH_BYTES || this.#inFlight === 0) this.#send()
    while (this.#inFlight >= BATCHES_IN_FLIGHT && this.#error === undefined) await new Promise<void>((resolve) => this.#wake.push(resolve))
    this.#throwIfFailed()
  }

  /** Writes what is queued and waits for every batch; throws the first write error. */
  async finish (): Promise<void> {
    if (this.#batch.length > 0) this.#send()
    while (this.#inFlight > 0) await new Promise<void>((resolve) => this.#wake.push(resolve))
    this.#throwIfFailed()
  }

  #throwIfFailed (): void {
    if (this.#error !== undefined) throw this.#error.err
  }

  #send (): void {
    const batch = this.#batch
    this.#batch = []
    this.#bytes = 0
    this.#inFlight++
    this.#write(batch).catch((err: unknown) => { this.#error ??= { err } }).finally(() => {
      this.#inFlight--
      for (const wake of this.#wake.splice(0)) wake()
    })
  }

  async #write (batch: Pending[]): Promise<void> {
    const meta = new Float64Array(batch.length * 5)
    for (const [i, f] of batch.entries()) {
      const t = splitNs(f.entry.mtimeNs)
      meta.set([f.entry.mode, this.#sameOwner ? f.entry.uid : -1, this.#sameOwner ? f.entry.gid : -1, Number(t.sec), t.nsec], i * 5)
    }
    const names = Buffer.concat(batch.flatMap((f) => [f.tmp, NUL]))
    const notWritten = await new Promise<FileOpFailure[]>((resolve) => this.#addon.writeFiles(names, batch.map((f) => f.data), meta, resolve))
    let failure = notWritten.length > 0 ? writeError(notWritten[0]!, batch[notWritten[0]![0]]!.entry, batch[notWritten[0]![0]]!.tmp) : undefined
    const failed = new Set(notWritten.map(([i]) => i))
    const ready = batch.filter((f, i) => !failed.has(i))
    for (let i = 0; i < ready.length; i++) faultPoint('restore-write')
    const pairs = Buffer.concat(ready.flatMap((f) => [f.tmp, NUL, f.path, NUL]))
    const notRenamed = await new Promise<FileOpFailure[]>((resolve) => this.#addon.renameFiles(pairs, ready.length, resolve))
    const stuck = new Set(notRenamed.map(([i]) => i))
    for (const [i, f] of ready.entries()) if (!stuck.has(i)) this.#onWritten(f.entry)
    for (const r of notRenamed) {
      const f = ready[r[0]]!
      failure ??= writeError(r, f.entry, f.path)
      await fs.rm(f.tmp, { force: true })
    }
    if (failure !== undefined) throw failure
  }
}
