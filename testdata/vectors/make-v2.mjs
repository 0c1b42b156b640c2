// Regenerates testdata/vectors/v2 (format version 2), as root (owner 0:0 is part of the file table):
//   node testdata/vectors/make-v2.mjs
// The unencrypted set is pinned by its bytes (expected.json); the encrypted sets are committed as written (age output
// is random) and must restore the small vector tree with the keys in testdata/vectors/keys.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeVectorTree } from './make-tree.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const out = path.join(here, 'v2')
const cli = path.join(here, '../../dist/cli/main.js')
const passphrase = 'correct horse battery staple'
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-vectors-'))
const env = { ...process.env, PACKER_STATE_DIR: path.join(tmp, 'state') }
const packer = (...args) => execFileSync(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] }).toString()

fs.rmSync(out, { recursive: true, force: true })
fs.mkdirSync(out)
makeVectorTree(path.join(tmp, 'tree'))
makeVectorTree(path.join(tmp, 'small'), { small: true })
const plain = path.join(tmp, 'plain')
packer('pack', path.join(tmp, 'tree'), '-o', plain, '--no-encrypt', '--bin-size', '1200000', '-q')
const m = JSON.parse(fs.readFileSync(path.join(plain, 'manifest.json'), 'utf8'))
const recipient = fs.readFileSync(path.join(here, 'keys/age-identity.txt'), 'utf8').match(/# public key: (age1\S+)/)[1]
packer('pack', path.join(tmp, 'small'), '-o', path.join(out, 'encrypted'), '-r', recipient, '-R', path.join(here, 'keys/certificate.pem'), '-q')
execFileSync(process.execPath, [cli, 'pack', path.join(tmp, 'small'), '-o', path.join(out, 'encrypted-passphrase'), '--passphrase', '-q'],
  { env: { ...env, PACKER_PASSPHRASE: passphrase } })
const setId = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).table.cid
fs.writeFileSync(path.join(out, 'expected.json'), JSON.stringify({
  _comment: 'Pinned by test/format/vectors.test.ts; made by testdata/vectors/make-v2.mjs (the unencrypted set: packer pack TREE -o OUT --no-encrypt --bin-size 1200000, as root).',
  plain: {
    binSize: 1200000,
    root: m.root,
    setId: m.table.cid,
    descriptor: m.descriptor,
    blocks: m.index.blocks,
    index: crypto.createHash('sha256').update(fs.readFileSync(path.join(plain, 'blocks.idx'))).digest('hex'),
    cars: m.cars.map((c) => ({ ...c, sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(plain, c.file))).digest('hex') })),
  },
  encrypted: { setId: setId(path.join(out, 'encrypted')), identities: ['keys/age-identity.txt', 'keys/private_key.pem'] },
  encryptedPassphrase: { setId: setId(path.join(out, 'encrypted-passphrase')), passphrase },
}, null, 2) + '\n')
fs.rmSync(tmp, { recursive: true, force: true })
