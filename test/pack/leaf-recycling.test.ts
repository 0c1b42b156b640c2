import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CarSetWriter } from '../../src/car/car-set-writer.js'
import { dirCarSink } from '../../src/car/dir-sink.js'
import { generateX25519Identity, newAgeFile, parseRecipient } from '../../src/crypto/index.js'
import { LeafWorkers } from '../../src/pack/leaf-workers.js'
import { fileLeaves, leafSeal, type LeafSeal } from '../../src/pack/leaves.js'
import { importLeaves } from '../../src/pack/unixfs.js'
import { tmpDir } from '../helpers.js'
import { packer, packerOk } from '../helpers.js'

/** The CAR bytes, root and piece CID of `file` imported through a pool (sealed with `seal` when given). */
async function imported (file: string, seal: LeafSeal | null, pool: LeafWorkers, recycle: boolean): Promise<{ car: Buffer, root: string, pieceCid: string, records: Buffer }> {
  const dir = tmpDir()
  const records: Buffer[] = []
  const writer = new CarSetWriter({ sink: dirCarSink(dir), binSize: 1 << 30, onRecord: (r) => { records.push(r) } })
  const fd = fs.openSync(file, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const leaves = fileLeaves({ size, input: () => ({ fd }) }, seal, pool, (p) => new Error(JSON.stringify(p)))
    const sink = { put: async (cid: any, bytes: Uint8Array) => await writer.put(cid, bytes, recycle ? () => { pool.recycle(bytes) } : undefined) }
    const { cid } = await importLeaves(leaves, sink)
    const [car] = await writer.finish()
    return { car: fs.readFileSync(path.join(dir, car!.file)), root: cid.toString(), pieceCid: car!.pieceCid, records: Buffer.concat(records) }
  } finally { fs.closeSync(fd) }
}

describe("leaf buffers handed back to the workers once written", () => {
  it('give the same CARs, sealed and in clear, as new buffers for every leaf', async () => {
    const file = path.join(tmpDir(), 'big')
    fs.writeFileSync(file, crypto.randomBytes(24 * 1024 * 1024 + 12_345))
    const seal = leafSeal(newAgeFile([parseRecipient(generateX25519Identity().recipient)]))
    const recycling = new LeafWorkers(2)
    const fresh = new LeafWorkers(2)
    try {
      for (const s of [null, seal]) {
        const a = await imported(file, s, recycling, true)
        const b = await imported(file, s, fresh, false)
        expect(a.root).toBe(b.root)
        expect(a.pieceCid).toBe(b.pieceCid)
        expect(a.car.equals(b.car)).toBe(true)
        expect(a.records.equals(b.records)).toBe(true) // the block index records: offsets and lengths
      }
      expect(recycling.recycled).toBeGreaterThan(20) // the test means something only if buffers went back
      expect(fresh.recycled).toBe(0)
    } finally {
      await recycling.close()
      await fresh.close()
    }
  })

  it('a large file packed and unpacked through the CLI comes back byte for byte, encrypted and in clear', async () => {
    const src = tmpDir()
    const data = crypto.randomBytes(20 * 1024 * 1024 + 777)
    fs.writeFileSync(path.join(src, 'big'), data)
    fs.writeFileSync(path.join(src, 'small'), 'small')
    const keys = tmpDir()
    const recipient = (await packerOk(['keygen', '-o', path.join(keys, 'k.txt')])).stdout.trim()
    for (const how of [['--no-encrypt'], ['-r', recipient]]) {
      const out = tmpDir()
      await packerOk(['pack', src, '-o', out, '--jobs', '2', '-q', ...how])
      await packerOk(['verify', out])
      const dest = tmpDir()
      const r = await packer(['unpack', out, '-o', dest, '-q', ...(how[0] === '-r' ? ['-i', path.join(keys, 'k.txt')] : [])])
      expect(r.code).toBe(0)
      expect(fs.readFileSync(path.join(dest, 'big')).equals(data)).toBe(true)
      expect(fs.readFileSync(path.join(dest, 'small'), 'utf8')).toBe('small')
    }
  })
})
