import fs from 'node:fs/promises'

/**
 * Text files of lines on disk, read and written in bounded memory: what a pack's journal and its other growing lists
 * are made of.
 */

/** The lines of a file (without their '\n'), read 1 MiB at a time; a last line without '\n' is given too. */
export async function * readLines (file: string, opts: { chunkSize?: number } = {}): AsyncGenerator<string> {
  const fh = await fs.open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(opts.chunkSize ?? 1 << 20)
    let rest = ''
    let pos = 0
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos)
      if (bytesRead === 0) break
      pos += bytesRead
      // Cut at the last '\n' of the bytes read: a UTF-8 sequence never holds that byte, so no character is split.
      const end = buf.lastIndexOf(0x0a, bytesRead - 1)
      if (end < 0) { rest += buf.toString('utf8', 0, bytesRead); continue }
      const text = rest + buf.toString('utf8', 0, end)
      rest = buf.toString('utf8', end + 1, bytesRead)
      let from = 0
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', from)) {
        yield text.slice(from, i)
        from = i + 1
      }
      yield text.slice(from)
    }
    if (rest.length > 0) yield rest
  } finally {
    await fh.close()
  }
}

/**
 * The lines of a file as readLines gives them, last line first, read 1 MiB at a time from the end: for what must be
 * undone or finished in the reverse of the order it was done (unpack's directory metadata, deepest first).
 */
export async function * readLinesBackward (file: string, opts: { chunkSize?: number } = {}): AsyncGenerator<string> {
  const fh = await fs.open(file, 'r')
  try {
    const chunk = opts.chunkSize ?? 1 << 20
    let pos = (await fh.stat()).size
    let rest = Buffer.alloc(0) // the start of a line whose end was read already
    let atEnd = true
    let newline = false
    while (pos > 0) {
      const n = Math.min(chunk, pos)
      pos -= n
      const block = Buffer.allocUnsafe(n)
      let got = 0
      while (got < n) {
        const { bytesRead } = await fh.read(block, got, n - got, pos + got)
        if (bytesRead === 0) throw new Error(`${file} shrank while it was read`)
        got += bytesRead
      }
      const data = rest.length === 0 ? block : Buffer.concat([block, rest])
      let end = data.length
      // A '\n' byte is never inside a UTF-8 sequence: cutting there splits no character.
      for (let j = data.lastIndexOf(0x0a, end - 1); j >= 0; j = j > 0 ? data.lastIndexOf(0x0a, j - 1) : -1) {
        newline = true
        if (!(atEnd && j + 1 === end)) yield data.toString('utf8', j + 1, end) // not the nothing after a final '\n'
        atEnd = false
        end = j
      }
      if (end < data.length) atEnd = false
      rest = Buffer.from(data.subarray(0, end))
    }
    if (rest.length > 0 || newline) yield rest.toString('utf8')
  } finally {
    await fh.close()
  }
}

/** Appends text to a file in batches of `batch` bytes; `sync` makes everything handed over durable. */
export class Appender {
  readonly file: string
  readonly #batch: number
  #pending: string[] = []
  #pendingBytes = 0
  #fh: fs.FileHandle | null = null

  constructor (file: string, batch = 256 * 1024) { this.file = file; this.#batch = batch }

  async #handle (): Promise<fs.FileHandle> {
    this.#fh ??= await fs.open(this.file, 'a', 0o600)
    return this.#fh
  }

  async write (text: string): Promise<void> {
    this.#pending.push(text)
    this.#pendingBytes += text.length
    if (this.#pendingBytes >= this.#batch) await this.flush()
  }

  async flush (): Promise<void> {
    if (this.#pending.length === 0) return
    const text = this.#pending.join('')
    this.#pending = []
    this.#pendingBytes = 0
    await (await this.#handle()).appendFile(text)
  }

  async sync (): Promise<void> {
    await this.flush()
    await (await this.#handle()).datasync()
  }

  async close (): Promise<void> {
    await this.flush()
    await this.#fh?.close()
    this.#fh = null
  }
}
