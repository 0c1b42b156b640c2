// Throughput of encryptStream / decryptStream on in-memory data (no disk I/O), best of 3 runs, e.g.:
//   npx tsc -p tsconfig.json --outDir /tmp/packer-dist; node test/crypto/bench.mjs /tmp/packer-dist/crypto/index.js 256
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'

const mod = await import(pathToFileURL(resolve(process.argv[2] ?? 'dist/crypto/index.js')).href)
const MiB = 1024 * 1024
const total = Number(process.argv[3] ?? 256) * MiB
const recipient = mod.parseRecipient(mod.generateX25519Identity().recipient)
const secs = (t) => Number(process.hrtime.bigint() - t) / 1e9

async function encryptRun (pieceSize) {
  const piece = randomBytes(pieceSize)
  async function * source () { for (let n = 0; n < total; n += pieceSize) yield piece.subarray(0, Math.min(pieceSize, total - n)) }
  const fileKey = mod.newFileKey()
  const header = mod.encodeHeader(fileKey, [recipient])
  let out = 0
  const t = process.hrtime.bigint()
  for await (const c of mod.encryptStream(source(), fileKey, header)) out += c.length
  const s = secs(t)
  if (out !== mod.ciphertextSize(total, header.length)) throw new Error('size mismatch')
  return total / MiB / s
}

async function decryptRun (pieceSize) {
  // Encrypt `total` bytes once, then time decryption of the whole file fed in pieces of pieceSize.
  const fileKey = mod.newFileKey()
  const header = mod.encodeHeader(fileKey, [recipient])
  const parts = []
  for await (const c of mod.encryptStream([randomBytes(total)], fileKey, header)) parts.push(c)
  const file = Buffer.concat(parts)
  parts.length = 0
  function * source () { for (let n = 0; n < file.length; n += pieceSize) yield file.subarray(n, n + pieceSize) }
  let out = 0
  const t = process.hrtime.bigint()
  for await (const c of mod.decryptStream(source(), { fileKey })) out += c.length
  const s = secs(t)
  if (out !== total) throw new Error('size mismatch')
  return total / MiB / s
}

const best = async (f, arg) => { let b = 0; for (let i = 0; i < 3; i++) b = Math.max(b, await f(arg)); return b.toFixed(0) }
console.log(`node ${process.version}, ${total / MiB} MiB, best of 3`)
for (const size of [64 * 1024, 1024 * 1024, 1000 * 1000]) {
  console.log(`pieces of ${size} B: encryptStream ${await best(encryptRun, size)} MiB/s, decryptStream ${await best(decryptRun, size)} MiB/s`)
}
