// Key files: what readRecipientsFile / readIdentityFile accept and refuse, keygen, bech32.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  generateRsaCertificatePair, generateX25519Identity, parseHeader, parseRecipient, readIdentityFile, readRecipientsFile,
  writeX25519IdentityFile, x25519IdentityFromString,
} from '../../src/crypto/index.js'
import { decrypt, encrypt, expectPackerError, rand, sh, tempDir } from './helpers.js'

const dir = tempDir()
const p = (f: string): string => join(dir, f)

function rsaPair (name: string): void {
  sh('openssl', ['req', '-x509', '-nodes', '-days', '3650', '-newkey', 'rsa:2048', '-keyout', `${name}.key.pem`, '-out', `${name}.cert.pem`, '-subj', `/CN=${name}`], { cwd: dir })
}

/** A self-signed RSA certificate valid 2020–2021 (openssl ca -selfsign with explicit dates). */
function expiredCert (): void {
  mkdirSync(p('ca'))
  writeFileSync(p('ca/index.txt'), '')
  writeFileSync(p('ca/serial'), '01\n')
  writeFileSync(p('ca/ca.cnf'), '[ca]\ndefault_ca = c\n[c]\ndatabase = ca/index.txt\nnew_certs_dir = ca\nserial = ca/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n')
  sh('openssl', ['req', '-new', '-nodes', '-newkey', 'rsa:2048', '-keyout', 'expired.key.pem', '-out', 'ca/r.csr', '-subj', '/CN=expired'], { cwd: dir })
  sh('openssl', ['ca', '-batch', '-config', 'ca/ca.cnf', '-selfsign', '-keyfile', 'expired.key.pem', '-in', 'ca/r.csr', '-out', 'expired.cert.pem', '-startdate', '20200101000000Z', '-enddate', '20210101000000Z', '-notext'], { cwd: dir })
}

describe('recipient files', () => {
  it('certificate, SPKI and PKCS#1 public keys of one RSA key give the same ssh-rsa tag as its private key (PKCS#8 and PKCS#1)', async () => {
    rsaPair('a')
    sh('openssl', ['x509', '-in', 'a.cert.pem', '-pubkey', '-noout', '-out', 'a.spki.pem'], { cwd: dir })
    sh('openssl', ['rsa', '-pubin', '-in', 'a.spki.pem', '-RSAPublicKey_out', '-out', 'a.pkcs1pub.pem'], { cwd: dir })
    sh('openssl', ['rsa', '-in', 'a.key.pem', '-traditional', '-out', 'a.pkcs1.pem'], { cwd: dir })
    expect(readFileSync(p('a.pkcs1pub.pem'), 'utf8')).toMatch(/BEGIN RSA PUBLIC KEY/)
    expect(readFileSync(p('a.pkcs1.pem'), 'utf8')).toMatch(/BEGIN RSA PRIVATE KEY/)
    const tags = new Set<string>()
    for (const f of ['a.cert.pem', 'a.spki.pem', 'a.pkcs1pub.pem']) {
      const { recipients, warnings } = await readRecipientsFile(p(f))
      expect(warnings).toEqual([])
      expect(recipients.map(r => r.kind)).toEqual(['ssh-rsa'])
      tags.add(recipients[0]!.wrapFileKey(rand(16))[0]!.args[0]!)
    }
    // The tag equals the one of the ssh-keygen-converted line (SHA-256 of the SSH wire key).
    const line = sh('ssh-keygen', ['-i', '-m', 'PKCS8', '-f', p('a.spki.pem')]).toString()
    tags.add(parseRecipient(line).wrapFileKey(rand(16))[0]!.args[0]!)
    expect(tags.size).toBe(1)
    const plain = rand(5000)
    const { file } = await encrypt(plain, (await readRecipientsFile(p('a.cert.pem'))).recipients)
    for (const f of ['a.key.pem', 'a.pkcs1.pem']) expect((await decrypt(file, await readIdentityFile(p(f)))).equals(plain)).toBe(true)
  })

  it('DER certificates and DER public keys are accepted too', async () => {
    sh('openssl', ['x509', '-in', 'a.cert.pem', '-outform', 'DER', '-out', 'a.cert.der'], { cwd: dir })
    sh('openssl', ['pkey', '-pubin', '-in', 'a.spki.pem', '-outform', 'DER', '-out', 'a.spki.der'], { cwd: dir })
    const tag = (await readRecipientsFile(p('a.cert.pem'))).recipients[0]!.wrapFileKey(rand(16))[0]!.args[0]
    for (const f of ['a.cert.der', 'a.spki.der']) {
      const { recipients } = await readRecipientsFile(p(f))
      expect(recipients[0]!.wrapFileKey(rand(16))[0]!.args[0]).toBe(tag)
    }
    writeFileSync(p('junk.der'), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05]))
    await expectPackerError(readRecipientsFile(p('junk.der')), 'CRYPTO', /junk\.der: binary file/)
  })

  it('a mixed file: certificate, comments, blank lines, age1… and ssh-… lines', async () => {
    rsaPair('b')
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', p('b_ed')])
    const x = generateX25519Identity()
    writeFileSync(p('mixed.txt'), `# team keys\n\n${x.recipient}\n${readFileSync(p('b.cert.pem'), 'utf8')}\n  ${readFileSync(p('b_ed.pub'), 'utf8').trim()}  \n# end\n`)
    const { recipients } = await readRecipientsFile(p('mixed.txt'))
    expect(recipients.map(r => r.kind).sort()).toEqual(['X25519', 'ssh-ed25519', 'ssh-rsa'])
    const plain = rand(1000)
    const { file } = await encrypt(plain, recipients)
    expect(parseHeader(file).stanzas.length).toBe(3)
    for (const f of ['b.key.pem', 'b_ed']) expect((await decrypt(file, await readIdentityFile(p(f)))).equals(plain)).toBe(true)
    expect((await decrypt(file, [x25519IdentityFromString(x.identity)])).equals(plain)).toBe(true)
  })

  it('an expired certificate gives a warning, not an error, and still encrypts', async () => {
    expiredCert()
    const { recipients, warnings } = await readRecipientsFile(p('expired.cert.pem'))
    expect(warnings.length).toBe(1)
    expect(warnings[0]).toMatch(/expired\.cert\.pem.*expired on 2021-01-01/)
    const plain = rand(100)
    const { file } = await encrypt(plain, recipients)
    expect((await decrypt(file, await readIdentityFile(p('expired.key.pem')))).equals(plain)).toBe(true)
  })

  it('a non-RSA (EC) certificate is a CRYPTO error naming the file', async () => {
    sh('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec.key'], { cwd: dir })
    sh('openssl', ['req', '-x509', '-new', '-key', 'ec.key', '-days', '30', '-out', 'ec.cert.pem', '-subj', '/CN=ec'], { cwd: dir })
    await expectPackerError(readRecipientsFile(p('ec.cert.pem')), 'CRYPTO', /ec\.cert\.pem.*EC key.*RSA/)
  })

  it('refuses private keys, garbage, small RSA keys, empty files and missing files, naming them', async () => {
    await expectPackerError(readRecipientsFile(p('a.key.pem')), 'CRYPTO', /a\.key\.pem.*private key/)
    writeFileSync(p('junk.txt'), '# ok\nhello there\n')
    await expectPackerError(readRecipientsFile(p('junk.txt')), 'CRYPTO', /junk\.txt: line 2: unknown recipient/)
    writeFileSync(p('empty.txt'), '# nothing\n\n')
    await expectPackerError(readRecipientsFile(p('empty.txt')), 'CRYPTO', /no recipients in .*empty\.txt/)
    await expectPackerError(readRecipientsFile(p('missing.pem')), 'CRYPTO', /missing\.pem.*ENOENT/)
    sh('ssh-keygen', ['-q', '-t', 'rsa', '-b', '1024', '-N', '', '-f', p('small_rsa')])
    await expectPackerError(readRecipientsFile(p('small_rsa.pub')), 'CRYPTO', /1024 bits/)
    sh('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', p('ecdsa')])
    await expectPackerError(readRecipientsFile(p('ecdsa.pub')), 'CRYPTO', /ecdsa-sha2-nistp256/)
    await expectPackerError(() => parseRecipient('age1qqqqq'), 'CRYPTO', /invalid age recipient/)
    await expectPackerError(() => parseRecipient(generateX25519Identity().recipient.toUpperCase()), 'CRYPTO')
    await expectPackerError(() => parseRecipient(generateX25519Identity().identity), 'CRYPTO', /secret key/)
  })
})

describe('identity files', () => {
  it('age-keygen output (comments, several keys) and our own identity files', async () => {
    sh('age-keygen', ['-o', p('k1.txt')])
    sh('age-keygen', ['-o', p('k2.txt')])
    writeFileSync(p('both.txt'), readFileSync(p('k1.txt'), 'utf8') + '\n' + readFileSync(p('k2.txt'), 'utf8'))
    const ids = await readIdentityFile(p('both.txt'))
    expect(ids.map(i => i.kind)).toEqual(['X25519', 'X25519'])
    const r2 = sh('age-keygen', ['-y', p('k2.txt')]).toString().trim()
    const plain = rand(10)
    const { file } = await encrypt(plain, [parseRecipient(r2)])
    expect((await decrypt(file, ids)).equals(plain)).toBe(true)
  })

  it('writeX25519IdentityFile: 0600, age-keygen layout, refuses to overwrite (EXISTS)', async () => {
    const r = await writeX25519IdentityFile(p('new.key'))
    expect(statSync(p('new.key')).mode & 0o777).toBe(0o600)
    const text = readFileSync(p('new.key'), 'utf8')
    expect(text).toMatch(new RegExp(`^# created: \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\n# public key: ${r}\\nAGE-SECRET-KEY-1[0-9A-Z]{58}\\n$`))
    const id = x25519IdentityFromString(text.split('\n')[2]!)
    expect(id.recipientString()).toBe(r)
    await expectPackerError(writeX25519IdentityFile(p('new.key')), 'EXISTS', /new\.key already exists/)
    expect(readFileSync(p('new.key'), 'utf8')).toBe(text)
  })

  it('generateRsaCertificatePair refuses to overwrite either file', async () => {
    mkdirSync(p('g1'))
    const first = await generateRsaCertificatePair(p('g1'))
    const key = readFileSync(first.privateKey, 'utf8')
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    expect(sh('openssl', ['x509', '-in', first.certificate, '-noout', '-subject', '-enddate']).toString()).toMatch(/CN *= *packer[\s\S]*notAfter=.*21\d\d/)
    await expectPackerError(generateRsaCertificatePair(p('g1')), 'EXISTS', /private_key\.pem already exists/)
    expect(readFileSync(first.privateKey, 'utf8')).toBe(key)
    mkdirSync(p('g2'))
    writeFileSync(p('g2/certificate.pem'), 'mine')
    await expectPackerError(generateRsaCertificatePair(p('g2')), 'EXISTS', /certificate\.pem already exists/)
    expect(readFileSync(p('g2/certificate.pem'), 'utf8')).toBe('mine')
  })

  it('generateRsaCertificatePair without openssl on PATH: a clear CRYPTO error, nothing left behind', async () => {
    mkdirSync(p('g3'))
    const saved = process.env.PATH
    process.env.PATH = '/nonexistent'
    try {
      await expectPackerError(generateRsaCertificatePair(p('g3')), 'CRYPTO', /openssl is not installed/)
    } finally {
      process.env.PATH = saved
    }
    expect(readdirSync(p('g3'))).toEqual([])
  })

  it('passphrase-protected PEM (PKCS#8 and PKCS#1) and OpenSSH keys: CRYPTO "encrypted with a passphrase", naming the file', async () => {
    sh('openssl', ['pkcs8', '-topk8', '-in', 'a.key.pem', '-v2', 'aes-256-cbc', '-passout', 'pass:secret', '-out', 'enc8.pem'], { cwd: dir })
    sh('openssl', ['rsa', '-in', 'a.key.pem', '-aes256', '-traditional', '-passout', 'pass:secret', '-out', 'enc1.pem'], { cwd: dir })
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', p('enc_ssh')])
    expect(readFileSync(p('enc8.pem'), 'utf8')).toMatch(/ENCRYPTED PRIVATE KEY/)
    expect(readFileSync(p('enc1.pem'), 'utf8')).toMatch(/Proc-Type: 4,ENCRYPTED/)
    for (const f of ['enc8.pem', 'enc1.pem', 'enc_ssh']) {
      await expectPackerError(readIdentityFile(p(f)), 'CRYPTO', new RegExp(`${f}.*encrypted with a passphrase; decrypt .*first`))
    }
  })

  it('refuses public keys, certificates alone, garbage, unsupported key types, age-encrypted key files', async () => {
    await expectPackerError(readIdentityFile(p('a.cert.pem')), 'CRYPTO', /a\.cert\.pem holds no private key/)
    await expectPackerError(readIdentityFile(p('b_ed.pub')), 'CRYPTO', /public key/)
    await expectPackerError(readIdentityFile(p('junk.txt')), 'CRYPTO', /junk\.txt: line 2: not an identity/)
    await expectPackerError(readIdentityFile(p('ec.key')), 'CRYPTO', /ec\.key.*EC PRIVATE KEY/)
    await expectPackerError(readIdentityFile(p('nope')), 'CRYPTO', /cannot read identity file .*nope/)
    const x = generateX25519Identity()
    writeFileSync(p('bad.txt'), x.identity.slice(0, -1) + (x.identity.endsWith('Q') ? 'P' : 'Q') + '\n')
    await expectPackerError(readIdentityFile(p('bad.txt')), 'CRYPTO', /bad\.txt.*invalid AGE-SECRET-KEY-1/)
    const { file } = await encrypt(Buffer.from(x.identity), [parseRecipient(x.recipient)])
    writeFileSync(p('key.age'), file)
    await expectPackerError(readIdentityFile(p('key.age')), 'CRYPTO', /age-encrypted/)
  })

  it('a PEM certificate next to the private key in one file is fine (the certificate is skipped)', async () => {
    writeFileSync(p('combined.pem'), readFileSync(p('a.cert.pem'), 'utf8') + readFileSync(p('a.key.pem'), 'utf8'))
    const ids = await readIdentityFile(p('combined.pem'))
    expect(ids.map(i => i.kind)).toEqual(['ssh-rsa'])
  })
})
