/**
 * The promise: a set can be read back without packer. These tests use only generic code (@ipld/car readers,
 * ipfs-unixfs-exporter over all the CARs) and Debian's `age` and `zstd` commands, never packer's own readers.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CarReader } from '@ipld/car'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { bytes, packerOk, sha256, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'

/** A blockstore over every CAR of a directory, checking each block's hash as a careful generic reader would. */
async function loadCars (dir: string): Promise<{ get: (cid: CID) => AsyncGenerator<Uint8Array> }> {
  const blocks = new Map<string, Uint8Array>()
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.car'))) {
    const reader = await CarReader.fromBytes(fs.readFileSync(path.join(dir, name)))
    for await (const { cid, bytes } of reader.blocks()) {
      const digest = await sha256Hasher.digest(bytes)
      expect(Buffer.from(digest.digest).equals(Buffer.from(cid.multihash.digest))).toBe(true)
      blocks.set(Buffer.from(cid.multihash.bytes).toString("hex"), bytes)
    }
  }
  return { get: async function * (cid: CID) { const b = blocks.get(Buffer.from(cid.multihash.bytes).toString("hex")); if (!b) throw new Error(`no block ${cid}`); yield b } }
}

async function cat (store: any, cid: string): Promise<Buffer> {
  const entry = await exporter(cid, store)
  const parts: Uint8Array[] = []
  for await (const p of (entry as any).content()) parts.push(p)
  return Buffer.concat(parts)
}

function tool (cmd: 'age' | 'zstd', args: string[], input: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 30 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

function age (args: string[], input: Buffer): Buffer {
  return tool('age', args, input)
}

/** A file stored compressed is a zstd seekable stream: `zstd -d` decodes its frames and skips its seek table. */
function zstdDecompress (input: Buffer): Buffer {
  return tool('zstd', ['-d', '-c'], input)
}

/** age reads a passphrase only from a terminal: type it on a pseudo-terminal made by util-linux `script`. */
function ageWithPassphrase (inFile: string, outFile: string, passphrase: string): void {
  const r = spawnSync('bash', ['-c', `(sleep 1; printf '%s\\n' "$1") | script -qec "age -d -o '${outFile}' '${inFile}'" /dev/null`, '_', passphrase], { timeout: 60_000 })
  if (r.status !== 0 || !fs.existsSync(outFile)) throw new Error(`age -d with a passphrase failed: ${r.stdout}${r.stderr}`)
}

let src: string
let keys: string
let files: Map<string, string>

beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'docs'))
  fs.writeFileSync(path.join(src, 'docs/report.txt'), 'quarterly numbers\n')
  fs.writeFileSync(path.join(src, 'spans-cars.bin'), bytes(4 * MiB + 5, 51))
  fs.writeFileSync(path.join(src, 'empty'), '')
  // Compressible and over several zstd frames: encrypted sets (compressed by default) store it compressed.
  fs.writeFileSync(path.join(src, 'docs/app.log'), Array.from({ length: 120_000 }, (_, i) => `${i} GET /item/${i * 7919 % 100_003} 200\n`).join(''))
  files = new Map([['docs/report.txt', ''], ['docs/app.log', ''], ['spans-cars.bin', ''], ['empty', '']].map(([p]) => [p, sha256(fs.readFileSync(path.join(src, p)))]))
  keys = tmpDir()
  await packerOk(['keygen', '--rsa', '-o', keys])
})

/**
 * From the decrypted table index, as FORMAT.md §10 says: decrypt each chunk it names, then every file of each chunk
 * (path = the chunk's current `dir` line + '/' + `name`), with the given age arguments, then `zstd -d` for a file
 * with `"compression": "zstd"`; compare with the source. At least one file was stored compressed.
 */
async function recoverFiles (store: any, indexText: string, ageArgs: string[]): Promise<void> {
  const lines = indexText.trim().split('\n').map((l) => JSON.parse(l))
  expect(lines[0].table).toBe('packer-table-index')
  const recovered = new Map<string, string>()
  const compressed: string[] = []
  for (const chunk of lines.slice(1)) {
    let dir = ''
    for (const line of age(['-d', ...ageArgs], await cat(store, chunk.cid)).toString().trim().split('\n').map((l) => JSON.parse(l))) {
      if (line.dir !== undefined) { dir = line.dir; continue }
      if (line.type !== 'file') continue
      const p = dir === '' ? line.name : `${dir}/${line.name}`
      const stored = age(['-d', ...ageArgs], await cat(store, line.cid))
      if (line.compression !== undefined) {
        expect(line.compression).toBe('zstd')
        compressed.push(p)
      }
      recovered.set(p, sha256(line.compression === 'zstd' ? zstdDecompress(stored) : stored))
    }
  }
  expect(recovered).toEqual(files)
  expect(compressed).toEqual(['docs/app.log'])
}

describe('recovering a set with generic tools only', () => {
  it('unencrypted: the UnixFS tree under the manifest root holds every file', async () => {
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    const store = await loadCars(out)
    for (const [p, hash] of files) expect(sha256(await cat(store, `${m.root}/${p}`))).toBe(hash)
  })

  it('RSA certificate made by openssl: age -d -i private_key.pem opens the table index, its chunks and every file', async () => {
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '-R', path.join(keys, 'certificate.pem'), '--bin-size', '2MiB'])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    const store = await loadCars(out)
    const table = age(['-d', '-i', path.join(keys, 'private_key.pem')], await cat(store, m.table.cid)).toString()
    await recoverFiles(store, table, ['-i', path.join(keys, 'private_key.pem')])
  })

  it('age X25519 identity (made by age-keygen)', async () => {
    const id = path.join(tmpDir(), 'id.txt')
    expect(spawnSync('age-keygen', ['-o', id]).status).toBe(0)
    const recipient = /public key: (age1\S+)/.exec(fs.readFileSync(id, 'utf8'))![1]
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '-r', recipient, '--bin-size', '2MiB'])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    const store = await loadCars(out)
    const table = age(['-d', '-i', id], await cat(store, m.table.cid)).toString()
    await recoverFiles(store, table, ['-i', id])
  })

  it('passphrase: the table index with the passphrase, then its chunks and the files with the set identity found in it', async () => {
    const out = tmpDir()
    const passphrase = 'recover me in ten years'
    await packerOk(['pack', src, '-o', out, '--passphrase', '--bin-size', '2MiB'], { env: { PACKER_PASSPHRASE: passphrase } })
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    const store = await loadCars(out)
    const work = tmpDir()
    fs.writeFileSync(path.join(work, 'table.age'), await cat(store, m.table.cid))
    ageWithPassphrase(path.join(work, 'table.age'), path.join(work, 'table.jsonl'), passphrase)
    const table = fs.readFileSync(path.join(work, 'table.jsonl'), 'utf8') // the table index
    const setIdentity = JSON.parse(table.split('\n')[0]).setIdentity
    expect(setIdentity).toMatch(/^AGE-SECRET-KEY-1/)
    fs.writeFileSync(path.join(work, 'set.key'), setIdentity + '\n')
    await recoverFiles(store, table, ['-i', path.join(work, 'set.key')])
  })
})
