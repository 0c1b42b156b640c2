import fs from 'node:fs/promises'
import { constants } from 'node:fs'
import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import { nativeAddon } from '../native-addon.js'
import type { SourceEntry } from './walk.js'

/** Thrown when a listed file is gone by the time it is read. */
export class SourceVanishedError extends PackerError {
  constructor (entry: SourceEntry) {
    const shown = displayPath(entry.abs)
    super('SOURCE', `${shown}: vanished while packing (it was listed, then removed); rerun, or use --on-change=skip to leave it out`, { subject: shown })
  }
}

/** Thrown when a file's size, mtime or inode differs between listing and reading: its bytes cannot be trusted. */
export class SourceChangedError extends PackerError {
  constructor (entry: SourceEntry, what: string) {
    const shown = displayPath(entry.abs)
    super('SOURCE', `${shown}: changed while being packed (${what}); rerun when it is stable, or use --on-change=retry or skip`, { subject: shown })
  }
}

/** What identifies a listed file's content: a read must find these unchanged. */
export interface SourceIdentity { dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint }

/** What went wrong reading a source file, as plain data (it crosses from a leaf worker, src/pack/leaf-workers.ts). */
export type SourceProblem =
  | { kind: 'vanished' }
  | { kind: 'changed', what: string }
  | { kind: 'open', code: string }
  | { kind: 'read', at: number, code: string }

/** The error a SourceProblem means for `entry`. */
export function sourceProblemError (entry: SourceEntry, p: SourceProblem): PackerError {
  const shown = displayPath(entry.abs)
  switch (p.kind) {
    case 'vanished': return new SourceVanishedError(entry)
    case 'changed': return new SourceChangedError(entry, p.what)
    case 'open': return new PackerError('SOURCE', `${shown}: cannot open (${p.code}); make it readable or move it out of the source`, { subject: shown })
    case 'read': return new PackerError('SOURCE', `${shown}: read failed at byte ${p.at} (${p.code})`, { subject: shown })
  }
}

/** What a failed open(2) means (errno code). Self-contained: leaf workers run its source text (readWholeFileSync). */
export function openProblem (code: string): SourceProblem {
  if (code === 'ENOENT') return { kind: 'vanished' }
  if (code === 'ELOOP') return { kind: 'changed', what: 'it became a symlink' }
  return { kind: 'open', code }
}

/** How an open file differs from the one listed, or null. Self-contained, as openProblem. */
export function statMismatch (expect: SourceIdentity, st: { ino: bigint, dev: bigint, size: bigint, mtimeNs: bigint }, when: string): string | null {
  if (st.ino !== expect.ino || st.dev !== expect.dev) return `replaced ${when}`
  if (st.size !== expect.size) return `size ${expect.size} became ${st.size} ${when}`
  if (st.mtimeNs !== expect.mtimeNs) return `modified ${when}`
  return null
}

/**
 * A whole (small) file read with synchronous calls, for a leaf worker (a thread of its own, where blocking costs
 * nothing) or `--jobs 1`: the same checks as openSourceFile's callers make, the outcome as data. Into the start of
 * `into` when it is given and large enough, else into a buffer of its own. Self-contained but for openProblem and
 * statMismatch: leaf workers run its source text with theirs.
 */
export function readWholeFileSync (f: typeof import('node:fs'), file: Uint8Array, expect: SourceIdentity, into: Uint8Array | null = null): { bytes: Uint8Array } | { problem: SourceProblem } {
  const where = Buffer.from(file.buffer, file.byteOffset, file.byteLength)
  let fd: number
  try {
    fd = f.openSync(where, f.constants.O_RDONLY | f.constants.O_NOFOLLOW)
  } catch (err) {
    return { problem: openProblem(String((err as NodeJS.ErrnoException).code ?? (err as Error).message)) }
  }
  try {
    const before = statMismatch(expect, f.fstatSync(fd, { bigint: true }), 'before reading')
    if (before !== null) return { problem: { kind: 'changed', what: before } }
    const size = Number(expect.size)
    const bytes = into !== null && size <= into.length ? into.subarray(0, size) : new Uint8Array(size) // its own: transferable
    let pos = 0
    while (pos < size) {
      let n: number
      try {
        n = f.readSync(fd, bytes, pos, size - pos, pos)
      } catch (err) {
        return { problem: { kind: 'read', at: pos, code: String((err as NodeJS.ErrnoException).code ?? (err as Error).message) } }
      }
      if (n === 0) return { problem: { kind: 'changed', what: `only ${pos} of ${size} bytes could be read` } }
      pos += n
    }
    const after = statMismatch(expect, f.fstatSync(fd, { bigint: true }), 'while being read')
    if (after !== null) return { problem: { kind: 'changed', what: after } }
    return { bytes }
  } finally {
    f.closeSync(fd)
  }
}

/** How a leaf job reads a whole small file: readWholeFileSync's contract. */
export type ReadWhole = (file: Uint8Array, expect: SourceIdentity, into: Uint8Array | null) => { bytes: Uint8Array } | { problem: SourceProblem }

/**
 * readWholeFileSync in one call of the addon a file (readFileInto: open, fstat, read, fstat, close without a
 * BigIntStats; ~19 % of a leaf worker's time on a tree of small files went to those calls through node:fs); a file it
 * cannot read as expected is read again by readWholeFileSync, whose outcome names the problem. null without the addon.
 */
export function nativeWholeFileReader (f: typeof import('node:fs')): ReadWhole | null {
  const addon = nativeAddon()
  if (addon === null) return null
  return (file, expect, into) => {
    const size = Number(expect.size)
    const bytes = into !== null && size <= into.length ? into.subarray(0, size) : new Uint8Array(size)
    if (addon.readFileInto(file, expect.dev, expect.ino, expect.size, expect.mtimeNs, bytes) === 0) return { bytes }
    return readWholeFileSync(f, file, expect, into)
  }
}

/** A source file open for reading: `fd` may be read by any thread of the process until close(). */
export interface OpenSourceFile {
  fd: number
  /** Throws SourceChangedError when the open file is no longer the one listed, unchanged. */
  check: (when: string) => Promise<void>
  close: () => Promise<void>
}

/**
 * Opens a listed file without following symlinks, and checks that it is the one listed, unchanged. Callers read
 * exactly the listed size (a short read means it changed) and check again after reading: so the pack never records
 * bytes the file did not hold.
 */
export async function openSourceFile (entry: SourceEntry): Promise<OpenSourceFile> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(entry.abs, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    throw sourceProblemError(entry, openProblem(String((err as NodeJS.ErrnoException).code ?? (err as Error).message)))
  }
  const file: OpenSourceFile = {
    fd: fh.fd,
    check: async (when) => {
      const what = statMismatch(entry.stat, await fh.stat({ bigint: true }), when)
      if (what !== null) throw new SourceChangedError(entry, what)
    },
    close: async () => { await fh.close() },
  }
  try {
    await file.check('before reading')
  } catch (err) {
    await fh.close()
    throw err
  }
  return file
}
