import path from 'node:path'
import { Command } from 'commander'
import { PackerError } from '../errors.js'
import { formatSize } from '../format/size.js'
import { CarSet } from '../restore/car-set.js'
import { restore } from '../restore/restorer.js'
import { verifyFiles, verifySet } from '../restore/verifier.js'
import { fixNamesCommand, missingReport, misnamedWarning } from '../restore/availability.js'
import { fixNames, type NameFix } from '../restore/fix-names.js'
import { rebuildSet } from '../restore/rebuild.js'
import { identitiesFrom } from './keys.js'
import { lsJson, lsLine, piecesCsv, piecesRows } from './listing.js'
import { Progress, progressMode } from './progress.js'
import { collect, out, warn } from './output.js'
import { limitMallocCache } from '../memory.js'

export interface SetOptions { identity?: string[], passphrase?: boolean, expect?: string, cars?: string }

export function identityOptions (cmd: Command): Command {
  return cmd
    .option('-i, --identity <file>', 'identity that opens an encrypted set: RSA private key PEM, age identity file or OpenSSH key (repeatable)', collect)
    .option('--passphrase', 'open a passphrase-protected set (asks on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--expect <setid>', 'refuse the set unless its set ID (printed by pack) is this')
    .option('--cars <dir>', 'the CARs are in DIR (e.g. where a retrieval put them), not beside manifest.json')
}

/** unpack, ls: one warning line when CARs are read from files under names not theirs. */
async function warnMisnamed (set: CarSet): Promise<void> {
  const w = await misnamedWarning(set)
  if (w !== null) warn(w)
}

export async function openSet (dir: string, o: SetOptions, skipTable = false): Promise<CarSet> {
  const identities = skipTable ? [] : await identitiesFrom(o)
  return await CarSet.open(dir, { identities, expect: o.expect, skipTable, carDir: o.cars })
}

export function addReadCommands (program: Command): void {
  identityOptions(program.command('unpack').argument('<setdir>', 'directory with manifest.json and the CARs').argument('[paths...]', 'archive paths to restore (default: everything)')
    .description('restore a set (or some of its paths) to DEST, checking every block; rerun to continue an interrupted unpack')
    .requiredOption('-o, --output <dest>', 'destination directory')
    .option('--overwrite', 'replace existing files')
    .option('--same-owner', 'restore owners (as root)')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event on stdout'))
    .action(async (dir: string, paths: string[], o) => {
      limitMallocCache()
      const set = await openSet(dir, o)
      await warnMisnamed(set)
      const p = new Progress(progressMode(o), 'unpack')
      const chosen = paths.length ? paths.flatMap((x) => set.select(Buffer.from(x.replace(/^\/+|\/+$/g, '')))) : set.entries
      p.totalBytes = chosen.reduce((n, e) => n + (e.size ?? 0), 0)
      p.totalFiles = chosen.filter((e) => e.type === 'file').length
      const r = await restore(set, {
        dest: o.output,
        paths: paths.map((x) => Buffer.from(x)),
        overwrite: !!o.overwrite,
        sameOwner: !!o.sameOwner,
        warn: (m) => { p.end(); warn(m) },
        progress: (e) => {
          if (e.type === 'read') { p.bytes += e.bytes; p.tick(); return }
          p.files++
          p.event({ event: 'file', path: e.path.toString('utf8'), bytes: e.bytes })
        },
      })
      p.end()
      p.event({ event: 'done', files: r.files, bytes: r.bytes, dirs: r.dirs, symlinks: r.symlinks, already: r.already, failed: r.failed, seconds: p.seconds })
      if (r.failed.length > 0) {
        throw new PackerError(r.failed[0].error.includes('missing') ? 'MISSING_CAR' : 'CORRUPT',
          `${r.failed.length} file(s) could not be restored (first: ${r.failed[0].error}); the others are in ${o.output}`)
      }
      if (p.mode === 'json' || o.quiet) return
      out(`restored ${r.files} files (${formatSize(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks into ${o.output} in ${p.seconds.toFixed(1)} s` +
        (r.already ? `; ${r.already} were already restored and were skipped` : ''))
    })

  identityOptions(program.command('ls').argument('<setdir>').argument('[path]', 'list only this path and what is below it')
    .description('list the archive tree (reads no file data)')
    .option('-l, --long', 'mode, size, mtime')
    .option('--missing', 'list only the files not fully available (a CAR holding their blocks is absent) and the CARs each needs')
    .option('--json', 'one JSON object per entry'))
    .action(async (dir: string, path: string | undefined, o) => {
      const set = await openSet(dir, o)
      try {
        await warnMisnamed(set)
        if (o.missing) {
          const report = await missingReport(set)
          for (const m of report) out(o.json ? JSON.stringify(m) : `${m.path}\tneeds ${m.cars.join(' ')}`)
          if (!o.json) process.stderr.write(report.length ? `${report.length} file(s) not fully available\n` : 'every file is fully available\n')
          return
        }
        const entries = set.select(Buffer.from((path ?? '').replace(/^\/+|\/+$/g, '')))
        if (path && entries.length === 0) throw new PackerError('USAGE', `${path} is not in the set (see 'packer ls ${dir}')`)
        for (const e of entries) out(o.json ? JSON.stringify(lsJson(e)) : lsLine(e, !!o.long))
      } finally { await set.close() }
    })

  identityOptions(program.command('verify').argument('<setdir>')
    .description('read every CAR once: check every block, size and piece CID against the manifest, and that each CAR is under its own name')
    .option('--decrypt', 'also read every file through decryption (needs -i or --passphrase): checks every age header and chunk')
    .option('--fix-names', 'then give every CAR found whole under another name its own name (renames only, never overwrites)')
    .option('-q, --quiet', 'print only problems')
    .option('--json', 'one JSON object per CAR (and per file with --decrypt, per rename with --fix-names)'))
    .action(async (dir: string, o) => {
      const keyGiven = !!(o.identity?.length || o.passphrase)
      if (o.decrypt && !keyGiven && process.env.PACKER_PASSPHRASE === undefined) throw new PackerError('USAGE', '--decrypt needs the identity: give -i FILE or --passphrase')
      let set: CarSet
      try {
        set = await openSet(dir, o)
      } catch (err) {
        // Without the key, or with the file table unreadable, the CARs are still checked; the files are not named.
        if (err instanceof PackerError && !keyGiven && !o.expect && (err.code === 'NO_IDENTITY' || err.code === 'MISSING_CAR' || err.code === 'CORRUPT')) set = await openSet(dir, o, true)
        else throw err
      }
      const p = new Progress(progressMode(o), 'verify')
      p.totalBytes = set.manifest.cars.reduce((n, c) => n + c.size, 0)
      p.totalFiles = set.manifest.cars.length
      let bad = 0
      let misnamed = 0
      let badFiles = 0
      let fix: NameFix = { renamed: [], blocked: [] }
      try {
        const report = await verifySet(set, (r) => {
          p.files++
          if (r.status === 'misnamed') misnamed++
          else if (r.status !== 'ok') bad++
          p.end()
          const file = r.file === null ? null : path.basename(r.file)
          if (o.json) { out(JSON.stringify({ car: r.car.file, status: r.status, detail: r.detail, file, affected: r.affected })); return }
          if (o.quiet && r.status === 'ok') return
          // A misnamed CAR is whole: the line names the file that holds it, and no file is affected.
          const damaged = r.status !== 'ok' && r.status !== 'misnamed'
          const files = !damaged ? '' : set.entries.length > 0 ? `; files affected: ${r.affected.join(', ') || 'none'}` : '; give -i to name the files affected'
          out(`${r.status.toUpperCase().padEnd(9)} ${r.status === 'misnamed' ? file : r.car.file}: ${r.detail}${files}`)
        }, (n) => { p.bytes += n; p.tick() })
        for (const c of report.copies) warn(`${path.basename(c.file)} is another copy of CAR ${set.manifest.cars[c.car].file} (by its header; not read); deal tools need only ${set.manifest.cars[c.car].file}`)
        if (o.decrypt) {
          await verifyFiles(set, (f) => {
            if (!f.ok) badFiles++
            p.end()
            if (o.json) out(JSON.stringify({ file: f.path, ok: f.ok, detail: f.detail }))
            else if (!f.ok) out(`BAD FILE  ${f.path}: ${f.detail}`)
          })
        }
        if (o.fixNames) {
          fix = await fixNames(set.locator.dir, report.cars, (r) => out(o.json ? JSON.stringify({ renamed: r.from, to: r.to }) : `renamed ${r.from} -> ${r.to}`))
          for (const b of fix.blocked) out(o.json ? JSON.stringify({ notRenamed: b.from, to: b.to, why: b.why }) : `not renamed ${b.from} -> ${b.to}: ${b.why}`)
          misnamed -= fix.renamed.length
        }
      } finally { await set.close() }
      p.end()
      const n = set.manifest.cars.length
      if (bad + misnamed + badFiles > 0) {
        const parts = [bad ? `${bad} of ${n} CAR(s) missing or damaged` : '', misnamed ? `${misnamed} of ${n} CAR(s) under names not their own` : '',
          badFiles ? `${badFiles} file(s) failed to decrypt` : ''].filter(Boolean)
        const todo = misnamed && !o.fixNames
          ? `${bad + badFiles ? 'see the lines above; ' : ''}run '${fixNamesCommand(set)}' (deal tools and storage providers take a CAR by its name)`
          : 'see the lines above'
        throw new PackerError('CORRUPT', `${parts.join(' and ')} in ${dir}: ${todo}`)
      }
      const renamed = fix.renamed.length ? `; ${fix.renamed.length} renamed to their own names` : ''
      if (!o.json && !o.quiet) out(`all ${n} CAR(s) verified${o.decrypt ? `, every file decrypted and authenticated` : ''}${renamed} in ${p.seconds.toFixed(1)} s`)
    })

  program.command('rebuild').argument('<cardir>', 'directory holding the CARs of a set whose manifest.json is lost')
    .description('remake manifest.json and blocks.idx from the CARs alone (reads every CAR once, checking every block)')
    .option('--force', 'replace an existing manifest.json and blocks.idx')
    .action(async (dir: string, o) => {
      const m = await rebuildSet(dir, warn, !!o.force)
      out(`rebuilt ${dir}/manifest.json and blocks.idx: ${m.cars.length} CAR(s), root ${m.root}, set ID ${m.table.cid}`)
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
}
