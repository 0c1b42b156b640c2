import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { pack } from '../../src/pack/packer.js'
import { dirOutput } from '../../src/pack/dir-output.js'
import { localTree } from '../../src/source/local-tree.js'
import { PackerError } from '../../src/errors.js'
import { LeafWorkers } from '../../src/pack/leaf-workers.js'
import { LEAF_SIZE, fileLeaves, leafSeal } from '../../src/pack/leaves.js'
import { importFile, importLeaves } from '../../src/pack/unixfs.js'
import { createHash, randomBytes } from 'node:crypto'
import { ciphertextSize, decryptStream, encodeHeader, generateX25519Identity, newFileKey, payloadKey, x25519IdentityFromString } from '../../src/crypto/index.js'
import { carFiles, describeTree, packerOk, tmpDir, bytes } from '../helpers.js'

/** Sizes around the 64 KiB age chunks and the 1 MiB leaves. */
const SIZES = [0, 1, 1000, 65535, 65536, 65537, LEAF_SIZE - 33, LEAF_SIZE, LEAF_SIZE + 1, 2 * LEAF_SIZE - 40, 3 * LEAF_SIZE + 12345]

function makeTree (): string {
  const src = tmpDir()
  fs.mkdirSync(path.join(src, 'd'))
  SIZES.forEach((n, i) => fs.writeFileSync(path.join(src, i % 2 ? 'd' : '', `f${i}-${n}.bin`), bytes(n, 100 + i)))
  return src
}

/** `data` in a temporary file, open for the leaf workers. */
function openData (data: Buffer): { fd: number, [Symbol.dispose]: () => void } {
  const file = path.join(tmpDir(), 'data.bin')
  fs.writeFileSync(file, data)
  const fd = fs.openSync(file, 'r')
  return { fd, [Symbol.dispose]: () => fs.closeSync(fd) }
}

const noProblem = (p: unknown): Error => new Error(`unexpected source problem ${JSON.stringify(p)}`)

const sink = (): { put: (c: any, b: Uint8Array) => Promise<void>, blocks: Array<[string, Buffer]> } => {
  const blocks: Array<[string, Buffer]> = []
  return { blocks, put: async (cid, b) => { blocks.push([cid.toString(), Buffer.from(b)]) } }
}

describe('--jobs', () => {
  it('--no-encrypt sets are byte-identical with --jobs 1 and --jobs 4', async () => {
    const src = makeTree()
    const outs = [tmpDir(), tmpDir()]
    await packerOk(['pack', src, '-o', outs[0]!, '--no-encrypt', '--bin-size', '3MiB', '--jobs', '1', '--state-dir', tmpDir()])
    await packerOk(['pack', src, '-o', outs[1]!, '--no-encrypt', '--bin-size', '3MiB', '--jobs', '4', '--state-dir', tmpDir()])
    const cars = outs.map(carFiles)
    expect(cars[0]!.length).toBeGreaterThan(2)
    expect(cars[1]).toEqual(cars[0])
    for (const f of [...cars[0]!, 'manifest.json', 'blocks.idx']) {
      expect(fs.readFileSync(path.join(outs[1]!, f)).equals(fs.readFileSync(path.join(outs[0]!, f))), f).toBe(true)
    }
  })

  it('encrypted sets packed with --jobs 1 and --jobs 3 unpack to the source', async () => {
    const src = makeTree()
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'age.txt')])).stdout.trim()
    for (const jobs of ['1', '3']) {
      const out = tmpDir()
      const dest = path.join(tmpDir(), 'r')
      await packerOk(['pack', src, '-o', out, '-r', recipient, '--bin-size', '3MiB', '--jobs', jobs, '--state-dir', tmpDir()])
      await packerOk(['unpack', out, '-o', dest, '-i', path.join(keys, 'age.txt')])
      expect(describeTree(dest)).toEqual(describeTree(src))
    }
  })

  it('refuses a --jobs that is not a whole number ≥ 1', async () => {
    const { packer } = await import('../helpers.js')
    const r = await packer(['pack', makeTree(), '-o', tmpDir(), '--no-encrypt', '--jobs', '0'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--jobs 0/)
  })

  it('clear leaves give the blocks the importer gives, whatever the workers', async () => {
    const pools = [new LeafWorkers(0), new LeafWorkers(3)]
    try {
      for (const n of SIZES) {
        const data = bytes(n, n + 7)
        const want = sink()
        const wantFile = await importFile([data], want)
        const src = openData(data)
        try {
          for (const pool of pools) {
            const got = sink()
            const file = await importLeaves(fileLeaves({ size: n, input: () => ({ fd: src.fd }) }, null, pool, noProblem), got)
            expect(file.cid.toString()).toBe(wantFile.cid.toString())
            expect(file.dagSize).toBe(wantFile.dagSize)
            expect(got.blocks.map(([c]) => c)).toEqual(want.blocks.map(([c]) => c))
            expect(Buffer.concat(got.blocks.map(([, b]) => b)).equals(Buffer.concat(want.blocks.map(([, b]) => b)))).toBe(true)
          }
        } finally {
          src[Symbol.dispose]()
        }
      }
    } finally {
      await Promise.all(pools.map(async (p) => { await p.close() }))
    }
  })

  it('sealed leaves are the age file of the content, cut at 1 MiB, and count every plaintext byte read', async () => {
    const id = generateX25519Identity()
    const recipients = [x25519IdentityFromString(id.identity).recipient()]
    for (const workers of [0, 2]) {
      const pool = new LeafWorkers(workers)
      try {
        for (const n of SIZES) {
          const data = bytes(n, n + 3)
          const fileKey = newFileKey()
          const header = encodeHeader(fileKey, recipients)
          const nonce = randomBytes(16)
          const leaves: Buffer[] = []
          let read = 0
          const src = openData(data)
          try {
            for await (const l of fileLeaves({ size: n, input: () => ({ fd: src.fd }) }, leafSeal({ fileKey, header, nonce, payloadKey: payloadKey(fileKey, nonce) }), pool, noProblem, (b) => { read += b })) leaves.push(Buffer.from(l.bytes))
          } finally {
            src[Symbol.dispose]()
          }
          const age = Buffer.concat(leaves)
          expect(age.length).toBe(ciphertextSize(n, header.length))
          expect(read).toBe(n)
          leaves.slice(0, -1).forEach((l) => expect(l.length).toBe(LEAF_SIZE))
          expect(age.subarray(0, header.length).equals(header)).toBe(true)
          const plain: Uint8Array[] = []
          for await (const c of decryptStream([age], { fileKey })) plain.push(c)
          expect(Buffer.concat(plain).equals(data)).toBe(true)
        }
      } finally {
        await pool.close()
      }
    }
  })

  it('workers of the compiled build start the age files of one-leaf files themselves; each file gets its own key', async () => {
    // The workers load dist/pack/leaves.js (npm test builds first); from the TypeScript sources they cannot.
    const dist = await import('../../dist/pack/leaf-workers.js' as string) as typeof import('../../src/pack/leaf-workers.js')
    const id = generateX25519Identity()
    const recipients = [x25519IdentityFromString(id.identity).recipient()]
    const file = path.join(tmpDir(), 'small.bin')
    const data = bytes(200_000, 9)
    fs.writeFileSync(file, data)
    const st = fs.statSync(file, { bigint: true })
    const pool = new dist.LeafWorkers(2, { fresh: () => { throw new Error('made on the main thread') }, recipients: recipients.map(String) })
    try {
      expect(pool.startsFiles).toBe(true)
      const fromSources = new LeafWorkers(1, { fresh: () => { throw new Error('unused') }, recipients: [] })
      expect(fromSources.startsFiles).toBe(false)
      await fromSources.close()
      const job = { kind: 'file' as const, input: { path: new Uint8Array(Buffer.from(file)), expect: { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs } }, seal: 'fresh' as const }
      const keys: string[] = []
      for (const r of await Promise.all([pool.run(job), pool.run(job)])) {
        if ('problem' in r) throw new Error('unexpected problem')
        expect(r.fresh).toBeDefined()
        const fileKey = Buffer.from(r.fresh!.fileKey)
        keys.push(fileKey.toString('hex'))
        expect(r.leaf.length).toBe(ciphertextSize(data.length, r.fresh!.headerLength))
        const plain: Uint8Array[] = []
        for await (const c of decryptStream([r.leaf], { fileKey })) plain.push(c)
        expect(Buffer.concat(plain).equals(data)).toBe(true)
        const opened: Uint8Array[] = []
        for await (const c of decryptStream([r.leaf], { identities: [x25519IdentityFromString(id.identity)] })) opened.push(c)
        expect(Buffer.concat(opened).equals(data)).toBe(true)
      }
      expect(keys[0]).not.toBe(keys[1])
    } finally {
      await pool.close()
    }
  })

  it('a file shorter than its listed size is a problem, not a short leaf', async () => {
    for (const workers of [0, 2]) {
      const pool = new LeafWorkers(workers)
      const src = openData(bytes(LEAF_SIZE + 10, 1))
      try {
        const all = fileLeaves({ size: 3 * LEAF_SIZE, input: () => ({ fd: src.fd }) }, null, pool, (p) => new Error(JSON.stringify(p)))
        await expect((async () => { for await (const _ of all) {} })()).rejects.toThrow(`{"kind":"changed","what":"only ${LEAF_SIZE + 10} of ${3 * LEAF_SIZE} bytes could be read"}`)
      } finally {
        src[Symbol.dispose]()
        await pool.close()
      }
    }
  })

  it('jobs posted several to a message each get their own result: leaf, source problem or error', async () => {
    const dir = tmpDir()
    const files = Array.from({ length: 21 }, (_, i) => {
      const file = path.join(dir, `f${i}`)
      fs.writeFileSync(file, bytes(i * 997, 40 + i))
      return file
    })
    const inputOf = (file: string): { path: Uint8Array, expect: { dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint } } => {
      const st = fs.statSync(file, { bigint: true })
      return { path: new Uint8Array(Buffer.from(file)), expect: { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs } }
    }
    const jobs = files.map((f) => ({ kind: 'file' as const, input: inputOf(f), seal: null }))
    jobs[7] = { ...jobs[7]!, input: { ...jobs[7]!.input, expect: { ...jobs[7]!.input.expect, size: 5n } } } // listed smaller than it is
    jobs[12] = { ...jobs[12]!, seal: { key: new Uint8Array(5), prefix: new Uint8Array(16) } } // a key ChaCha20 refuses
    for (const workers of [0, 2]) {
      const pool = new LeafWorkers(workers)
      try {
        const results = await Promise.allSettled(pool.runAll(jobs))
        expect(results).toHaveLength(files.length)
        results.forEach((r, i) => {
          if (i === 12) { expect(r.status).toBe('rejected'); return }
          expect(r.status).toBe('fulfilled')
          const v = (r as PromiseFulfilledResult<any>).value
          if (i === 7) { expect(v.problem.kind).toBe('changed'); return }
          const data = fs.readFileSync(files[i]!)
          expect(Buffer.from(v.leaf).equals(data), files[i]).toBe(true)
          expect(Buffer.from(v.digest).toString('hex')).toBe(createHash('sha256').update(data).digest('hex'))
        })
      } finally {
        await pool.close()
      }
    }
  })

  it('an error in a worker is a PackerError, and a closed pool refuses jobs', async () => {
    const pool = new LeafWorkers(1)
    const src = openData(bytes(65536, 2))
    try {
      const job = { kind: 'range' as const, input: { fd: src.fd }, size: 65536, start: 0, end: 65600, seal: { key: new Uint8Array(5), prefix: new Uint8Array(16) } }
      await expect(pool.run(job)).rejects.toBeInstanceOf(PackerError)
      await pool.close()
      await expect(pool.run({ ...job, seal: { key: new Uint8Array(32), prefix: new Uint8Array(16) } })).rejects.toBeInstanceOf(PackerError)
    } finally {
      src[Symbol.dispose]()
    }
  })

  it('pack() with jobs > 1 fails a file that changes as with jobs 1 (streamed, or read whole as one leaf)', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.bin'), bytes(3 * LEAF_SIZE, 5))
    fs.writeFileSync(path.join(src, 'b.txt'), 'b')
    for (const changed of ['a.bin', 'b.txt']) {
      for (const jobs of [1, 4]) {
        let listed = false // changed once listed, before it is read
        const run = pack({ source: localTree(src), output: dirOutput(tmpDir()), binSize: 4 << 20, encryption: null, onChange: 'fail', jobs, warn: () => {}, progress: (e) => { if (e.type === 'scan' && !listed) { listed = true; fs.appendFileSync(path.join(src, changed), 'x') } } })
        await expect(run).rejects.toThrow(new RegExp(`${changed.replace('.', '\\.')}: changed while being packed \\(size \\d+ became \\d+`))
      }
    }
  })
})
