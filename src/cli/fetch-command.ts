import type { Command } from 'commander'
import { PackerError } from '../errors.js'
import { formatSize } from '../format/size.js'
import { fetchSet } from '../api/fetch.js'
import { checkPieceUrl } from '../remote/piece-url.js'
import { Progress, progressMode } from './progress.js'
import { collect, out } from './output.js'
import { seconds } from './read-commands.js'

/** `packer fetch SET|--piece-url … -o DIR`. */
export function addFetchCommand (program: Command): void {
  program.command('fetch').argument('[set]', 'URL (or directory) of the set: manifest.json, the index and, unless --piece-url, the CARs')
    .description('download a set\'s CARs (and its manifest and index) into DIR, several at once, resuming what an earlier run left; each CAR gets its name once its piece CID checks out')
    .requiredOption('-o, --output <dir>', 'directory to write the set into')
    .option('--manifest <where>', 'URL or directory of manifest.json and the index (instead of SET)')
    .option('--piece-url <template>', 'fetch the CARs from this URL, {pieceCid} or {pieceCidV2} replaced (repeatable: tried in order)', collect)
    .option('--http-timeout <seconds>', 'longest wait for a web server: to connect, to answer, between two pieces of a body', '30')
    .option('-q, --quiet', 'print only errors')
    .option('--json', 'one JSON line per event on stdout')
    .action(async (where: string | undefined, o) => {
      const from = o.manifest ?? where
      if (from === undefined) throw new PackerError('USAGE', 'give the set\'s URL, or --manifest with --piece-url')
      const p = new Progress(progressMode(o), 'fetch')
      let r
      try {
        r = await fetchSet(from, {
          output: o.output,
          pieceUrls: (o.pieceUrl as string[] | undefined)?.map(checkPieceUrl),
          httpTimeoutMs: seconds(o.httpTimeout, '--http-timeout'),
          onEvent: (e) => { if (e.event === 'progress') p.update(e); else p.event(e) },
        })
      } finally { p.end() }
      if (p.mode === 'json' || o.quiet) return
      out(`fetched ${r.cars} CAR(s) (${formatSize(r.bytes)}) into ${o.output} in ${r.seconds.toFixed(1)} s; each one's piece CID checked`)
    })
}
