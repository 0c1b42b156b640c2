import { Command } from 'commander'
import { PackerError } from '../errors.js'
import { formatSize } from '../format/size.js'
import { list, listMissing, pieces, rebuild, unpack, verify, type SetOptions } from '../index.js'
import { keyOptionsFrom, type KeyFlags } from './keys.js'
import { lsJson, lsLine, piecesCsv, piecesRows } from './listing.js'
import { Progress, progressMode } from './progress.js'
import { collect, out, warn } from './output.js'
import { checkPieceUrl } from '../remote/piece-url.js'
import { addS3AccessOptions, s3AccessOptions } from './s3-options.js'

export interface SetFlags extends KeyFlags { expect?: string, cars?: string, pieceUrl?: string[], httpTimeout: string }

export function identityOptions (cmd: Command): Command {
  return addS3AccessOptions(cmd)
    .option('-i, --identity <file>', 'identity that opens an encrypted set: RSA private key PEM, age identity file or OpenSSH key (repeatable; - reads it from standard input)', collect)
    .option('--passphrase', 'open a passphrase-protected set (asks on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--expect <setid>', 'refuse the set unless its set ID (printed by pack) is this')
    .option('--cars <dir>', 'the CARs are in DIR (e.g. where a retrieval put them, or s3://BUCKET/PREFIX), not beside manifest.json')
    .option('--piece-url <template>', 'fetch the CARs from this URL, {pieceCid} or {pieceCidV2} replaced (repeatable: tried in order)', collect)
    .option('--http-timeout <seconds>', 'longest wait for a web server: to connect, to answer, between two pieces of a body', '30')
}

/** A positive number of seconds given to `option`, in ms. */
export function seconds (text: string, option: string): number {
  const s = Number(text)
  if (!Number.isFinite(s) || s <= 0) throw new PackerError('USAGE', `${option}: '${text}' is not a number of seconds`)
  return Math.round(s * 1000)
}

async function setOptionsFrom (o: SetFlags): Promise<SetOptions> {
  return { ...await keyOptionsFrom(o), expect: o.expect, cars: o.cars, pieceUrls: o.pieceUrl?.map(checkPieceUrl), httpTimeoutMs: seconds(o.httpTimeout, '--http-timeout'), ...s3AccessOptions(o) }
}

export function addReadCommands (program: Command): void {
  identityOptions(program.command('unpack').argument('<setdir>', 'directory, URL or s3://BUCKET/PREFIX with manifest.json and the CARs').argument('[paths...]', 'archive paths to restore (default: everything)')
    .description('restore a set (or some of its paths) to DEST, checking every block; rerun to continue an interrupted unpack')
    .requiredOption('-o, --output <dest>', 'destination directory')
    .option('--overwrite', 'replace existing files')
    .option('--same-owner', 'restore owners (as root)')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event on stdout'))
    .action(async (dir: string, paths: string[], o) => {
      const p = new Progress(progressMode(o), 'unpack')
      let r
      try {
        r = await unpack(dir, {
          ...await setOptionsFrom(o),
          output: o.output,
          paths,
          overwrite: !!o.overwrite,
          sameOwner: !!o.sameOwner,
          onWarning: (m) => { p.end(); warn(m) },
          onEvent: (e) => { if (e.event === 'progress') p.update(e); else p.event(e) },
        })
      } finally { p.end() }
      if (p.mode === 'json' || o.quiet) return
      out(`restored ${r.files} files (${formatSize(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks into ${o.output} in ${r.seconds.toFixed(1)} s` +
        (r.already ? `; ${r.already} were already restored and were skipped` : ''))
    })

  identityOptions(program.command('ls').argument('<setdir>').argument('[path]', 'list only this path and what is below it')
    .description('list the archive tree (reads no file data)')
    .option('-l, --long', 'mode, size, mtime')
    .option('--missing', 'list only the files not fully available (a CAR holding their blocks is absent) and the CARs each needs')
    .option('--json', 'one JSON object per entry'))
    .action(async (dir: string, where: string | undefined, o) => {
      const opts = await setOptionsFrom(o)
      if (o.missing) {
        let n = 0
        for await (const m of listMissing(dir, opts)) { n++; out(o.json ? JSON.stringify(m) : `${m.path}\tneeds ${m.cars.join(' ')}`) }
        if (!o.json) process.stderr.write(n ? `${n} file(s) not fully available\n` : 'every file is fully available\n')
        return
      }
      for await (const e of list(dir, { ...opts, path: where, onWarning: warn })) out(o.json ? JSON.stringify(lsJson(e)) : lsLine(e, !!o.long))
    })

  identityOptions(program.command('verify').argument('<setdir>')
    .description('read every CAR once: check every block, size and piece CID against the manifest, and that each CAR is under its own name')
    .option('--decrypt', 'also read every file through decryption (needs -i or --passphrase): checks every age header and chunk')
    .option('--fix-names', 'then give every CAR found whole under another name its own name (renames only, never overwrites)')
    .option('-q, --quiet', 'print only problems')
    .option('--json', 'one JSON object per CAR (and per file with --decrypt, per rename with --fix-names)'))
    .action(async (dir: string, o) => {
      const p = new Progress(progressMode(o), 'verify')
      const r = await verify(dir, {
        ...await setOptionsFrom(o),
        decrypt: !!o.decrypt,
        fixNames: !!o.fixNames,
        tableOptional: !(o.identity?.length || o.passphrase) && !o.expect,
        onWarning: (m) => { p.end(); warn(m) },
        onEvent: (e) => {
          switch (e.event) {
            case 'progress': p.update({ ...e, files: e.cars, totalFiles: e.totalCars }); break
            case 'car':
              p.end()
              if (o.json) { out(JSON.stringify({ car: e.car, status: e.status, detail: e.detail, file: e.file })); return }
              if (o.quiet && e.status === 'ok') return
              // A misnamed CAR is whole: the line names the file that holds it.
              out(`${e.status.toUpperCase().padEnd(9)} ${e.status === 'misnamed' ? e.file : e.car}: ${e.detail}`)
              break
            case 'affected':
              p.end()
              out(o.json ? JSON.stringify({ affected: e.file, cars: e.cars }) : `AFFECTED  ${e.file}: has blocks in ${e.cars.join(', ')}`)
              break
            case 'file':
              p.end()
              if (o.json) out(JSON.stringify({ file: e.file, ok: e.ok, detail: e.detail }))
              else if (!e.ok) out(`BAD FILE  ${e.file}: ${e.detail}`)
              break
            case 'renamed': out(o.json ? JSON.stringify({ renamed: e.from, to: e.to }) : `renamed ${e.from} -> ${e.to}`); break
            case 'notRenamed': out(o.json ? JSON.stringify({ notRenamed: e.from, to: e.to, why: e.why }) : `not renamed ${e.from} -> ${e.to}: ${e.why}`); break
          }
        },
      })
      p.end()
      const n = r.cars.length
      if (r.badCars > 0 && r.affected === 0 && !o.json) out('no file has blocks in the CARs missing or damaged')
      if (!r.ok) {
        const parts = [r.badCars ? `${r.badCars} of ${n} CAR(s) missing or damaged` : '', r.misnamed ? `${r.misnamed} of ${n} CAR(s) under names not their own` : '',
          r.badFiles ? `${r.badFiles} file(s) failed to decrypt` : ''].filter(Boolean)
        const todo = r.fixCommand !== null && !o.fixNames
          ? `${r.badCars + r.badFiles ? 'see the lines above; ' : ''}run '${r.fixCommand}' (deal tools and storage providers take a CAR by its name)`
          : 'see the lines above'
        throw new PackerError('CORRUPT', `${parts.join(' and ')} in ${dir}: ${todo}`)
      }
      const renamed = r.renamed.length ? `; ${r.renamed.length} renamed to their own names` : ''
      if (!o.json && !o.quiet) out(`all ${n} CAR(s) verified${o.decrypt ? `, every file decrypted and authenticated` : ''}${renamed} in ${r.seconds.toFixed(1)} s`)
    })

  program.command('rebuild').argument('<cardir>', 'directory holding the CARs of a set whose manifest.json is lost')
    .description('remake manifest.json and blocks.idx from the CARs alone (reads every CAR once, checking every block)')
    .option('--force', 'replace an existing manifest.json and blocks.idx')
    .action(async (dir: string, o) => {
      const m = await rebuild(dir, { force: !!o.force, onWarning: warn })
      out(`rebuilt ${dir}/manifest.json and blocks.idx: ${m.cars.length} CAR(s), root ${m.root}, set ID ${m.setId}`)
    })

  addS3AccessOptions(program.command('pieces').argument('<setdir>')
    .description('list the CARs for deal tools: file, size, piece CID, padded piece size, payload CID (CSV)')
    .option('--json', 'JSON instead of CSV'))
    .action(async (dir: string, o) => {
      const ps = await pieces(dir, s3AccessOptions(o))
      if (o.json) out(JSON.stringify(piecesRows(ps), null, 2))
      else process.stdout.write(piecesCsv(ps))
    })
}
