/**
 * Sizes of 2 to 4 GiB: protons-runtime writes uint64 varints in [2^31, 2^32) wrongly (src/pack/varint-fix.ts), which
 * made the root node of such a file unreadable. These tests fail without the fix.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { UnixFS } from 'ipfs-unixfs'
import { varint } from 'multiformats'
import '../../src/pack/unixfs.js' // installs the fix, as pack does
import { CarSet } from '../../src/read/car-set.js'
import { FileView } from '../../src/read/file-view.js'
import { packerOk, tmpDir } from '../helpers.js'

function uvarint (n: number): Buffer {
  const out = Buffer.alloc(varint.encodingLength(n))
  varint.encodeTo(n, out, 0)
  return out
}

describe('UnixFS sizes around 2^31 and 2^32', () => {
  it('encode as protobuf varints and decode back', () => {
    for (const n of [2 ** 31 - 1, 2 ** 31, 3_222_012_088, 2 ** 32 - 1, 2 ** 32, 5 * 2 ** 30]) {
      const bytes = new UnixFS({ type: 'file', blockSizes: [BigInt(n)] }).marshal()
      // type=file (08 02), filesize (18 varint), blocksizes (20 varint)
      expect(Buffer.from(bytes).toString('hex'), String(n)).toBe(Buffer.concat([Buffer.from([0x08, 0x02, 0x18]), uvarint(n), Buffer.from([0x20]), uvarint(n)]).toString('hex'))
      expect(UnixFS.unmarshal(bytes).fileSize()).toBe(BigInt(n))
    }
  })

  it('a 2.6 GB (sparse) file packs to a readable set: verify passes, its last bytes read back', async () => {
    const src = tmpDir()
    const file = path.join(src, 'sparse.bin')
    fs.closeSync(fs.openSync(file, 'w'))
    fs.truncateSync(file, 2_600_000_000)
    fs.writeFileSync(path.join(src, 'marker'), 'x')
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt'], { env: { PACKER_STATE_DIR: tmpDir() } })
    await packerOk(['verify', out])
    const set = await CarSet.open(out)
    try {
      const e = (await set.files.lookup(Buffer.from('sparse.bin')))!
      const tail = await new FileView(set).read(e, 2_600_000_000 - 100, 2_600_000_000)
      expect(tail.equals(Buffer.alloc(100))).toBe(true)
    } finally { await set.close() }
  })
})
