#!/usr/bin/env node
import path from 'node:path'
import { Command, Option } from 'commander'
import { PackerError } from '../errors.js'
import { parseSize, formatSize } from '../format/size.js'
import { DEFAULT_BIN_SIZE } from '../car/car-set-writer.js'
import { pack } from '../pack/packer.js'
import { CarSet } from '../restore/car-set.js'
import { restore } from '../restore/restorer.js'
import { verifySet } from '../restore/verifier.js'
import { generateRsaCertificatePair, writeX25519IdentityFile } from '../crypto/index.js'
import { VERSION } from '../version.js'
import { identitiesFrom, setEncryptionFrom } from './keys.js'
import { lsJson, lsLine, piecesCsv, piecesRows } from './listing.js'

const warn = (msg: string): void => { process.stderr.write(`packer: warning: ${msg}\n`) }
const out = (line: string): void => { process.stdout.write(line + '\n') }
const collect = (v: string, prev: string[] = []): string[] => [...prev, v]

function identityOptions (cmd: Command): Command {
  return cmd
    .option('-i, --identity <file>', 'identity that opens an encrypted set: RSA private key PEM, age identity file or OpenSSH key (repeatable)', collect)
    .option('--passphrase', 'open a passphrase-protected set (asks on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--expect <setid>', 'refuse the set unless its set ID (printed by pack) is this')
}

async function openSet (dir: string, o: { identity?: string[], passphrase?: boolean, expect?: string }, skipTable = false): Promise<CarSet> {
  const identities = skipTable ? [] : await identitiesFrom(o)
  return await CarSet.open(dir, { identities, expect: o.expect, skipTable })
}

const program = new Command()
program.name('packer').version(VERSION)
  .description('Pack data sets into Filecoin-ready CAR sets (encrypted, with piece CIDs); unpack, list, verify and mount them.')
  .showHelpAfterError('(run packer --help for usage)')

program.command('pack').argument('<source>', 'directory (its contents become the archive root) or single file')
  .description('pack SOURCE into a CAR set in OUTDIR')
  .requiredOption('-o, --output <outdir>', 'directory for the CAR set (new or empty)')
  .option('-b, --bin-size <size>', 'largest CAR file (bytes or 64MiB, 31.5GiB…); default fits a 32 GiB sector', String(DEFAULT_BIN_SIZE))
  .option('-r, --recipient <recipient>', 'encrypt to an age1… or ssh-rsa/ssh-ed25519 public key (repeatable)', collect)
  .option('-R, --recipients-file <file>', 'encrypt to the keys in FILE: RSA certificate or public key PEM, or lines of age1…/ssh-… keys (repeatable)', collect)
  .option('--passphrase', 'encrypt with a passphrase (asks twice on the terminal, or reads PACKER_PASSPHRASE)')
  .option('--no-encrypt', 'store files in clear')
  .option('--plain-names', 'keep the UnixFS tree browsable (names in clear; contents still encrypted)')
  .option('-q, --quiet', 'print only errors')
  .action(async (source: string, o) => {
    const binSize = parseSize(o.binSize, '--bin-size')
    const encryption = await setEncryptionFrom({ encrypt: o.encrypt, recipient: o.recipient, recipientsFile: o.recipientsFile, passphrase: o.passphrase, plainNames: o.plainNames }, warn)
    const started = Date.now()
    const r = await pack({ source, out: o.output, binSize, encryption, warn })
    if (o.quiet) return
    const secs = (Date.now() - started) / 1000
    out(`packed ${r.files} files (${formatSize(r.bytes)}) into ${r.manifest.cars.length} CAR(s) in ${o.output} in ${secs.toFixed(1)} s`)
    out(`root ${r.manifest.root}`)
    out(`set ID ${r.manifest.table.cid}  (keep it apart from the CARs; check a set with --expect)`)
  })

identityOptions(program.command('unpack').argument('<setdir>', 'directory with manifest.json and the CARs').argument('[paths...]', 'archive paths to restore (default: everything)')
  .description('restore a set (or some of its paths) to DEST, checking every block')
  .requiredOption('-o, --output <dest>', 'destination directory')
  .option('--overwrite', 'replace existing files')
  .option('--same-owner', 'restore owners (as root)')
  .option('-q, --quiet', 'print only errors'))
  .action(async (dir: string, paths: string[], o) => {
    const set = await openSet(dir, o)
    const r = await restore(set, { dest: o.output, paths: paths.map((p) => Buffer.from(p)), overwrite: !!o.overwrite, sameOwner: !!o.sameOwner, warn })
    if (r.failed.length > 0) {
      throw new PackerError('CORRUPT', `${r.failed.length} file(s) could not be restored (first: ${r.failed[0].error}); the others are in ${o.output}`)
    }
    if (!o.quiet) out(`restored ${r.files} files (${formatSize(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks into ${o.output}`)
  })

identityOptions(program.command('ls').argument('<setdir>').argument('[path]', 'list only this path and what is below it')
  .description('list the archive tree (reads no file data)')
  .option('-l, --long', 'mode, size, mtime')
  .option('--json', 'one JSON object per entry'))
  .action(async (dir: string, p: string | undefined, o) => {
    const set = await openSet(dir, o)
    try {
      const entries = set.select(Buffer.from((p ?? '').replace(/^\/+|\/+$/g, '')))
      if (p && entries.length === 0) throw new PackerError('USAGE', `${p} is not in the set`)
      for (const e of entries) out(o.json ? JSON.stringify(lsJson(e)) : lsLine(e, !!o.long))
    } finally { await set.close() }
  })

identityOptions(program.command('verify').argument('<setdir>')
  .description('read every CAR once: check every block, size and piece CID against the manifest')
  .option('--json', 'one JSON object per CAR'))
  .action(async (dir: string, o) => {
    const needsKey = !!(o.identity?.length || o.passphrase)
    let set: CarSet
    try {
      set = await openSet(dir, o, false)
    } catch (err) {
      // Without the key, or with the table's own CAR damaged, CARs are still checked; files are not named.
      if (err instanceof PackerError && (err.code === 'NO_IDENTITY' || err.code === 'MISSING_CAR' || err.code === 'CORRUPT') && !needsKey && err.message.indexOf('set ID') < 0) set = await openSet(dir, o, true)
      else throw err
    }
    let bad = 0
    try {
      await verifySet(set, (r) => {
        if (r.status !== 'ok') bad++
        if (o.json) { out(JSON.stringify({ car: r.car.file, status: r.status, detail: r.detail, affected: r.affected })); return }
        const files = r.status === 'ok' ? '' : set.entries.length > 0 ? `; files affected: ${r.affected.join(', ') || 'none'}` : '; give -i to name the files affected'
        out(`${r.status.toUpperCase().padEnd(9)} ${r.car.file}: ${r.detail}${files}`)
      })
    } finally { await set.close() }
    if (bad > 0) throw new PackerError('CORRUPT', `${bad} of ${set.manifest.cars.length} CAR(s) missing or damaged in ${dir}`)
    if (!o.json) out(`all ${set.manifest.cars.length} CAR(s) verified`)
  })

program.command('pieces').argument('<setdir>')
  .description('list the CARs for deal tools: file, size, piece CID, padded piece size, payload CID (CSV)')
  .option('--json', 'JSON instead of CSV')
  .action(async (dir: string, o) => {
    const set = await CarSet.open(dir, { skipTable: true })
    await set.close()
    if (o.json) out(JSON.stringify(piecesRows(set.manifest), null, 2))
    else process.stdout.write(piecesCsv(set.manifest))
  })

program.command('keygen')
  .description('make a key: an age X25519 identity (default) or, with --rsa, private_key.pem and certificate.pem')
  .requiredOption('-o, --output <path>', 'identity file to write (with --rsa: a directory)')
  .option('--rsa', 'RSA-2048 key and self-signed certificate, as the original tool made them')
  .action(async (o) => {
    if (o.rsa) {
      const r = await generateRsaCertificatePair(o.output)
      out(`wrote ${r.privateKey} (keep it secret) and ${r.certificate} (give it to pack with -R)`)
    } else {
      const recipient = await writeX25519IdentityFile(o.output)
      process.stderr.write(`wrote ${path.resolve(o.output)} (keep it secret); its recipient, for pack -r:\n`)
      out(recipient)
    }
  })

program.addOption(new Option('--debug', 'print stack traces').hideHelp())

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof PackerError) {
    process.stderr.write(`packer: ${err.message}\n`)
    process.exitCode = err.exitCode
  } else {
    const e = err as Error
    process.stderr.write(`packer: unexpected error: ${e?.message ?? String(err)} (please report it with PACKER_DEBUG=1 output)\n`)
    if (process.env.PACKER_DEBUG) process.stderr.write(`${e?.stack}\n`)
    process.exitCode = 70
  }
})
