/**
 * Bounded fuzzing of every parser that reads what users hand packer: random and mutated inputs must give either a
 * result or a PackerError (a clear one-line error), never another exception, a hang or a wrong result.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { parseManifest } from '../../src/format/manifest.js'
import { parseTableChunk, parseTableIndex } from '../../src/format/table.js'
import { parseTableV1 } from '../../src/format/table-v1.js'
import { decodeCarList, decodeDescriptor } from '../../src/format/descriptor.js'
import { BlockIndex } from '../../src/car/block-index.js'
import { CID } from 'multiformats/cid'
import { readCarRoots } from '../../src/car/car-header.js'
import { CarSet } from '../../src/read/car-set.js'
import { readStoredFile } from '../../src/read/set-table.js'
import { verifySet } from '../../src/restore/verifier.js'
import { FileView } from '../../src/read/file-view.js'
import {
  decryptStream, encodeHeader, encryptStream, newFileKey, parseHeader, parseRecipient, readIdentityFile, readRecipientsFile,
  x25519IdentityFromString, generateX25519Identity,
} from '../../src/crypto/index.js'
import { ROOT, bytes, packerOk, tmpDir } from '../helpers.js'

const BUDGET_MS = 2500

function rng (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32 }
}

/** A random byte-level mutation: flip bits, cut, insert, duplicate or overwrite a range. */
function mutate (input: Buffer, r: () => number): Buffer {
  const b = Buffer.from(input)
  const at = Math.floor(r() * Math.max(1, b.length))
  switch (Math.floor(r() * 6)) {
    case 0: if (b.length) b[at] ^= 1 << Math.floor(r() * 8); return b
    case 1: return b.subarray(0, at)
    case 2: return Buffer.concat([b.subarray(0, at), crypto.randomBytes(1 + Math.floor(r() * 16)), b.subarray(at)])
    case 3: return Buffer.concat([b.subarray(0, at), b.subarray(at, at + Math.floor(r() * 64)), b.subarray(at)])
    case 4: return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + Math.floor(r() * 32)))])
    default: crypto.randomBytes(Math.min(8, b.length - at)).copy(b, at); return b
  }
}

const ODD_VALUES = [null, -1, 0, 1.5, 2 ** 53, 1e300, '', 'x', '../../etc/passwd', '/abs', 'a\u0000b', [], {}, true, 'baga6ea4seaq', 'bafkreiaaaa']

/** A structure-aware mutation of a JSON document: one field (at any depth) gets an odd value, or is removed. */
function mutateJson (doc: any, r: () => number): string {
  const copy = JSON.parse(JSON.stringify(doc))
  const paths: Array<[any, string | number]> = []
  const walk = (o: any): void => {
    if (o === null || typeof o !== 'object') return
    for (const k of Array.isArray(o) ? o.keys() : Object.keys(o)) { paths.push([o, k]); walk(o[k]) }
  }
  walk(copy)
  const [obj, key] = paths[Math.floor(r() * paths.length)]
  if (r() < 0.2 && !Array.isArray(obj)) delete obj[key]
  else obj[key] = ODD_VALUES[Math.floor(r() * ODD_VALUES.length)]
  return JSON.stringify(copy)
}

/** Runs `fn` on inputs until the budget is spent; every outcome must be a value or a PackerError, in under 2 s. */
/** Feeds `fn` inputs from `make` for BUDGET_MS, and at least `minimum` of them however slow the machine is. */
async function fuzz (name: string, seed: number, make: (r: () => number) => unknown, fn: (input: any) => unknown, minimum: number): Promise<void> {
  const r = rng(seed)
  const end = Date.now() + BUDGET_MS
  let n = 0
  while (n < minimum || Date.now() < end) {
    const input = make(r)
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        Promise.resolve().then(() => fn(input)),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('hang: no answer within 2 s')), 2000) }),
      ])
    } catch (err) {
      if (!(err instanceof PackerError)) {
        const shown = Buffer.isBuffer(input) ? input.toString('base64') : String(input).slice(0, 500)
        throw new Error(`${name}: ${(err as Error).stack}\ninput: ${shown}`)
      }
      expect(err.message.includes('\n'), `${name}: multi-line error: ${err.message}`).toBe(false)
    } finally {
      clearTimeout(timer)
    }
    n++
  }
}

let set: string
let manifest: any
let indexText: string
let chunkText: string
let blockIndex: Buffer
let descriptorBlock: Buffer
let carPath: string
const V1 = path.join(ROOT, 'testdata/vectors/v1/plain')

beforeAll(async () => {
  const src = tmpDir()
  fs.mkdirSync(path.join(src, 'd'))
  fs.writeFileSync(path.join(src, 'd/a.txt'), 'alpha\n')
  fs.writeFileSync(Buffer.from(`${src}/d/n\xff`, 'latin1'), 'a name that is not UTF-8\n')
  fs.writeFileSync(path.join(src, 'b.bin'), bytes(1_500_000, 3))
  fs.symlinkSync('d/a.txt', path.join(src, 'l'))
  set = tmpDir()
  await packerOk(['pack', src, '-o', set, '--no-encrypt', '--bin-size', '2MiB'], { env: { PACKER_STATE_DIR: tmpDir() } })
  manifest = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
  const s = await CarSet.open(set, { skipTable: true })
  try {
    indexText = (await readStoredFile(s.blocks, CID.parse(manifest.table.cid), 'table index')).toString()
    chunkText = (await readStoredFile(s.blocks, CID.parse(JSON.parse(indexText.split('\n')[1]!).cid), 'table chunk')).toString()
    descriptorBlock = Buffer.from(await s.blocks.get(CID.parse(manifest.descriptor)))
  } finally { await s.close() }
  blockIndex = fs.readFileSync(path.join(set, 'blocks.idx'))
  carPath = path.join(set, manifest.cars[0].file)
})

/** A block index held in memory, opened as readers open one (header and fence), then every record read by pages. */
async function openIndex (b: Buffer): Promise<void> {
  const index = await BlockIndex.open(async (at, n) => b.subarray(at, at + n), b.length, 'blocks.idx', manifest.cars.length)
  for await (const r of index.records()) await index.locations(r.digest)
  await index.locations(Buffer.alloc(32))
}

/** Structure-aware mutations of JSON Lines: an odd value in one line, or byte-level damage to the whole text. */
function mutateLines (text: string, r: () => number): string {
  if (r() < 0.5) return mutate(Buffer.from(text), r).toString('latin1')
  const lines = text.trim().split('\n')
  const i = Math.floor(r() * lines.length)
  return [...lines.slice(0, i), mutateJson(JSON.parse(lines[i]!), r), ...lines.slice(i + 1)].join('\n')
}

describe('fuzzing the parsers (bounded time each)', () => {
  it('manifest.json: mutated bytes and odd field values', async () => {
    const text = JSON.stringify(manifest)
    await fuzz('manifest', 1, (r) => r() < 0.5 ? mutate(Buffer.from(text), r).toString('latin1') : mutateJson(manifest, r), (t) => parseManifest(t, 'manifest.json'), 100)
  })

  it('table chunk: mutated bytes and odd field values, every line (directory lines too)', async () => {
    expect(chunkText).toMatch(/"dirB64"|"nameB64"/)
    await fuzz('table chunk', 2, (r) => mutateLines(chunkText, r), (t) => parseTableChunk(t, 'chunk', manifest.cars.length), 100)
  })

  it('table index: mutated bytes and odd field values, every line', async () => {
    await fuzz('table index', 8, (r) => mutateLines(indexText, r), (t) => parseTableIndex(t, 'index'), 100)
  })

  it('version-1 file table: mutated bytes and odd field values, every line', async () => {
    const text = fs.readFileSync(path.join(V1, 'table.jsonl'), 'utf8')
    await fuzz('table v1', 9, (r) => mutateLines(text, r), (t) => parseTableV1(t, 'table', 1), 100)
  })

  it('block index, versions 2 and 1: mutated and random bytes', async () => {
    const v1 = fs.readFileSync(path.join(V1, 'blocks.idx'))
    await fuzz('index', 3, (r) => {
      const x = r()
      return x < 0.45 ? mutate(blockIndex, r) : x < 0.9 ? mutate(v1, r) : crypto.randomBytes(Math.floor(r() * 200))
    }, openIndex, 100)
  })

  it('set descriptor and CAR-list blocks: mutated bytes decode to a descriptor, or to nothing', async () => {
    await fuzz('descriptor', 10, (r) => mutate(descriptorBlock, r), (b) => {
      const d = decodeDescriptor(b)
      if (d !== null) expect([d.root, d.table, ...d.cars, ...d.carLists].every((c) => CID.asCID(c) !== null)).toBe(true)
      decodeCarList(b)
    }, 100)
  })

  it('CAR headers: readCarRoots never throws, returns roots or null', async () => {
    const head = fs.readFileSync(carPath).subarray(0, 200)
    const file = path.join(tmpDir(), 'x.car')
    await fuzz('car header', 4, (r) => mutate(head, r), (b) => { fs.writeFileSync(file, b); return readCarRoots(file) }, 100)
  })

  it('CAR sections: verify and reads report damage, never a wrong byte', async () => {
    const pristine = fs.readFileSync(carPath)
    const copy = tmpDir()
    for (const f of fs.readdirSync(set)) fs.copyFileSync(path.join(set, f), path.join(copy, f))
    const target = path.join(copy, manifest.cars[0].file)
    const original = bytes(1_500_000, 3)
    await fuzz('car sections', 5, (r) => mutate(pristine, r), async (b) => {
      fs.writeFileSync(target, b)
      const s = await CarSet.open(copy)
      try {
        await verifySet(s)
        const e = (await s.files.lookup(Buffer.from('b.bin')))!
        const got = await new FileView(s).read(e, 0, e.size!)
        expect(got.equals(original)).toBe(true) // if it reads at all, it is right
      } finally { await s.close() }
    }, 20)
  })

  it('age files: mutated headers and payloads never yield wrong plaintext', async () => {
    const id = generateX25519Identity()
    const identity = x25519IdentityFromString(id.identity)
    const key = newFileKey()
    const plain = bytes(150_000, 9)
    const parts: Uint8Array[] = []
    for await (const c of encryptStream([plain], key, encodeHeader(key, [identity.recipient()]))) parts.push(c)
    const file = Buffer.concat(parts)
    await fuzz('age', 6, (r) => mutate(file, r), async (b) => {
      parseHeader(b)
      const out: Uint8Array[] = []
      for await (const c of decryptStream([b], { identities: [identity] })) out.push(c)
      expect(Buffer.concat(out).equals(plain)).toBe(true)
    }, 100)
  })

  it('identity and recipient files: mutated keys of every kind, and random text', async () => {
    const dir = tmpDir()
    await packerOk(['keygen', '--rsa', '-o', dir])
    await packerOk(['keygen', '-o', path.join(dir, 'age.txt')])
    const samples = ['private_key.pem', 'certificate.pem', 'age.txt'].map((f) => fs.readFileSync(path.join(dir, f)))
    const file = path.join(dir, 'fuzzed')
    await fuzz('keys', 7, (r) => r() < 0.9 ? mutate(samples[Math.floor(r() * samples.length)], r) : crypto.randomBytes(Math.floor(r() * 300)), async (b) => {
      fs.writeFileSync(file, b)
      await readIdentityFile(file).catch((e) => { if (!(e instanceof PackerError)) throw e })
      await readRecipientsFile(file).catch((e) => { if (!(e instanceof PackerError)) throw e })
      parseRecipient(b.toString('latin1').split('\n').find((l: string) => l.startsWith('age1')) ?? b.toString('latin1').slice(0, 80))
    }, 50)
  })
})
