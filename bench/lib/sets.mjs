// Sets the benchmarks read, built once and reused.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/**
 * `dir`/set: one file `big.bin` of `sizeMib` random MiB packed encrypted to a new age key (`dir`/key.txt), unless
 * already there. `packer(...args)` runs the CLI and returns its stdout.
 */
export function ensureEncryptedFileSet (dir, sizeMib, packer) {
  if (fs.existsSync(path.join(dir, 'set/manifest.json'))) return dir
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true })
  const fd = fs.openSync(path.join(dir, 'src/big.bin'), 'w')
  const c = crypto.createCipheriv('chacha20', crypto.randomBytes(32), Buffer.alloc(16))
  const z = Buffer.alloc(1 << 20)
  for (let i = 0; i < sizeMib; i++) fs.writeSync(fd, c.update(z))
  fs.closeSync(fd)
  const recipient = packer('keygen', '-o', path.join(dir, 'key.txt')).trim()
  packer('pack', path.join(dir, 'src'), '-o', path.join(dir, 'set'), '-r', recipient, '-q')
  return dir
}
