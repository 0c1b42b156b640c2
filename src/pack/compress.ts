import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError } from '../errors.js'
import { AUTO_LEVEL, DEFAULT_LEVEL, FRAME_SIZE, MAX_LEVEL, MIN_LEVEL, SeekTableWriter, frameEntry, zstdCodec } from '../compress/zstd-seekable.js'
import type { SourceProblem } from '../source/file-reader.js'
import type { ByteSource } from '../source/tree-source.js'
import type { Compress, FrameResult, LeafWorkers } from './leaf-workers.js'
import { windowFor } from './leaves.js'

/** `--compress`: auto (the default when encrypting), off, zstd or zstd:LEVEL. */
export type CompressOption = 'auto' | 'off' | `zstd${string}`

/**
 * How pack compresses, from `--compress` (undefined: the default), for a set that is encrypted or not. Compression is
 * refused for sets in clear: a generic IPFS tool would hand out compressed bytes under a file's own name (and the CIDs
 * would no longer be ipfs-car's). null: files are stored as they are.
 */
export function compressionOf (option: string | undefined, encrypted: boolean, warn: (m: string) => void): Compress | null {
  const o = option ?? (encrypted ? 'auto' : 'off')
  if (o === 'off') return null
  let how: Compress
  if (o === 'auto') how = { auto: true, level: AUTO_LEVEL }
  else {
    const m = /^zstd(?::(\d+))?$/.exec(o)
    const level = m?.[1] === undefined ? DEFAULT_LEVEL : Number(m[1])
    if (m === null || level < MIN_LEVEL || level > MAX_LEVEL) throw new PackerError('USAGE', `--compress ${o}: give auto, off, zstd or zstd:LEVEL (${MIN_LEVEL} to ${MAX_LEVEL})`)
    how = { auto: false, level }
  }
  if (!encrypted) throw new PackerError('USAGE', `--compress ${o} needs an encrypted set: in clear, IPFS tools would serve compressed bytes as the files (and CIDs would differ from ipfs-car's); drop --compress or encrypt`)
  if (zstdCodec() === null) {
    if (how.auto) { warn('no zstd in this packer (native addon without libzstd, Node before 22.15): --compress auto stores files as they are'); return null }
    throw new PackerError('USAGE', `--compress ${o}: this packer has no zstd (install Debian's libzstd-dev and rebuild the addon, or use Node 22.15 or later)`)
  }
  return how
}

/** A large file's seekable stream, in a temporary file: read it as the file's stored content, then remove it. */
export interface CompressedFile extends ByteSource { remove: () => Promise<void> }

/**
 * Compresses a large file frame by frame on the leaf workers, in order, into a temporary file of `tmpDir`: its zstd
 * seekable stream, whose size (needed before its age file can be sealed) is then known. null when it is not worth
 * it — `auto` and the first MiB does not shrink by 10 %, or the stream is no smaller than the file — and the file is
 * stored as it is. Memory: the frames in flight.
 */
export async function compressLarge (source: ByteSource, how: Compress, pool: LeafWorkers, tmpDir: string,
  problem: (p: SourceProblem) => Error, onRead?: (bytes: number) => void, readsInFlight = 0): Promise<CompressedFile | null> {
  const size = source.size
  await fs.mkdir(tmpDir, { recursive: true, mode: 0o700 })
  const file = path.join(tmpDir, `compress-${crypto.randomBytes(6).toString('hex')}.zst`)
  const fh = await fs.open(file, 'w+', 0o600)
  const remove = async (): Promise<void> => { await fh.close().catch(() => {}); await fs.rm(file, { force: true }) }
  const frames = Math.ceil(size / FRAME_SIZE)
  const window = windowFor(pool, readsInFlight)
  const inflight: Array<Promise<FrameResult | { problem: SourceProblem }>> = []
  const table = new SeekTableWriter()
  let next = 0
  let at = 0
  let ok = false
  try {
    for (let k = 0; k < frames; k++) {
      while (next < frames && inflight.length < window && (next === 0 || k > 0)) {
        const start = next * FRAME_SIZE
        const end = Math.min(size, start + FRAME_SIZE)
        // Only the first frame is auto's sample: the others are compressed whatever they give.
        const compress = next === 0 ? how : { auto: false, level: how.level }
        const job = (async () => await pool.run({ kind: 'frame', input: await source.input(start, end), start, end, compress }))()
        job.catch(() => {})
        inflight.push(job)
        next++
      }
      const r = await inflight.shift()!
      if ('problem' in r) throw problem(r.problem)
      if (r.frame === null) return null
      const plain = Math.min(FRAME_SIZE, size - k * FRAME_SIZE)
      await fh.write(r.frame, 0, r.frame.length, at)
      at += r.frame.length
      table.add(frameEntry(r.frame, plain))
      onRead?.(plain)
    }
    if (table.streamSize >= size) return null
    const t = table.finish()
    await fh.write(t, 0, t.length, at)
    ok = true
    const fd = fh.fd
    return { size: table.streamSize, input: () => ({ fd }), remove }
  } finally {
    await Promise.allSettled(inflight)
    if (!ok) await remove()
  }
}

/** How a journal or plan records a compression setting. */
export function compressName (c: Compress | null): string {
  return c === null ? 'off' : c.auto ? 'auto' : `zstd:${c.level}`
}
