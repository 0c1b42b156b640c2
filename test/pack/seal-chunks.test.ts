import crypto from 'node:crypto'
import fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { decryptStream, generateX25519Identity, newAgeFile, parseRecipient } from '../../src/crypto/index.js'
import { runLeafJob, type LeafJobEnv, type LeafSeal } from '../../src/pack/leaf-workers.js'
import { chunkSealer, leafSeal } from '../../src/pack/leaves.js'
import { readWholeFileSync } from '../../src/source/file-reader.js'
import { tmpDir } from '../helpers.js'

/**
 * A leaf job seals the age chunks inside its leaf in one native call (ageSealChunks) and the ones its edges cut one by
 * one in node:crypto: the leaves are byte for byte those node:crypto alone makes, and together they open, as an age
 * file, to the plaintext.
 */

const LEAF = 1024 * 1024

function env (native: boolean): LeafJobEnv {
  const sealChunks = native ? chunkSealer() : null
  if (native) expect(sealChunks).not.toBeNull()
  // the node:crypto runs read into a new buffer each leaf, the native ones into one scratch buffer
  return { c: crypto, f: fs, readWhole: (path, expect, into) => readWholeFileSync(fs, path, expect, into), fresh: null, sealWhole: null, sealChunks, scratch: native ? new Uint8Array(17 * 65536) : null, compress: null, spares: [] }
}

/** Ciphertext [start, end) of the age file of `plain` under `seal`, as a range job makes it. */
function leaf (e: LeafJobEnv, plain: Uint8Array, seal: LeafSeal, start: number, end: number, fd?: number): Uint8Array {
  const r = runLeafJob(e, { kind: 'range', input: fd === undefined ? { bytes: plain, at: 0 } : { fd }, size: plain.length, start, end, seal })
  if (!('leaf' in r) || r.leaf === undefined) throw new Error(`no leaf: ${JSON.stringify(r)}`)
  expect(Buffer.from(r.digest!)).toEqual(crypto.createHash('sha256').update(r.leaf).digest())
  return r.leaf
}

describe('sealing a leaf\'s chunks', () => {
  for (const size of [0, 1, 65536, 65537, 3 * LEAF + 12_345]) {
    it(`${size} bytes: native and node:crypto leaves are the same bytes, and open to the plaintext`, async () => {
      const identity = generateX25519Identity()
      const file = newAgeFile([parseRecipient(identity.recipient)])
      const seal = leafSeal(file)
      const plain = crypto.randomBytes(size)
      const total = seal.prefix.length + size + 16 * Math.max(1, Math.ceil(size / 65536))
      const leaves: Uint8Array[] = []
      // from a descriptor too: the native runs read each leaf's plaintext into one scratch buffer, reused
      const path = `${tmpDir()}/plain`
      fs.writeFileSync(path, plain)
      const fd = fs.openSync(path, 'r')
      const native = env(true)
      try {
        for (let start = 0; start < total; start += LEAF) {
          const end = Math.min(total, start + LEAF)
          const fromBytes = leaf(native, plain, seal, start, end)
          expect(Buffer.from(fromBytes).equals(Buffer.from(leaf(env(false), plain, seal, start, end))), `leaf at ${start}`).toBe(true)
          expect(Buffer.from(leaf(native, plain, seal, start, end, fd)).equals(Buffer.from(fromBytes)), `leaf at ${start}, read`).toBe(true)
          leaves.push(fromBytes)
        }
      } finally { fs.closeSync(fd) }
      const opened: Uint8Array[] = []
      for await (const p of decryptStream(leaves, { fileKey: file.fileKey })) opened.push(p)
      expect(Buffer.concat(opened).equals(plain)).toBe(true)
    })
  }

  it('a range inside one chunk, cut at both ends, and ranges cut at every chunk edge', () => {
    const file = newAgeFile([parseRecipient(generateX25519Identity().recipient)])
    const seal = leafSeal(file)
    const plain = crypto.randomBytes(5 * 65536 + 100)
    const P = seal.prefix.length
    const whole = leaf(env(false), plain, seal, 0, P + plain.length + 6 * 16)
    for (const [start, end] of [[P + 100, P + 5000], [P + 65536 + 16, P + 3 * 65552], [10, P + 4 * 65552 + 7], [P + 65552 - 1, P + 2 * 65552 + 1]]) {
      expect(Buffer.from(leaf(env(true), plain, seal, start, end)).equals(Buffer.from(whole.subarray(start, end))), `${start}-${end}`).toBe(true)
    }
  })
})
