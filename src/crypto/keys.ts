/** Key files: recipients and identities from what users have (age-keygen, openssl, ssh-keygen output), and keygen. */
import { spawn } from 'node:child_process'
import { constants as fsc } from 'node:fs'
import { chmod, copyFile, link, mkdtemp, open, readFile, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { identityFromPem, recipientFromDer, recipientFromPem, splitPem } from './pem.js'
import { parseOpenSshPrivateKey, parseSshRecipient } from './ssh.js'
import type { Identity, Recipient } from './stanza.js'
import { cryptoError } from './util.js'
import { generateX25519Identity, parseX25519Recipient, x25519IdentityFromString } from './x25519.js'

/** One recipient: `age1…` (X25519), `ssh-rsa AAAA…` or `ssh-ed25519 AAAA…`. */
export function parseRecipient (text: string, source?: string): Recipient {
  const s = text.trim()
  const where = source ?? 'recipient'
  if (s.startsWith('age1')) {
    try {
      return parseX25519Recipient(s)
    } catch (err) {
      if (source === undefined) throw err
      throw cryptoError(`${source}: ${(err as Error).message}`, source, err)
    }
  }
  if (s.startsWith('ssh-')) return parseSshRecipient(s, where)
  if (s.startsWith('AGE-SECRET-KEY-')) throw cryptoError(`${where}: this is a secret key (AGE-SECRET-KEY-1…); give its public key age1… (age-keygen -y prints it)`, source)
  const shown = s.length > 40 ? s.slice(0, 40) + '…' : s
  throw cryptoError(`${where}: unknown recipient ${JSON.stringify(shown)}; expected age1…, ssh-rsa …, ssh-ed25519 … or an RSA certificate file`, source)
}

async function readKeyFile (path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new PackerError('CRYPTO', `cannot read ${what} file ${path} (${code}); check the path and its permissions`, { subject: path, cause: err })
  }
}

/**
 * Recipients from a file: X.509 certificates (RSA), RSA public keys (SPKI or PKCS#1 PEM) and lines of `age1…`,
 * `ssh-rsa …`, `ssh-ed25519 …` (blank lines and `#` comments ignored), in any mix. RSA keys become ssh-rsa
 * recipients, which `age -d -i private_key.pem` decrypts. An expired certificate gives a warning, not an error.
 */
export async function readRecipientsFile (path: string): Promise<{ recipients: Recipient[]; warnings: string[] }> {
  const raw = await readKeyFile(path, 'recipients')
  const warnings: string[] = []
  if (raw[0] === 0x30 && raw.subarray(0, 64).some(b => b < 0x09 || b > 0x7e)) {
    // Binary DER (an ASN.1 SEQUENCE): a certificate or an SPKI / PKCS#1 public key.
    return { recipients: [recipientFromDer(raw, path, warnings)], warnings }
  }
  const text = raw.toString('utf8')
  const recipients: Recipient[] = []
  const { blocks, lines } = splitPem(text, path)
  for (const b of blocks) recipients.push(recipientFromPem(b, path, warnings))
  for (const { line, text: l } of lines) {
    const s = l.trim()
    if (s === '' || s.startsWith('#')) continue
    recipients.push(parseRecipient(s, `${path}: line ${line}`))
  }
  if (recipients.length === 0) throw cryptoError(`no recipients in ${path}; expected an RSA certificate, a PEM public key or age1…/ssh-… lines`, path)
  return { recipients, warnings }
}

/**
 * Identities from a file: RSA private keys (PKCS#8 `PRIVATE KEY` as `openssl req -nodes` writes it, or PKCS#1
 * `RSA PRIVATE KEY`), unencrypted OpenSSH keys (rsa, ed25519), and `AGE-SECRET-KEY-1…` lines (comments allowed).
 */
export async function readIdentityFile (path: string): Promise<Identity[]> {
  return parseIdentities((await readKeyFile(path, 'identity')).toString('utf8'), path)
}

/** Identities from the text of an identity file; `path` names it in errors. */
export function parseIdentities (text: string, path: string): Identity[] {
  if (text.startsWith('age-encryption.org/')) {
    throw cryptoError(`${path} is itself an age-encrypted file; decrypt it first (age -d -o key.txt ${path}) and give the decrypted key`, path)
  }
  const identities: Identity[] = []
  const { blocks, lines } = splitPem(text, path)
  for (const b of blocks) {
    if (b.label === 'OPENSSH PRIVATE KEY') {
      const body = b.text.split('\n').slice(1, -2).join('')
      identities.push(...parseOpenSshPrivateKey(Buffer.from(body, 'base64'), path))
      continue
    }
    const id = identityFromPem(b, path)
    if (id !== null) identities.push(id)
  }
  for (const { line, text: l } of lines) {
    const s = l.trim()
    if (s === '' || s.startsWith('#')) continue
    const where = `${path}: line ${line}`
    if (s.startsWith('AGE-SECRET-KEY-1')) {
      identities.push(x25519IdentityFromString(s, path))
    } else if (s.startsWith('AGE-PLUGIN-') || s.startsWith('AGE-SECRET-KEY-PQ-')) {
      throw cryptoError(`${where}: ${s.slice(0, s.indexOf('1') > 0 ? s.indexOf('1') : 20)}… identities (age plugins, post-quantum keys) are not supported by packer`, path)
    } else if (s.startsWith('age1') || s.startsWith('ssh-')) {
      throw cryptoError(`${where}: this is a public key (recipient); decryption needs the private key`, path)
    } else {
      throw cryptoError(`${where}: not an identity; expected a PEM private key, an OpenSSH private key or AGE-SECRET-KEY-1… lines`, path)
    }
  }
  if (identities.length === 0) {
    const onlyPublic = blocks.length > 0
    throw cryptoError(onlyPublic ? `${path} holds no private key (a certificate or public key?); give the private key` : `no identities in ${path} (empty file?)`, path)
  }
  return identities
}

/** Writes a new X25519 identity file (mode 0600, never overwriting) as age-keygen does; returns its recipient. */
export async function writeX25519IdentityFile (path: string): Promise<string> {
  const { identity, recipient } = generateX25519Identity()
  let fh
  try {
    fh = await open(path, 'wx', 0o600)
  } catch (err) {
    if (isErrno(err, 'EEXIST')) throw new PackerError('EXISTS', `${path} already exists; refusing to overwrite a key (choose another path)`, { subject: path })
    throw cryptoError(`cannot create ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, path, err)
  }
  try {
    await fh.writeFile(`# created: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}\n# public key: ${recipient}\n${identity}\n`)
    await fh.sync()
  } finally {
    await fh.close()
  }
  return recipient
}

function runOpenssl (args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = ''
    let child
    try {
      child = spawn('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    } catch (err) {
      reject(err)
      return
    }
    child.stderr.on('data', (d: Buffer) => { if (stderr.length < 4000) stderr += d.toString() })
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(cryptoError('openssl is not installed (or not on PATH); install it (apt-get install openssl) to make an RSA certificate pair, or use an age1… key'))
      else reject(cryptoError(`cannot run openssl: ${err.message}`, undefined, err))
    })
    child.on('close', (code) => {
      if (code === 0) resolve()
      else reject(cryptoError(`openssl req failed (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`))
    })
  })
}

async function exists (p: string): Promise<boolean> {
  try {
    await stat(p)
    return true
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false
    throw err
  }
}

/** Places `src` at `dst` only if `dst` does not exist (hard link, or an exclusive copy where links are unsupported). */
async function placeExclusive (src: string, dst: string): Promise<void> {
  try {
    await link(src, dst)
  } catch (err) {
    if (isErrno(err, 'EEXIST')) throw new PackerError('EXISTS', `${dst} already exists; refusing to overwrite a key (choose another directory)`, { subject: dst })
    if (isErrno(err, 'EPERM') || isErrno(err, 'ENOTSUP') || isErrno(err, 'EOPNOTSUPP') || isErrno(err, 'EXDEV')) {
      try {
        await copyFile(src, dst, fsc.COPYFILE_EXCL)
      } catch (err2) {
        if (isErrno(err2, 'EEXIST')) throw new PackerError('EXISTS', `${dst} already exists; refusing to overwrite a key (choose another directory)`, { subject: dst })
        throw err2
      }
      return
    }
    throw err
  }
}

/** `/CN=…` with the characters that openssl's -subj syntax treats specially escaped. */
function subject (commonName: string): string {
  if (commonName.length === 0 || /[\x00-\x1f]/.test(commonName)) throw cryptoError('invalid certificate common name (empty or with control characters)')
  return '/CN=' + commonName.replace(/[\\/+=]/g, c => '\\' + c)
}

/**
 * Makes `private_key.pem` (0600) and `certificate.pem` in `dir`, exactly as
 * `openssl req -x509 -nodes -days 36500 -newkey rsa:2048 -keyout private_key.pem -out certificate.pem -subj /CN=…`.
 * Refuses to overwrite either file (EXISTS).
 */
export async function generateRsaCertificatePair (dir: string, commonName = 'packer'): Promise<{ privateKey: string; certificate: string }> {
  const privateKey = join(dir, 'private_key.pem')
  const certificate = join(dir, 'certificate.pem')
  for (const p of [privateKey, certificate]) {
    if (await exists(p)) throw new PackerError('EXISTS', `${p} already exists; refusing to overwrite a key (choose another directory)`, { subject: p })
  }
  const subj = subject(commonName)
  const tmp = await mkdtemp(join(dir, '.packer-keygen-'))
  try {
    await chmod(tmp, 0o700)
    const k = join(tmp, 'private_key.pem')
    const c = join(tmp, 'certificate.pem')
    await runOpenssl(['req', '-x509', '-nodes', '-days', '36500', '-newkey', 'rsa:2048', '-keyout', k, '-out', c, '-subj', subj])
    await chmod(k, 0o600)
    await chmod(c, 0o644)
    await placeExclusive(k, privateKey)
    try {
      await placeExclusive(c, certificate)
    } catch (err) {
      await unlink(privateKey).catch(() => {})
      throw err
    }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  return { privateKey, certificate }
}
