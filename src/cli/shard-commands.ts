import { Command } from 'commander'
import { PackerError } from '../errors.js'
import { formatSize } from '../format/size.js'
import { join, packShard, plan, status } from '../api/shards.js'
import type { PackEvent } from '../api/pack.js'
import { readPassphrase } from './passphrase.js'
import { Progress, progressMode } from './progress.js'
import { out, warn } from './output.js'
import { addS3Options, s3Options } from './s3-options.js'
import { addSetOptions } from './set-options.js'

/** The pack progress display: the same for a whole pack, a shard and a join. */
function packDisplay (p: Progress): (e: PackEvent | { event: 'moving', bytes: number }) => void {
  return (e) => {
    switch (e.event) {
      case 'scanning': p.status(`scanning the source: ${e.files} files, ${formatSize(e.bytes)}`); break
      case 'progress': p.update(e); break
      case 'moving': p.status(`moving the shards' last CARs: ${formatSize(e.bytes)}`); break
      case 'car': p.current = `CAR ${e.index + 1} done`; p.event(e); p.tick(true); break
      default: p.event(e)
    }
  }
}

/** `packer pack --plan WORK --shard I|auto`. */
export async function packShardCommand (source: string | undefined, o: any, cmd: Command): Promise<void> {
  if (o.plan === undefined || o.shard === undefined) throw new PackerError('USAGE', '--plan WORK and --shard I go together')
  const given = ['output', 'binSize', 'recipient', 'recipientsFile', 'passphrase', 'plainNames', 'stateDir', 'compress', 's3Endpoint', 's3PathStyle', 's3Mtime']
    .filter((k) => cmd.getOptionValueSource(k) === 'cli')
  if (source !== undefined || given.length > 0 || cmd.getOptionValueSource('encrypt') === 'cli') {
    throw new PackerError('USAGE', `a shard takes its source, output and keys from the plan: give only --plan, --shard, --jobs, --on-change, --json or -q${given.length ? ` (not --${given[0]!.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())})` : ''}`)
  }
  const shard = o.shard === 'auto' ? 'auto' : /^\d+$/.test(o.shard) ? Number(o.shard) : null
  if (shard === null) throw new PackerError('USAGE', `--shard ${o.shard}: give a shard index (0, 1, …) or auto`)
  const p = new Progress(progressMode(o), 'pack')
  const r = await packShard(o.plan, { shard, onChange: o.onChange, jobs: o.jobs, onWarning: (m) => { p.end(); warn(m) }, onEvent: packDisplay(p) })
  p.end()
  p.event({ event: 'shard', ...r })
  if (p.mode === 'json' || o.quiet) return
  if (r.nothingToDo) out(`nothing to do: shard ${r.shard} of ${o.plan} was committed by run ${r.run}`)
  else if (r.lost) out(`shard ${r.shard} was committed by another run meanwhile; this run's CARs were removed`)
  else out(`packed shard ${r.shard}: ${r.files} files (${formatSize(r.bytes)}) into ${r.cars} CAR(s) in ${r.seconds.toFixed(1)} s; committed as run ${r.run}`)
}

export function addShardCommands (program: Command): void {
  const planCommand = program.command('plan').argument('<source>', 'directory (its contents become the archive root), single file, or s3://BUCKET/PREFIX')
    .description('cut SOURCE into shards that several machines pack (packer pack --plan WORK --shard I), then packer join WORK')
    .requiredOption('-o, --output <outdir>', 'directory for the CAR set, on storage every machine shares (new or empty)')
    .requiredOption('--work <dir>', 'private work directory on storage every machine shares (new or empty); never ship it')
    .option('--shards <n>', 'number of shards')
    .option('--shard-size <size>', 'or: the bytes each shard should hold (e.g. 2TiB)')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line with the plan on stdout')
  addS3Options(addSetOptions(planCommand)).action(async (source: string, o) => {
      const shards = o.shards === undefined ? undefined : Number(o.shards)
      if (o.shards !== undefined && !/^\d+$/.test(o.shards)) throw new PackerError('USAGE', `--shards ${o.shards}: give a whole number`)
      const p = new Progress(progressMode(o), 'plan')
      const r = await plan(source, {
        output: o.output, work: o.work, shards, shardSize: o.shardSize, binSize: o.binSize,
        recipients: o.recipient, recipientFiles: o.recipientsFile,
        passphrase: o.passphrase ? async () => await readPassphrase(true) : undefined,
        encrypt: o.encrypt, plainNames: o.plainNames, compress: o.compress, ...s3Options(o),
        onWarning: (m) => { p.end(); warn(m) },
        onEvent: (e) => p.status(`scanning the source: ${e.files} files, ${formatSize(e.bytes)}`),
      })
      p.end()
      if (o.json) { out(JSON.stringify({ event: 'plan', ...r })); return }
      if (o.quiet) return
      const sizes = r.shards.map((s) => s.bytes)
      out(`planned ${r.shards.length} shard(s) of ${r.files} files (${formatSize(r.bytes)}) in ${o.work}: from ${formatSize(Math.min(...sizes))} to ${formatSize(Math.max(...sizes))} each`)
      out(`next: run 'packer pack --plan ${o.work} --shard I' for I = 0…${r.shards.length - 1} (or --shard auto in an array job), then 'packer join ${o.work}'`)
    })

  program.command('join').argument('<work>', 'the work directory of a plan whose shards are all committed')
    .description('make one set of the shards of a plan: directories, file table, index and manifest; no source data is read again')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event on stdout')
    .action(async (work: string, o) => {
      const p = new Progress(progressMode(o), 'join')
      const r = await join(work, { onWarning: (m) => { p.end(); warn(m) }, onEvent: packDisplay(p) })
      p.end()
      p.event({ event: 'done', ...r })
      if (p.mode === 'json' || o.quiet) return
      if (r.nothingToDo) { out(`nothing to do: the shards of ${work} were joined into set ${r.setId}`); return }
      const padded = r.pieces.reduce((n, c) => n + c.pieceSize, 0)
      out(`joined ${work}: ${r.pieces.length} CAR(s) (padded pieces ${formatSize(padded)}); moved ${r.movedCars} partly filled CAR(s) (${formatSize(r.movedBytes)}) into full ones, in ${r.seconds.toFixed(1)} s`)
      for (const f of r.removed) out(`removed ${f}`)
      out(`root ${r.root}`)
      out(`set ID ${r.setId}  (keep it apart from the CARs; check a set with --expect)`)
    })

  program.command('status').argument('<work>', 'the work directory of a plan')
    .description("the plan's shards: committed, running (fresh heartbeat), dead or pending, with files and bytes")
    .option('--json', 'JSON instead of a table')
    .action(async (work: string, o) => {
      const s = await status(work)
      if (o.json) { out(JSON.stringify(s, null, 2)); return }
      if (s.joined) { out(`joined: set ${s.joined.setId} in ${s.joined.out}`); return }
      const count = (st: string): number => s.shards.filter((x) => x.state === st).length
      for (const x of s.shards) {
        const run = x.runs.find((r) => r.alive) ?? x.runs[0]
        const where = run && x.state !== 'committed' ? ` (${run.host} pid ${run.pid}, heartbeat ${Math.round((Date.now() - run.updated) / 1000)} s ago)` : ''
        out(`shard ${String(x.shard).padStart(4)}  ${x.state.padEnd(9)} ${x.files}/${x.totalFiles} files, ${formatSize(x.bytes)}/${formatSize(x.totalBytes)}, ${x.cars} CAR(s)${where}`)
      }
      out(`${count('committed')} committed, ${count('running')} running, ${count('dead')} dead, ${count('pending')} pending of ${s.shards.length}`)
    })
}
