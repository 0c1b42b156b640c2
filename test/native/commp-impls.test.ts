import { Piece } from '@web3-storage/data-segment'
import * as PieceMultihash from '@web3-storage/data-segment/multihash'
import { describe, expect, it } from 'vitest'

import { loadNativeAddon } from '../../src/native-addon.js'

const addon = loadNativeAddon().addon

describe.skipIf(process.env.PACKER_NO_NATIVE === '1')('native CommP one-shot', () => {
  it('every SHA-256 implementation gives data-segment\'s root and height, at block edges too', () => {
    expect(addon).not.toBeNull()
    const B = 127 * 2048 // the addon's block
    for (const n of [0, 1, 64, 65, 127, 128, 254, 255, B - 1, B, B + 1, 2 * B, 3 * B + 5, 4 * B + 127]) {
      const data = new Uint8Array(n)
      for (let i = 0; i < n; i++) data[i] = (i * 2654435761) >>> 24
      const h = PieceMultihash.create()
      h.write(data)
      const piece = Piece.fromDigest(h.digest())
      for (const impl of addon!.commpImpls()) {
        const r = addon!.commpOneshot(data, impl)
        expect({ n, impl, root: Buffer.from(r.root).toString('hex'), height: r.height })
          .toEqual({ n, impl, root: Buffer.from(piece.root).toString('hex'), height: piece.height })
        expect(r.paddedSize).toBe(Number(piece.size))
        expect(r.payloadSize).toBe(n)
      }
    }
  })

  it('rejects unknown implementations and bad arguments', () => {
    expect(() => addon!.commpOneshot(new Uint8Array(1), 'md5')).toThrow(/not available/)
    expect(() => addon!.commpOneshot('abc' as unknown as Uint8Array)).toThrow(TypeError)
  })
})
