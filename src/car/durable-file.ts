import fs from 'node:fs/promises'
import path from 'node:path'

/** fsyncs a directory so that a rename inside it survives a crash. */
export async function syncDir (dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

/** Writes a file so that it is either absent or complete after a crash: temporary name, fdatasync, rename. */
export async function writeFileDurably (file: string, data: string | Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`)
  const fh = await fs.open(tmp, 'w')
  try {
    await fh.writeFile(data)
    await fh.datasync()
  } finally {
    await fh.close()
  }
  await fs.rename(tmp, file)
  await syncDir(path.dirname(file))
}
