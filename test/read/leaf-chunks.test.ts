import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { packerOk, tmpDir } from '../helpers.js'
import { encryptStream, generateX25519Identity, newAgeFile, parseRecipient } from '../../src/crypto/index.js'
import { openChunk } from '../../src/crypto/payload.js'
import { nativeAddon } from '../../src/native-addon.js'
import { AgeGeometry, CHUNK, NONCE, SEALED, payloadKey } from '../../src/read/chunks.js'
import { runJob, type LeafJob, type LeafResult } from '../../src/read/worker.js'
import type { Place } from '../../src/store/car-store.js'
import { sharedMemory } from '../../src/memory.js'

/**
 * The chunks of one leaf (a 1 MiB piece of an age file) opened by a reader's job: from a CAR file (pread) and from
 * bytes a remote store handed over in shared memory (opened where they are), including the chunk that straddles into
 * the next leaf, the wanted chunks first, and a forged chunk named.
 */

const LEAF = 1024 * 1024
const SIZE = 3 * LEAF + 12_345

async function ageFile (plain: Buffer): Promise<{ file: Buffer, fileKey: Buffer, headerLength: number }> {
  const { fileKey, header } = newAgeFile([parseRecipient(generateX25519Identity().recipient)])
  const parts: Uint8Array[] = []
  for await (const p of encryptStream([plain], fileKey, header)) parts.push(p)
  return { file: Buffer.concat(parts), fileKey, headerLength: header.length }
}

/** Where a test puts the file's leaves: a file read by descriptor, or shared memory (as the fetching threads do). */
type Where = 'file' | 'shared'

function places (file: Buffer, where: Where): { place: (start: number) => Place, close: () => void } {
  if (where === 'shared') {
    // one piece of shared memory for all, with bytes on either side: a leaf is a view inside a larger segment
    const mem = sharedMemory(file.length + 100)
    file.copy(mem, 50)
    return { place: (start) => ({ bytes: mem.subarray(50 + start, 50 + Math.min(file.length, start + LEAF)) }), close: () => {} }
  }
  const p = path.join(tmpDir(), 'car')
  fs.writeFileSync(p, file)
  const fd = fs.openSync(p, 'r')
  return { place: (start) => ({ fd, offset: start }), close: () => fs.closeSync(fd) }
}

/** The job the reader makes for the leaf at `start`. */
function leafJob (file: Buffer, fileKey: Buffer, headerLength: number, start: number, place: (start: number) => Place, want?: [number, number]): LeafJob {
  const g = new AgeGeometry(headerLength, SIZE)
  const le = Math.min(file.length, start + LEAF)
  const ins = g.inside(start, le)
  const c = ins.first + ins.count
  const next = c < g.chunks && g.start(c) < le && g.end(c) > le ? { at: place(le), length: g.end(c) - le } : undefined
  const firstLeaf = start === 0
  return {
    id: 1,
    slot: 0,
    at: place(start),
    length: le - start,
    digest: createHash('sha256').update(file.subarray(start, le)).digest(),
    dec: {
      key: firstLeaf ? null : payloadKey(fileKey, file.subarray(headerLength, headerLength + NONCE)),
      fileKey: firstLeaf ? fileKey : undefined,
      nonceAt: firstLeaf ? headerLength : undefined,
      first: ins.first,
      count: ins.count,
      firstAt: ins.firstAt,
      next,
      want,
      lastIndex: g.chunks - 1,
      lastPlain: g.plainLength(g.chunks - 1),
    },
  }
}

async function run (job: LeafJob): Promise<{ results: LeafResult[], out: Buffer }> {
  const out = Buffer.alloc(17 * CHUNK)
  const results: LeafResult[] = []
  await runJob(job, out, (r) => results.push(r))
  return { results, out }
}

describe('a leaf\'s age chunks', () => {
  it('the native call opens what node:crypto opens, and stops at the same forged chunk', async () => {
    const addon = nativeAddon()
    expect(addon).not.toBeNull()
    const plain = randomBytes(5 * CHUNK + 77)
    const { file, fileKey, headerLength } = await ageFile(plain)
    const key = payloadKey(fileKey, file.subarray(headerLength, headerLength + NONCE))
    const sealed = Buffer.from(file.subarray(headerLength + NONCE))
    const out = Buffer.alloc(6 * CHUNK)
    expect(addon!.ageOpenChunks(key, 0, 6, 5, 77, sealed, out)).toBe(6)
    expect(out.subarray(0, plain.length).equals(plain)).toBe(true)
    // chunks 2..5 alone, from shared memory
    const shared = sharedMemory(sealed.length)
    sealed.copy(shared)
    const part = Buffer.alloc(4 * CHUNK)
    expect(addon!.ageOpenChunks(key, 2, 4, 5, 77, shared.subarray(2 * SEALED), part)).toBe(4)
    expect(part.subarray(0, 3 * CHUNK + 77).equals(plain.subarray(2 * CHUNK))).toBe(true)
    // a byte of chunk 3 forged: two open, and node:crypto refuses the same chunk
    sealed[3 * SEALED + 100] ^= 1
    expect(addon!.ageOpenChunks(key, 0, 6, 5, 77, sealed, out)).toBe(3)
    expect(openChunk(key, 3, false, sealed.subarray(3 * SEALED, 4 * SEALED))).toBeNull()
    expect(openChunk(key, 2, false, sealed.subarray(2 * SEALED, 3 * SEALED))).not.toBeNull()
    // a middle chunk opened as the file's last (its nonce's flag wrong) fails too
    sealed[3 * SEALED + 100] ^= 1
    expect(addon!.ageOpenChunks(key, 4, 1, 4, CHUNK, sealed.subarray(4 * SEALED), out)).toBe(0)
    expect(addon!.ageOpenChunks(key, 4, 1, 5, 77, sealed.subarray(4 * SEALED), out)).toBe(1)
    expect(() => addon!.ageOpenChunks(key, 0, 6, 5, 77, sealed.subarray(0, 5 * SEALED), out)).toThrow(/too short/)
  })

  for (const where of ['file', 'shared'] as const) {
    it(`every leaf of a file opens to its plaintext, the straddling chunk included (${where})`, async () => {
      const plain = randomBytes(SIZE)
      const { file, fileKey, headerLength } = await ageFile(plain)
      const { place, close } = places(file, where)
      const g = new AgeGeometry(headerLength, SIZE)
      try {
        for (let start = 0; start < file.length; start += LEAF) {
          const job = leafJob(file, fileKey, headerLength, start, place)
          const { results, out } = await run(job)
          const d = job.dec!
          const count = d.count + (d.next !== undefined ? 1 : 0)
          const from = d.first * CHUNK
          const to = Math.min(SIZE, (d.first + count) * CHUNK)
          expect(results.length, `leaf at ${start}`).toBe(1)
          expect(results[0], `leaf at ${start}`).toMatchObject({ ok: true, count, dataLength: to - from })
          expect(out.subarray(0, to - from).equals(plain.subarray(from, to)), `leaf at ${start}`).toBe(true)
        }
        expect(g.chunks).toBe(Math.ceil(SIZE / CHUNK))
      } finally { close() }
    })

    it(`the wanted chunks are opened and said first, then the rest (${where})`, async () => {
      const plain = randomBytes(SIZE)
      const { file, fileKey, headerLength } = await ageFile(plain)
      const { place, close } = places(file, where)
      try {
        const job = leafJob(file, fileKey, headerLength, LEAF, place)
        const d = job.dec!
        job.dec!.want = [d.first + 3, d.first + 5]
        const { results, out } = await run(job)
        expect(results.map((r) => r.ok && r.partial)).toEqual([[d.first + 3, d.first + 5], undefined])
        const count = d.count + 1
        expect(results[1]).toMatchObject({ ok: true, count, dataLength: count * CHUNK })
        expect(out.subarray(0, count * CHUNK).equals(plain.subarray(d.first * CHUNK, (d.first + count) * CHUNK))).toBe(true)
        // a want past this leaf: nothing of it here, said as an empty range, and the whole leaf opened
        job.dec!.want = [d.first + count + 2, d.first + count + 3]
        const after = await run(job)
        expect(after.results.map((r) => r.ok && r.partial)).toEqual([[d.first + count + 2, d.first + count - 1], undefined])
        expect(after.out.subarray(0, count * CHUNK).equals(out.subarray(0, count * CHUNK))).toBe(true)
      } finally { close() }
    })

    it(`a forged chunk is named; a forged straddler's tail leaves the leaf served without it (${where})`, async () => {
      const plain = randomBytes(SIZE)
      const { file, fileKey, headerLength } = await ageFile(plain)
      const g = new AgeGeometry(headerLength, SIZE)
      const job0 = leafJob(file, fileKey, headerLength, LEAF, () => ({ fd: -1, offset: 0 }))
      const d0 = job0.dec!
      // a byte inside chunk first + 4 (the leaf's hash is recomputed: the block is what the set says, its contents forged)
      const inside = Buffer.from(file)
      inside[g.start(d0.first + 4) + 10] ^= 1
      const a = places(inside, where)
      try {
        const { results } = await run(leafJob(inside, fileKey, headerLength, LEAF, a.place))
        expect(results).toEqual([{ id: 1, ok: false, kind: 'auth', chunk: d0.first + 4, message: `age chunk ${d0.first + 4} failed authentication` }])
      } finally { a.close() }
      // a byte of the straddler in the next leaf: that leaf's own check names it; this one serves its inside chunks
      const tail = Buffer.from(file)
      tail[2 * LEAF + 5] ^= 1
      const b = places(tail, where)
      try {
        const { results, out } = await run(leafJob(tail, fileKey, headerLength, LEAF, b.place))
        expect(results).toEqual([{ id: 1, ok: true, count: d0.count, dataLength: d0.count * CHUNK }])
        expect(out.subarray(0, d0.count * CHUNK).equals(plain.subarray(d0.first * CHUNK, (d0.first + d0.count) * CHUNK))).toBe(true)
      } finally { b.close() }
    })
  }

  it('without the addon (node:crypto, a decipher per chunk), unpack gives the same bytes', async () => {
    const src = tmpDir()
    const plain = randomBytes(SIZE)
    fs.writeFileSync(path.join(src, 'f'), plain)
    const key = path.join(tmpDir(), 'key.txt')
    await packerOk(['keygen', '-o', key])
    const recipient = /age1[0-9a-z]+/.exec(fs.readFileSync(key, 'utf8'))![0]
    const set = path.join(tmpDir(), 'set')
    await packerOk(['pack', src, '-o', set, '-r', recipient], { env: { PACKER_STATE_DIR: tmpDir() } })
    for (const env of [{}, { PACKER_NO_NATIVE: '1' }]) {
      const dest = tmpDir()
      await packerOk(['unpack', '-i', key, set, '-o', dest], { env })
      expect(fs.readFileSync(path.join(dest, 'f')).equals(plain), JSON.stringify(env)).toBe(true)
    }
  })
})
