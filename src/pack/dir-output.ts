import fs from 'node:fs/promises'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { dirCarSink } from '../car/dir-sink.js'
import { syncDir, writeFileDurably } from '../car/durable-file.js'
import type { SetOutput } from '../car/set-output.js'
import { OutDirLock, LOCK_FILE } from './out-dir-lock.js'

export async function ensureDir (out: string): Promise<void> {
  try {
    await fs.mkdir(out, { recursive: true })
    if (!(await fs.stat(out)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' })
  } catch (err) {
    if (isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) throw new PackerError('OUTPUT', `output ${out} exists and is not a directory; choose a directory`, { subject: out })
    throw new PackerError('OUTPUT', `cannot create output directory ${out}: ${(err as Error).message}`, { subject: out, cause: err })
  }
}

/** A set in a local directory: CARs renamed into place once synced, the other files written whole or not at all. */
export function dirOutput (dir: string): SetOutput {
  return {
    where: dir,
    kind: 'directory',
    identity: async () => await fs.realpath(dir),
    prepare: async () => await ensureDir(dir),
    lock: async () => await OutDirLock.acquire(dir),
    names: async () => (await fs.readdir(dir)).filter((n) => n !== LOCK_FILE),
    size: async (name) => {
      try {
        return (await fs.stat(path.join(dir, name))).size
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return null
        throw err
      }
    },
    readAt: async (name, offset, length) => {
      const fh = await fs.open(path.join(dir, name), 'r')
      try {
        const buf = Buffer.alloc(length)
        const { bytesRead } = await fh.read(buf, 0, length, offset)
        return buf.subarray(0, bytesRead)
      } finally {
        await fh.close()
      }
    },
    remove: async (name) => { await fs.rm(path.join(dir, name), { force: true }) },
    cars: (opts) => dirCarSink(dir, opts),
    putBytes: async (name, bytes) => { await writeFileDurably(path.join(dir, name), bytes) },
    putFile: async (name, produce) => {
      const tmp = path.join(dir, `.${name}.tmp`)
      await produce(tmp)
      await fs.rename(tmp, path.join(dir, name))
      await syncDir(dir)
    },
    discardDrafts: async () => {}, // a draft is a .partial- file: found by its name
    close: async () => {},
  }
}
