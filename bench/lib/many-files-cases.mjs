// Issue 12's many-small-files cases, on a tree of tiny files (lib/many-files.mjs, cached under /tmp): packer's pack
// (encrypted and in clear), ls, verify and unpack, each against what `tar` does with the same tree in the same run
// (tar cf: read every file once and write one stream; tar tvf: list an archive; tar xf: create every file), against
// the peers (ipfs-car, restic, borg, rclone crypt) on the same tree, and memory growth with the file count: peak RSS
// at N/10 and at N files.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { manyFilesSize, manyFilesTree } from './many-files.mjs'
import * as packer from './packer.mjs'
import { PEERS } from './peers.mjs'
import { caseRow, ran, rssRow } from './report.mjs'
import { MB, timed } from './sys.mjs'

const rm = (p) => fs.rm(p, { recursive: true, force: true })

/** Where the cases of an N-file tree put their outputs, under the bench's work directory. */
export function manyFilesPaths (work, files) {
  const d = path.join(work, `many-${files}`)
  return {
    dir: d,
    tar: path.join(d, 'tree.tar'),
    tarDest: path.join(d, 'tar-x'),
    outEnc: path.join(d, 'out-enc'),
    outPlain: path.join(d, 'out-plain'),
    dest: path.join(d, 'unpack'),
    peer: (name) => path.join(d, `peer-${name}`),
  }
}

const tarCreate = (tree, tar, opts) => timed('tar', ['cf', tar, '-C', tree, '.'], opts)
const tarList = (tar, opts) => timed('sh', ['-c', 'tar tvf "$0" > /dev/null', tar], opts)
async function tarExtract (tar, dest, opts) {
  await rm(dest)
  await fs.mkdir(dest, { recursive: true })
  return timed('tar', ['xf', tar, '-C', dest], opts)
}

/** `pack --no-encrypt` of the `files`-file tree (case manyPackPlain): the reference of ipfs-car and of sharding. */
export function packPlain (files, { step, log, work }) {
  const tree = manyFilesTree(files)
  const out = manyFilesPaths(work, files).outPlain
  return step('manyPackPlain', `packer pack --no-encrypt, ${files.toLocaleString('en')} files`, () => packer.pack(tree, out, ['--no-encrypt'], { log: log('many-pack-plain'), files }))
}

/**
 * Runs the cases on a tree of `files` files. ctx: { step, has, log, keyFile, recipient, work, installed(peer), results }.
 * Case names in results: many<What> for N files, manyGrowth<What> for N/10.
 */
export async function runManyFiles (files, ctx) {
  const { step, has, log, keyFile, recipient, work, installed, results } = ctx
  const size = manyFilesSize(files)
  const tree = manyFilesTree(files)
  const P = manyFilesPaths(work, files)
  await fs.mkdir(P.dir, { recursive: true })
  const fig = { files } // files/s is the figure: the bytes (~10 per file) are not
  const n = files.toLocaleString('en')
  if (has('many')) {
    await step('manyTarCreate', `tar cf of the ${n}-file tree`, async () => ({ ...fig, ...(await tarCreate(tree, P.tar, { log: log('many-tar-c') })) }))
    await step('manyPack', `packer pack, encrypted, ${n} files`, () => packer.pack(tree, P.outEnc, ['-r', recipient], { log: log('many-pack'), ...fig }))
    await packPlain(files, ctx)
    await step('manyTarList', `tar tvf of the ${n}-file archive`, async () => ({ files, ...(await tarList(P.tar, { log: log('many-tar-t') })) }))
    await step('manyLs', `packer ls -l of the encrypted ${n}-file set`, () => packer.ls(P.outEnc, keyFile, { log: log('many-ls'), files }))
    await step('manyVerify', `packer verify of the encrypted ${n}-file set`, () => packer.verify(P.outEnc, { log: log('many-verify'), ...fig }))
    await step('manyTarExtract', `tar xf of the ${n}-file archive`, async () => ({ ...fig, ...(await tarExtract(P.tar, P.tarDest, { log: log('many-tar-x') })) }))
    await rm(P.tarDest)
    await step('manyUnpack', `packer unpack of the encrypted ${n}-file set`, () => packer.unpack(P.outEnc, P.dest, keyFile, { log: log('many-unpack'), expect: size, ...fig }))
    await rm(P.dest)
  }
  if (has('many-peers')) {
    for (const peer of Object.keys(PEERS)) {
      if (!installed(peer)) { results.cases[`manyPeer-${peer}`] = { error: 'not installed' }; continue }
      await step(`manyPeer-${peer}`, `${peer} on the ${n}-file tree`, async () => ({ ...fig, ...(await PEERS[peer](tree, P.peer(peer), log(`many-${peer}`))) }))
      await rm(P.peer(peer))
    }
  }
  if (has('many-growth')) {
    const small = Math.round(files / 10)
    const sizeSmall = manyFilesSize(small)
    const treeSmall = manyFilesTree(small)
    const Q = manyFilesPaths(work, small)
    const m = small.toLocaleString('en')
    const figSmall = { files: small }
    await step('manyGrowthPack', `packer pack, encrypted, ${m} files`, () => packer.pack(treeSmall, Q.outEnc, ['-r', recipient], { log: log('growth-pack'), ...figSmall }))
    await step('manyGrowthLs', `packer ls -l of the encrypted ${m}-file set`, () => packer.ls(Q.outEnc, keyFile, { log: log('growth-ls'), files: small }))
    await step('manyGrowthUnpack', `packer unpack of the encrypted ${m}-file set`, () => packer.unpack(Q.outEnc, Q.dest, keyFile, { log: log('growth-unpack'), expect: sizeSmall, ...figSmall }))
    await rm(Q.dir)
  }
}

/** seconds(ref) ÷ seconds(c): how many times faster c is than ref on the same tree (null unless both ran). */
const speed = (c, ref) => (ran(c) && ran(ref) ? ref.seconds / c.seconds : null)

/** The table rows of runManyFiles's cases, from results.cases. */
export function manyFilesRows (C, files) {
  const rows = []
  const add = (r) => { if (r) rows.push(r) }
  const against = (name, c, ref, vs, min) => {
    const ratio = speed(c, ref)
    add(caseRow(name, c, { ratio, vs: ran(ref) ? vs : '', target: min == null ? '' : `> ${min}`, met: min == null || ratio == null ? null : ratio > min }))
  }
  const n = files.toLocaleString('en')
  add(caseRow(`tar cf, ${n} tiny files`, C.manyTarCreate, { vs: 'reference' }))
  against(`pack, encrypted, ${n} files`, C.manyPack, C.manyTarCreate, 'tar cf (time ÷ time)')
  against(`pack --no-encrypt, ${n} files`, C.manyPackPlain, C.manyTarCreate, 'tar cf (time ÷ time)')
  for (const peer of Object.keys(PEERS)) {
    const c = C[`manyPeer-${peer}`]
    if (!c) continue
    // ipfs-car writes in clear: packer's --no-encrypt is what compares; the others encrypt.
    const mine = peer === 'ipfs-car' ? C.manyPackPlain : C.manyPack
    const ratio = speed(mine, c)
    // CPU seconds as well: on a shared machine they move less than wall time with the others' load
    const cpu = ran(mine) && ran(c) && mine.cpuSeconds && c.cpuSeconds ? `; packer's CPU ${(mine.cpuSeconds / c.cpuSeconds).toFixed(2)} × ${peer}'s` : ''
    add(caseRow(`${peer}, ${n} files`, c, { ratio, vs: `pack${peer === 'ipfs-car' ? ' --no-encrypt' : ''} ÷ ${peer}${cpu}`, target: '> 1', met: ratio == null ? null : ratio > 1 }))
  }
  add(caseRow(`tar tvf, ${n}-file archive`, C.manyTarList, { vs: 'reference' }))
  against(`ls -l, encrypted set, ${n} files`, C.manyLs, C.manyTarList, 'tar tvf (time ÷ time)')
  against(`verify, encrypted set, ${n} files`, C.manyVerify, C.manyTarList, 'tar tvf (time ÷ time)')
  add(caseRow(`tar xf, ${n} files`, C.manyTarExtract, { vs: 'reference' }))
  against(`unpack, encrypted set, ${n} files`, C.manyUnpack, C.manyTarExtract, 'tar xf (time ÷ time)')
  for (const [key, what] of [['manyPack', 'pack, encrypted'], ['manyPackPlain', 'pack --no-encrypt'], ['manyLs', 'ls -l'], ['manyVerify', 'verify'], ['manyUnpack', 'unpack']]) {
    add(rssRow(`peak RSS: ${what}, ${n} files`, C[key]))
  }
  const small = Math.round(files / 10)
  for (const [big, little, what] of [['manyPack', 'manyGrowthPack', 'pack, encrypted'], ['manyLs', 'manyGrowthLs', 'ls -l'], ['manyUnpack', 'manyGrowthUnpack', 'unpack']]) {
    add(growthRow(`RSS growth, ${what}: ${small.toLocaleString('en')} → ${n} files`, C[big], C[little], files - small))
  }
  return rows
}

/**
 * Peak RSS at N files ÷ at N/10 (≈ 1: bounded), and MB per million files more between them: issue 12 wants no more
 * than 10 MB per million.
 */
function growthRow (name, big, little, moreFiles) {
  if (!big || !little) return null
  if (big.rssBytes == null || little.rssBytes == null) return { case: name, error: big.error ?? little.error ?? 'no RSS figure' }
  const perMillion = (big.rssBytes - little.rssBytes) / moreFiles * 1e6 / MB
  return {
    case: name,
    rssBytes: big.rssBytes,
    ratio: big.rssBytes / little.rssBytes,
    vs: `RSS at 1/10 the files (${(little.rssBytes / MB).toFixed(0)} MB); ${perMillion >= 0 ? '+' : ''}${perMillion.toFixed(0)} MB per 1 M files`,
    target: '≤ 10 MB per 1 M files',
    met: perMillion <= 10,
    load1: big.load1,
  }
}
