import { Command, Option } from 'commander'
import { formatSize } from '../format/size.js'
import { defaultJobs } from '../pack/leaf-workers.js'
import { pack } from '../index.js'
import { PackerError } from '../errors.js'
import { packShardCommand } from './shard-commands.js'
import { readPassphrase } from './passphrase.js'
import { Progress, progressMode } from './progress.js'
import { out, warn } from './output.js'
import { addS3Options, s3Options } from './s3-options.js'
import { addSetOptions } from './set-options.js'

export function addPackCommand (program: Command): void {
  const cmd = program.command('pack').argument('[source]', 'directory (its contents become the archive root), single file, or s3://BUCKET/PREFIX')
    .description('pack SOURCE into a CAR set in OUTDIR (rerun the same command to continue after a crash); or, with --plan, one shard of a plan')
    .option('-o, --output <outdir>', 'directory or s3://BUCKET/PREFIX for the CAR set (new or empty)')
    .option('--plan <work>', 'pack one shard of the plan in WORK (see packer plan); with --shard')
    .option('--shard <i>', "the shard to pack: its index, or 'auto' (from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX)")
    .addOption(new Option('--on-change <what>', 'a source file that changes while packed: read it again, fail, or leave it out').choices(['retry', 'fail', 'skip']).default('retry'))
    .option('-j, --jobs <n>', 'threads that hash and encrypt (1: none besides the main one); the output does not depend on it', String(defaultJobs()))
    .option('--state-dir <dir>', 'where the resume journal lives (default $XDG_STATE_HOME/packer or ~/.local/state/packer; never OUTDIR)')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event (file, car, done) on stdout')
  addS3Options(addSetOptions(cmd)).action(async (source: string | undefined, o, cmd: Command) => {
      if (o.plan !== undefined || o.shard !== undefined) return await packShardCommand(source, o, cmd)
      if (source === undefined || o.output === undefined) throw new PackerError('USAGE', "pack needs SOURCE and -o OUTDIR (or --plan WORK --shard I); see 'packer pack --help'")
      const p = new Progress(progressMode(o), 'pack')
      const r = await pack(source, {
        output: o.output,
        binSize: o.binSize,
        recipients: o.recipient,
        recipientFiles: o.recipientsFile,
        passphrase: o.passphrase ? async () => await readPassphrase(true) : undefined,
        encrypt: o.encrypt,
        plainNames: o.plainNames,
        compress: o.compress,
        onChange: o.onChange,
        jobs: o.jobs,
        stateDir: o.stateDir,
        ...s3Options(o),
        onWarning: (m) => { p.end(); warn(m) },
        onEvent: (e) => {
          switch (e.event) {
            case 'scanning': p.status(`scanning the source: ${e.files} files, ${formatSize(e.bytes)}`); break
            case 'progress': p.update(e); break
            case 'car': p.current = `CAR ${e.index + 1} done`; p.event(e); p.tick(true); break
            default: p.event(e)
          }
        },
      })
      p.end()
      if (p.mode === 'json' || o.quiet) return
      if (r.nothingToDo) {
        out(`nothing to do: ${o.output} already holds the set these arguments make (set ID ${r.setId})`)
        return
      }
      const mbs = r.bytes / 1e6 / Math.max(r.seconds, 1e-3)
      out(`packed ${r.files} files (${formatSize(r.bytes)}) into ${r.cars} CAR(s) in ${o.output} in ${r.seconds.toFixed(1)} s (${mbs.toFixed(0)} MB/s)`)
      if (r.resumed) out(`resumed: ${r.resumed.cars} CAR(s) and ${r.resumed.files} files were already complete and kept`)
      if (r.skipped.length) out(`skipped ${r.skipped.length}: ${r.skipped.map((s) => `${s.path} (${s.reason})`).join(', ')}`)
      out(`root ${r.root}`)
      out(`set ID ${r.setId}  (keep it apart from the CARs; check a set with --expect)`)
    })
}
