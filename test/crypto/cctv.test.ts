// The C2SP CCTV age test vectors (npm `cctv-age`): every vector that uses X25519, scrypt and the header/payload
// rules. Armored vectors (packer never writes or reads ASCII armor) and post-quantum hybrid vectors (ML-KEM is not in
// Node 20) are skipped, and counted, so the totals are asserted.
import { createHash } from 'node:crypto'
import { inflateSync } from 'node:zlib'
import * as vectors from 'cctv-age'
import { describe, expect, it } from 'vitest'
import { PackerError } from '../../src/errors.js'
import { decryptStream, passphraseIdentity, x25519IdentityFromString, type Identity } from '../../src/crypto/index.js'

interface Vector { name: string; meta: Map<string, string[]>; body: Buffer }

function parseVector (name: string, bytes: Uint8Array): Vector {
  const b = Buffer.from(bytes)
  const split = b.indexOf('\n\n')
  const meta = new Map<string, string[]>()
  for (const line of b.subarray(0, split).toString('utf8').split('\n')) {
    const i = line.indexOf(': ')
    const k = line.slice(0, i)
    meta.set(k, [...(meta.get(k) ?? []), line.slice(i + 2)])
  }
  let body = b.subarray(split + 2)
  if (meta.get('compressed')?.[0] === 'zlib') body = inflateSync(body)
  return { name, meta, body }
}

const all = Object.entries(vectors as unknown as Record<string, Uint8Array>).map(([n, v]) => parseVector(n, v))
const isArmored = (v: Vector): boolean => v.meta.get('armored')?.[0] === 'yes'
const isHybrid = (v: Vector): boolean => (v.meta.get('identity') ?? []).some(s => s.startsWith('AGE-SECRET-KEY-PQ-'))
const applicable = all.filter(v => !isArmored(v) && !isHybrid(v))

async function run (v: Vector, pieces: (b: Buffer) => Buffer[]): Promise<{ out: Buffer; err: unknown }> {
  const identities: Identity[] = [
    ...(v.meta.get('identity') ?? []).map(s => x25519IdentityFromString(s)),
    ...(v.meta.get('passphrase') ?? []).map(p => passphraseIdentity(p)),
  ]
  const out: Buffer[] = []
  let err: unknown = null
  try {
    for await (const c of decryptStream(pieces(v.body), { identities })) out.push(Buffer.from(c))
  } catch (e) {
    err = e
  }
  return { out: Buffer.concat(out), err }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const whole = (b: Buffer): Buffer[] => [b]
const ragged = (b: Buffer): Buffer[] => {
  // Irregular piece sizes, to exercise the chunk reassembly across piece boundaries.
  const out: Buffer[] = []
  let off = 0
  let n = 1
  while (off < b.length) {
    out.push(b.subarray(off, off + n))
    off += n
    n = (n * 7 + 13) % 70001 + 1
  }
  return out
}

const stats = { ran: 0, passed: 0 }

describe('CCTV age vectors', () => {
  it('has the expected number of vectors', () => {
    expect(all.length).toBe(143)
    expect(all.filter(isArmored).length).toBe(33)
    expect(all.filter(v => !isArmored(v) && isHybrid(v)).length).toBe(18)
    expect(applicable.length).toBe(92)
  })

  for (const v of applicable) {
    const expectation = v.meta.get('expect')![0]!
    it(`${v.name} (${expectation})`, async () => {
      stats.ran++
      for (const pieces of [whole, ragged]) {
        const { out, err } = await run(v, pieces)
        const code = err instanceof PackerError ? err.code : err === null ? 'none' : `non-PackerError ${String(err)}`
        switch (expectation) {
          case 'success':
            expect(err).toBeNull()
            expect(sha256(out)).toBe(v.meta.get('payload')![0])
            break
          case 'no match':
            expect(code).toBe('NO_IDENTITY')
            expect(out.length).toBe(0)
            break
          case 'HMAC failure':
            expect(code).toBe('CORRUPT')
            expect(out.length).toBe(0)
            break
          case 'header failure':
            expect(['FORMAT', 'CORRUPT', 'CRYPTO']).toContain(code)
            expect(out.length).toBe(0)
            break
          case 'payload failure':
            expect(['CORRUPT', 'FORMAT']).toContain(code)
            // Whatever was released before the failure must be exactly the authenticated prefix.
            expect(sha256(out)).toBe(v.meta.get('payload')![0])
            break
          default:
            throw new Error(`unknown expectation ${expectation}`)
        }
        if (err instanceof PackerError) expect(err.message).not.toMatch(/\n/)
      }
      stats.passed++
    })
  }

  it('ran and passed every applicable vector', () => {
    expect(stats).toEqual({ ran: 92, passed: 92 })
  })
})
