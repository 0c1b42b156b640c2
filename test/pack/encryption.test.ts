import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CarSet } from '../../src/read/car-set.js'
import { FileView } from '../../src/read/file-view.js'
import { readIdentityFile } from '../../src/crypto/index.js'
import { bytes, describeTree, oneLine, packer, packerOk, run, tmpDir } from '../helpers.js'
import { MiB } from '../fixtures.js'

const SECRET_NAME = 'quarterly-secret-name-7f3a.txt'
const KNOWN = 'KNOWN-PLAINTEXT-MARKER-0123456789'

let src: string
let keys: string
let ageRecipient: string


beforeAll(async () => {
  src = tmpDir()
  fs.mkdirSync(path.join(src, 'private/deeper'), { recursive: true })
  fs.writeFileSync(path.join(src, 'private', SECRET_NAME), `${KNOWN}\n`.repeat(100))
  fs.writeFileSync(path.join(src, 'private/deeper/big.bin'), bytes(5 * MiB + 777, 41))
  fs.writeFileSync(path.join(src, 'empty'), '')
  fs.mkdirSync(path.join(src, 'empty-dir'))
  fs.symlinkSync('private/' + SECRET_NAME, path.join(src, 'secret-link'))
  keys = tmpDir()
  ageRecipient = (await packerOk(['keygen', '-o', path.join(keys, 'age.txt')])).stdout.trim()
  await packerOk(['keygen', '--rsa', '-o', keys])
  expect((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(keys, 'id_ed25519')])).code).toBe(0)
  expect((await run('openssl', ['x509', '-in', path.join(keys, 'certificate.pem'), '-pubkey', '-noout', '-out', path.join(keys, 'pub.pem')])).code).toBe(0)
})

const packs = new Map<string, Promise<string>>()
/**
 * The set `pack src ARGS` makes, packed once for all the tests here that only read it (each pack with the same
 * arguments makes an equivalent set: what these tests check does not depend on its random keys).
 */
async function packedSet (args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const key = JSON.stringify([args, env])
  let set = packs.get(key)
  if (set === undefined) {
    set = (async () => {
      const out = tmpDir()
      await packerOk(['pack', src, '-o', out, ...args], { env })
      return out
    })()
    packs.set(key, set)
  }
  return await set
}

describe('encrypted round trips for every recipient and identity type (a file over several CARs, an empty file)', () => {
  const cases: Array<[string, () => string[], () => string[], NodeJS.ProcessEnv?]> = [
    ['RSA certificate → RSA private key', () => ['-R', path.join(keys, 'certificate.pem')], () => ['-i', path.join(keys, 'private_key.pem')]],
    ['RSA public key PEM → RSA private key', () => ['-R', path.join(keys, 'pub.pem')], () => ['-i', path.join(keys, 'private_key.pem')]],
    ['age X25519 → age identity', () => ['-r', ageRecipient], () => ['-i', path.join(keys, 'age.txt')]],
    ['ssh-ed25519 line → OpenSSH key', () => ['-R', path.join(keys, 'id_ed25519.pub')], () => ['-i', path.join(keys, 'id_ed25519')]],
    ['passphrase → passphrase', () => ['--passphrase'], () => [], { PACKER_PASSPHRASE: 'a long and good passphrase' }],
  ]
  for (const [name, rcpt, ident, env] of cases) {
    it(name, async () => {
      const out = await packedSet(['--bin-size', '2MiB', ...rcpt()], env)
      const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
      expect(m.cars.length).toBeGreaterThanOrEqual(3)
      const dest = tmpDir()
      await packerOk(['unpack', out, '-o', dest, ...ident()], { env })
      expect(describeTree(dest)).toEqual(describeTree(src))
    })
  }

  it('several recipients: any one key opens the set', async () => {
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '-R', path.join(keys, 'certificate.pem'), '-r', ageRecipient])
    for (const id of ['private_key.pem', 'age.txt']) {
      const dest = tmpDir()
      await packerOk(['unpack', out, '-o', dest, '-i', path.join(keys, id)])
      expect(describeTree(dest)).toEqual(describeTree(src))
    }
  })
})

describe('what the CARs reveal', () => {
  const everything = (dir: string): Buffer => Buffer.concat(fs.readdirSync(dir).map((n) => fs.readFileSync(path.join(dir, n))))

  it('hidden names (default): no CAR, index or manifest byte holds a name, a symlink target or known plaintext', async () => {
    const out = await packedSet(['-r', ageRecipient])
    const all = everything(out)
    for (const needle of [SECRET_NAME, 'private', 'deeper', 'big.bin', 'empty-dir', 'secret-link', KNOWN]) {
      expect(all.includes(Buffer.from(needle)), needle).toBe(false)
    }
  })

  it('--plain-names: names are browsable, contents are still not', async () => {
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '-r', ageRecipient, '--plain-names'])
    const cars = Buffer.concat(fs.readdirSync(out).filter((n) => n.endsWith('.car')).map((n) => fs.readFileSync(path.join(out, n))))
    expect(cars.includes(Buffer.from(SECRET_NAME))).toBe(true)
    expect(cars.includes(Buffer.from(KNOWN))).toBe(false)
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest, '-i', path.join(keys, 'age.txt')])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })
})

describe('bad keys and forged sets get one clear line and write nothing', () => {
  let set: string
  let setId: string
  beforeAll(async () => {
    set = tmpDir()
    const p = await packerOk(['pack', src, '-o', set, '-R', path.join(keys, 'certificate.pem')])
    setId = /^set ID (\S+)/m.exec(p.stdout)![1]
  })

  it('the wrong identity', async () => {
    const dest = tmpDir()
    const r = await packer(['unpack', set, '-o', dest, '-i', path.join(keys, 'age.txt')])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/no identity .*match/i)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('no identity at all', async () => {
    const r = await packer(['ls', set])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/is encrypted: give the identity with -i FILE \(or --passphrase\)/)
  })

  it('--expect with another set ID', async () => {
    const r = await packer(['unpack', set, '-o', tmpDir(), '-i', path.join(keys, 'private_key.pem'), '--expect', 'bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/set ID mismatch/)
    await packerOk(['ls', set, '-i', path.join(keys, 'private_key.pem'), '--expect', setId])
  })

  it('a whole forged set encrypted to the same (public) certificate is refused by --expect', async () => {
    const forgedSrc = tmpDir()
    fs.writeFileSync(path.join(forgedSrc, 'private'), 'forged')
    const forged = tmpDir()
    await packerOk(['pack', forgedSrc, '-o', forged, '-R', path.join(keys, 'certificate.pem')])
    const r = await packer(['unpack', forged, '-o', tmpDir(), '-i', path.join(keys, 'private_key.pem'), '--expect', setId])
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/set ID mismatch/)
  })

  it('--passphrase mixed with other recipients, and an empty passphrase', async () => {
    let r = await packer(['pack', src, '-o', tmpDir(), '--passphrase', '-r', ageRecipient], { env: { PACKER_PASSPHRASE: 'x' } })
    expect(r.code).toBe(2)
    expect(oneLine(r.stderr)).toMatch(/--passphrase cannot be combined with -r or -R/)
    r = await packer(['pack', src, '-o', tmpDir(), '--passphrase'], { env: { PACKER_PASSPHRASE: '' } })
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/passphrase is empty/)
  })

  it('a wrong passphrase', async () => {
    const out = tmpDir()
    await packerOk(['pack', src, '-o', out, '--passphrase'], { env: { PACKER_PASSPHRASE: 'right one' } })
    const dest = tmpDir()
    const r = await packer(['unpack', out, '-o', dest, '--passphrase'], { env: { PACKER_PASSPHRASE: 'wrong one' } })
    expect(r.code).toBe(1)
    expect(oneLine(r.stderr)).toMatch(/passphrase|no identity/i)
    expect(fs.readdirSync(dest)).toEqual([])
  })

  it('a file key that does not fit its file (a forged or mixed-up table) fails age authentication; no plaintext passes', async () => {
    const out = await packedSet(['-r', ageRecipient])
    const set = await CarSet.open(out, { identities: await readIdentityFile(path.join(keys, 'age.txt')) })
    try {
      const view = new FileView(set)
      const big = (await set.files.lookup(Buffer.from('private/deeper/big.bin')))!
      const secret = (await set.files.lookup(Buffer.from(`private/${SECRET_NAME}`)))!
      big.enc = { ...big.enc!, key: secret.enc!.key }
      await expect(view.read(big, 0, 10)).rejects.toMatchObject({ code: 'CORRUPT' })
      const got: Buffer[] = []
      await expect((async () => { for await (const c of view.stream(big)) got.push(Buffer.from(c)) })()).rejects.toMatchObject({ code: 'CORRUPT' })
      expect(got).toEqual([])
    } finally { await set.close() }
  })
})

describe('random access to an encrypted file reads the right plaintext at chunk boundaries', () => {
  it('0, 65535, 65536, 65537, 1 MiB ± 1, CAR boundaries and the last byte', async () => {
    const out = await packedSet(['--bin-size', '2MiB', '-r', ageRecipient])
    const set = await CarSet.open(out, { identities: await readIdentityFile(path.join(keys, 'age.txt')) })
    try {
      const view = new FileView(set)
      const e = (await set.files.lookup(Buffer.from('private/deeper/big.bin')))!
      const plain = fs.readFileSync(path.join(src, 'private/deeper/big.bin'))
      const n = plain.length
      for (const [a, b] of [[0, 1], [0, 65536], [65535, 65537], [65536, 65537], [65537, 200_000], [MiB - 1, MiB + 1], [2 * MiB - 5, 2 * MiB + 70_000], [n - 1, n], [n - 70_000, n], [0, n], [n, n + 10]]) {
        expect((await view.read(e, a, b)).equals(plain.subarray(a, Math.min(b, n))), `[${a}, ${b})`).toBe(true)
      }
      const empty = (await set.files.lookup(Buffer.from('empty')))!
      expect((await view.read(empty, 0, 10)).length).toBe(0)
    } finally { await set.close() }
  })
})
