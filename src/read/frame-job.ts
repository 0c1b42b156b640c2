/**
 * Decompressing one frame of a file stored compressed on a reader worker thread (src/read/pool.ts): the frame's stored
 * bytes go over in a buffer of their own (transferred, not copied), the worker checks the frame against its seek table
 * entry and decompresses it (zstd checks the XXH64 of the plaintext), and the plaintext comes back the same way. A
 * frame that fails any check comes back as the PackerError's code and message, which name the file; the reader throws
 * it again on its side, so no wrong byte is ever handed out.
 */
import { PackerError, type ErrorCode } from '../errors.js'
import type { FrameLocation } from '../compress/zstd-seekable.js'
import { decompressHere } from './compressed.js'

export interface FrameJob {
  id: number
  /** The file as shown in messages. */
  name: string
  at: FrameLocation
  /** The frame's stored bytes: a buffer of their own (its ArrayBuffer is transferred to the worker). */
  frame: Uint8Array
}

export type FrameResult =
  | { id: number, ok: true, plain: Uint8Array }
  | { id: number, ok: false, code: ErrorCode, message: string, subject?: string }

export function isFrameJob (m: object): m is FrameJob {
  return 'frame' in m
}

/** Runs a frame job (on a worker thread): its result and the buffers to transfer with it. */
export async function runFrameJob (job: FrameJob): Promise<[FrameResult, ArrayBuffer[]]> {
  try {
    const plain = await decompressHere(job.name, job.at, job.frame)
    // decompressHere's buffer is its own (allocUnsafe of more than Node's pool takes) unless the frame is tiny.
    const own = plain.byteOffset === 0 && plain.byteLength === plain.buffer.byteLength ? plain : Uint8Array.prototype.slice.call(plain)
    return [{ id: job.id, ok: true, plain: own }, [own.buffer as ArrayBuffer]]
  } catch (err) {
    if (err instanceof PackerError) return [{ id: job.id, ok: false, code: err.code, message: err.message, subject: err.subject }, []]
    return [{ id: job.id, ok: false, code: 'CORRUPT', message: `${job.name}: frame ${job.at.index} of its zstd stream: ${(err as Error).message}`, subject: job.name }, []]
  }
}

/** The plaintext of a frame job's result, or its error thrown again on the reader's side. */
export function framePlain (r: FrameResult): Buffer {
  if (!r.ok) throw new PackerError(r.code, r.message, { subject: r.subject })
  return Buffer.from(r.plain.buffer, r.plain.byteOffset, r.plain.byteLength)
}

/**
 * The frame's bytes in a buffer of their own, to transfer: themselves when they are one (a reader's frame buffer),
 * else a copy (a view into a larger buffer, which posting would copy whole, or a shared one, which cannot move).
 */
export function ownBytes (frame: Uint8Array): Uint8Array {
  const alone = frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength && !(frame.buffer instanceof SharedArrayBuffer)
  return alone ? frame : Uint8Array.prototype.slice.call(frame)
}
