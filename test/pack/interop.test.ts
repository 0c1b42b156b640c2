import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { Piece } from '@web3-storage/data-segment'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { IPFS_CAR, packerOk, run, tmpDir, bytes } from '../helpers.js'
import { MiB } from '../fixtures.js'

/** ipfs-car prints the root CID of what it packed. */
async function ipfsCarRoot (target: string): Promise<string> {
  const out = path.join(tmpDir(), 'x.car')
  const r = await run(process.execPath, [IPFS_CAR, 'pack', '--no-wrap', target, '-o', out])
  if (r.code !== 0) throw new Error(r.stderr)
  return r.stdout.trim()
}

describe('CIDs equal ipfs-car pack --no-wrap (with --no-encrypt)', () => {
  it('for single files of 0, 1, 1 MiB, 1 MiB + 1 and 5 MiB + 7 bytes', async () => {
    const dir = tmpDir()
    for (const [name, n] of [['zero', 0], ['one', 1], ['mib', MiB], ['mib1', MiB + 1], ['five', 5 * MiB + 7]] as const) {
      const f = path.join(dir, name)
      fs.writeFileSync(f, bytes(n, n))
      const out = tmpDir()
      const p = await packerOk(['pack', f, '-o', out, '--no-encrypt'])
      const root = /^root (\S+)/m.exec(p.stdout)![1]
      expect(root).toBe(await ipfsCarRoot(f))
      const ls = JSON.parse((await packerOk(['ls', out, '--json'])).stdout)
      expect(ls.cid).toBe(root)
    }
  })

  it('for a directory tree ipfs-car reads the same way (no dotfiles, empty dirs or symlinks)', async () => {
    const src = tmpDir()
    fs.mkdirSync(path.join(src, 'a/b'), { recursive: true })
    fs.writeFileSync(path.join(src, 'a/b/c.bin'), bytes(2 * MiB + 3, 9))
    fs.writeFileSync(path.join(src, 'a/small.txt'), 'small\n')
    fs.writeFileSync(path.join(src, 'top.txt'), 'top\n')
    fs.writeFileSync(path.join(src, 'ünïcödé.txt'), 'u\n')
    const out = tmpDir()
    const p = await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'])
    expect(/^root (\S+)/m.exec(p.stdout)![1]).toBe(await ipfsCarRoot(src))
    // Every file's CID, too.
    const ls = (await packerOk(['ls', out, '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l))
    for (const e of ls.filter((x) => x.type === 'file')) expect(e.cid).toBe(await ipfsCarRoot(path.join(src, e.path)))
  })
})

describe('piece CIDs', () => {
  it('equal @web3-storage/data-segment over every CAR, v1 and v2, with the padded size', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.bin'), bytes(5 * MiB + 99, 11))
    fs.writeFileSync(path.join(src, 'b.txt'), 'b\n')
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'])
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(manifest.cars.length).toBeGreaterThanOrEqual(3)
    for (const c of manifest.cars) {
      const piece = Piece.fromPayload(fs.readFileSync(path.join(out, c.file)))
      expect(c.pieceCidV2).toBe(piece.link.toString())
      expect(c.pieceCid).toBe(CID.create(1, 0xf101, Digest.create(0x1012, piece.root)).toString())
      expect(c.pieceSize).toBe(Number(piece.size))
    }
    const csv = (await packerOk(['pieces', out])).stdout.trim().split('\n')
    expect(csv[0]).toMatch(/^car_file,car_size,piece_cid,piece_cid_v2,piece_size,payload_cid/)
    expect(csv.slice(1).map((l) => l.split(',')[2])).toEqual(manifest.cars.map((c: any) => c.pieceCid))
    const json = JSON.parse((await packerOk(['pieces', out, '--json'])).stdout)
    expect(json.map((r: any) => r.piece_size)).toEqual(manifest.cars.map((c: any) => c.pieceSize))
  })
})
