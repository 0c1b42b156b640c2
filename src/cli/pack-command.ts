import { Command, Option } from 'commander'
import { formatSize, parseSize } from '../format/size.js'
import { displayPath } from '../format/stored-path.js'
import { DEFAULT_BIN_SIZE } from '../car/car-set-writer.js'
import { pack, type OnChange } from '../pack/packer.js'
import { defaultJobs } from '../pack/leaf-workers.js'
import { PackerError } from '../errors.js'
import { setEncryptionFrom } from './keys.js'
import { Progress, progressMode } from './progress.js'
import { collect, out, warn } from './output.js'
import { limitMallocCache } from '../memory.js'

export function addPackCommand (program: Command): void {
  program.command('pack').argument('<source>', 'directory (its contents become the archive root) or single file')
    .description('pack SOURCE into a CAR set in OUTDIR (rerun the same command to continue after a crash)')
    .requiredOption('-o, --output <outdir>', 'directory for the CAR set (new or empty)')
    .option('-b, --bin-size <size>', 'largest CAR file (bytes or 64MiB, 31.5GiB…); default fits a 32 GiB sector', String(DEFAULT_BIN_SIZE))
    .option('-r, --recipient <recipient>', 'encrypt to an age1… or ssh-rsa/ssh-ed25519 public key (repeatable)', collect)
    .option('-R, --recipients-file <file>', 'encrypt to the keys in FILE: RSA certificate or public key PEM, or lines of age1…/ssh-… keys (repeatable)', collect)
    .option('--passphrase', 'encrypt with a passphrase (asks twice on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--no-encrypt', 'store files in clear')
    .option('--plain-names', 'keep the UnixFS tree browsable (names in clear; contents still encrypted)')
    .addOption(new Option('--on-change <what>', 'a source file that changes while packed: read it again, fail, or leave it out').choices(['retry', 'fail', 'skip']).default('retry'))
    .option('-j, --jobs <n>', 'threads that hash and encrypt (1: none besides the main one); the output does not depend on it', String(defaultJobs()))
    .option('--state-dir <dir>', 'where the resume journal lives (default $XDG_STATE_HOME/packer or ~/.local/state/packer; never OUTDIR)')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event (file, car, done) on stdout')
    .action(async (source: string, o) => {
      const binSize = parseSize(o.binSize, '--bin-size')
      const jobs = Number(o.jobs)
      if (!/^[0-9]+$/.test(String(o.jobs)) || !Number.isSafeInteger(jobs) || jobs < 1 || jobs > 256) {
        throw new PackerError('USAGE', `--jobs ${o.jobs}: give a whole number from 1 to 256`)
      }
      const encryption = await setEncryptionFrom({ encrypt: o.encrypt, recipient: o.recipient, recipientsFile: o.recipientsFile, passphrase: o.passphrase, plainNames: o.plainNames }, warn)
      const p = new Progress(progressMode(o), 'pack')
      limitMallocCache()
      const r = await pack({
        source,
        out: o.output,
        binSize,
        encryption,
        onChange: o.onChange as OnChange,
        jobs,
        stateDir: o.stateDir,
        warn: (m) => { p.end(); warn(m) },
        progress: (e) => {
          switch (e.type) {
            case 'scan':
              p.totalFiles = e.files; p.totalBytes = e.bytes
              if (e.done) p.event({ event: 'scan', files: e.files, bytes: e.bytes })
              else p.status(`scanning the source: ${e.files} files, ${formatSize(e.bytes)}`)
              break
            case 'read': p.bytes += e.bytes; p.tick(); break
            case 'file': p.files++; p.event({ event: 'file', path: displayPath(e.path), bytes: e.bytes }); p.tick(); break
            case 'skip': p.event({ event: 'skip', path: displayPath(e.path), reason: e.reason }); break
            case 'car':
              p.current = `CAR ${e.index + 1} done`
              p.event({ event: 'car', index: e.index, file: e.car.file, size: e.car.size, pieceCid: e.car.pieceCid, pieceSize: e.car.pieceSize, root: e.car.root })
              p.tick(true)
              break
            case 'resume': p.event({ event: 'resume', cars: e.cars, files: e.files }); break
          }
        },
      })
      p.end()
      const m = r.manifest
      if (r.nothingToDo) {
        p.event({ event: 'done', nothingToDo: true, root: m.root, setId: m.table.cid })
        if (p.mode !== 'json' && !o.quiet) out(`nothing to do: ${o.output} already holds the set these arguments make (set ID ${m.table.cid})`)
        return
      }
      p.event({ event: 'done', files: r.files, bytes: r.bytes, cars: m.cars.length, seconds: p.seconds, root: m.root, setId: m.table.cid, skipped: r.skipped, resumed: r.resumed })
      if (p.mode === 'json' || o.quiet) return
      const mbs = r.bytes / 1e6 / Math.max(p.seconds, 1e-3)
      out(`packed ${r.files} files (${formatSize(r.bytes)}) into ${m.cars.length} CAR(s) in ${o.output} in ${p.seconds.toFixed(1)} s (${mbs.toFixed(0)} MB/s)`)
      if (r.resumed) out(`resumed: ${r.resumed.cars} CAR(s) and ${r.resumed.files} files were already complete and kept`)
      if (r.skipped.length) out(`skipped ${r.skipped.length}: ${r.skipped.map((s) => `${s.path} (${s.reason})`).join(', ')}`)
      out(`root ${m.root}`)
      out(`set ID ${m.table.cid}  (keep it apart from the CARs; check a set with --expect)`)
    })
}
