import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { decryptStream, encodeHeader, encryptStream, newFileKey, type Identity, type Recipient } from '../../src/crypto/index.js'

/** A temporary directory removed after the file's tests. */
export function tempDir (): string {
  const d = mkdtempSync(join(tmpdir(), 'packer-crypto-'))
  afterAll(() => rmSync(d, { recursive: true, force: true }))
  return d
}

export function sh (cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer } = {}): Buffer {
  return execFileSync(cmd, args, { cwd: opts.cwd, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1 << 30 })
}

/** Runs a command in a pseudo-terminal (util-linux `script`), typing `typed` on it: for age's passphrase prompts. */
export function withTty (command: string, typed: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync('bash', ['-c', `(for l in "$@"; do printf '%s\\n' "$l"; sleep 0.7; done) | script -qec ${JSON.stringify(command)} /dev/null`, '_', ...typed], { cwd, timeout: 60_000 })
  return { status: r.status, out: r.stdout.toString() + r.stderr.toString() }
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Splits `b` into irregular pieces (1 byte to ~200 KiB), as a sync iterable. */
export function* ragged (b: Buffer, seed = 1): Generator<Buffer> {
  let off = 0
  let n = seed
  while (off < b.length) {
    const len = Math.max(1, n % 200_000)
    yield b.subarray(off, off + len)
    off += len
    n = (n * 1103515245 + 12345) % 2 ** 31
  }
}

export async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const c of it) out.push(Buffer.from(c))
  return Buffer.concat(out)
}

export async function encrypt (plain: Buffer, recipients: Recipient[], pieces = true): Promise<{ file: Buffer; fileKey: Buffer; header: Buffer }> {
  const fileKey = newFileKey()
  const header = encodeHeader(fileKey, recipients)
  const file = await collect(encryptStream(pieces ? ragged(plain) : [plain], fileKey, header))
  return { file, fileKey, header }
}

export async function decrypt (file: Buffer, identities: Identity[]): Promise<Buffer> {
  return collect(decryptStream(ragged(file, 7), { identities }))
}

export const rand = (n: number): Buffer => randomBytes(n)

export async function expectPackerError (p: Promise<unknown> | (() => unknown), code: string, re?: RegExp): Promise<Error> {
  let err: unknown = null
  try {
    if (typeof p === 'function') await p()
    else await p
  } catch (e) {
    err = e
  }
  if (err === null) throw new Error(`expected a PackerError ${code}, got success`)
  const e = err as Error & { code?: string }
  if (e.name !== 'PackerError' || e.code !== code) throw new Error(`expected PackerError ${code}, got ${e.name} ${e.code ?? ''}: ${e.message}`)
  if (e.message.includes('\n')) throw new Error(`error message is not one line: ${e.message}`)
  if (re !== undefined && !re.test(e.message)) throw new Error(`message ${JSON.stringify(e.message)} does not match ${re}`)
  return e
}
