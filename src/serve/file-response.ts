import type fs from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { parseByteRange } from './byte-range.js'

/** A CAR as it is served, whole or in ranges. */
export const CAR_CONTENT_TYPE = 'application/vnd.ipld.car; version=1'
/** For what a CID or piece CID names: its bytes never change (a year, as IPFS gateways say). */
export const IMMUTABLE = 'public, max-age=29030400, immutable'

/** A file opened for serving: a regular file, never a symlink; sendFile closes it. */
export interface OpenedFile {
  fh: fs.FileHandle
  size: number
  mtimeMs: number
}

/** The headers that describe a served file. */
export interface FileHeaders {
  contentType: string
  /** Strong: a quoted string, no `W/`. */
  etag: string
  cacheControl: string
}

/**
 * Answers GET or HEAD with a file's bytes, as they are (never compressed): the whole file (200), one range of it (206
 * with Content-Range) or 416 for a range past its end; 304 when If-None-Match names its ETag. Closes the file.
 */
export async function sendFile (req: IncomingMessage, res: ServerResponse, file: OpenedFile, h: FileHeaders): Promise<void> {
  try {
    res.setHeader('Content-Type', h.contentType)
    res.setHeader('ETag', h.etag)
    res.setHeader('Cache-Control', h.cacheControl)
    res.setHeader('Accept-Ranges', 'bytes')
    if (matchesEtag(req.headers['if-none-match'], h.etag)) {
      res.writeHead(304).end()
      return
    }
    // a range of another version of the file is no range of this one: If-Range with another ETag gets the whole file
    const ifRange = req.headers['if-range']
    const range = ifRange === undefined || ifRange === h.etag ? parseByteRange(req.headers.range, file.size) : null
    if (range === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${file.size}`)
      res.setHeader('Content-Length', 0)
      res.writeHead(416).end()
      return
    }
    const { start, end } = range ?? { start: 0, end: file.size - 1 }
    res.setHeader('Content-Length', end - start + 1)
    if (range !== null) res.setHeader('Content-Range', `bytes ${start}-${end}/${file.size}`)
    res.writeHead(range !== null ? 206 : 200)
    if (req.method === 'HEAD' || end < start) {
      res.end()
      return
    }
    await pipeline(file.fh.createReadStream({ start, end, autoClose: false }), res)
  } finally {
    await file.fh.close()
  }
}

function matchesEtag (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  return ifNoneMatch.trim() === '*' || ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
}

/** A short answer in plain text (errors, refusals): one line, no body for HEAD. */
export function sendText (req: IncomingMessage, res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }).end(req.method === 'HEAD' ? undefined : `${message}\n`)
}
