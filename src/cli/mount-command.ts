import { Option, type Command } from 'commander'
import { PackerError } from '../errors.js'
import { parseSize, formatSize } from '../format/size.js'
import { mountSet, DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE } from '../mount/index.js'
import { identitiesOf } from '../api/keys.js'
import { unmount } from '../index.js'
import { keyOptionsFrom } from './keys.js'
import { checkPieceUrl } from '../remote/piece-url.js'
import { httpTimeouts } from '../api/set.js'
import { seconds } from './read-commands.js'
import { collect } from './output.js'
import { addS3AccessOptions, s3AccessOptions } from './s3-options.js'
import { s3ReadOptions } from '../api/s3.js'

function id (text: string, option: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 2 ** 32 - 2) throw new PackerError('USAGE', `${option}: '${text}' is not a numeric id`)
  return Number(text)
}

/** `packer mount CARDIR MOUNTPOINT` and `packer umount MOUNTPOINT`. */
export function addMountCommands (program: Command): void {
  addS3AccessOptions(program.command('mount').argument('<cardir>', 'directory, URL or s3://BUCKET/PREFIX with the CARs (and manifest.json, unless --manifest); with --piece-url, where manifest.json is').argument('<mountpoint>', 'empty directory to mount on')
    .description('mount a set read-only (FUSE): browse and read files on demand, decrypted and checked; runs until Ctrl-C or packer umount')
    .option('-i, --identity <file>', 'identity that opens an encrypted set: RSA private key PEM, age identity file or OpenSSH key (repeatable; - reads it from standard input)', collect)
    .option('--passphrase', 'open a passphrase-protected set (asks on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--expect <setid>', 'refuse the set unless its set ID (printed by pack) is this')
    .option('--manifest <dir>', 'directory, URL or s3://BUCKET/PREFIX with manifest.json, blocks.idx and the table, when not beside the CARs')
    .option('--piece-url <template>', 'fetch the CARs from this URL, {pieceCid} or {pieceCidV2} replaced (repeatable: tried in order)', collect)
    .option('--http-timeout <seconds>', 'longest wait for a web server: to connect, to answer, between two pieces of a body', '30')
    .option('--cache-size <size>', `decrypted, verified data kept in memory (e.g. 512MiB, at least ${formatSize(MIN_CACHE_SIZE)})`, formatSize(DEFAULT_CACHE_SIZE).replace(' ', ''))
    .option('--uid <uid>', 'owner shown for every file (default: you)')
    .option('--gid <gid>', 'group shown for every file (default: yours)')
    .option('-o, --options <opts>', 'FUSE mount options, comma-separated: allow_other, allow_root')
    .addOption(new Option('--workers <n>', 'hashing/decryption threads (default: one per CPU, at most 4)').hideHelp()))
    .action(async (cardir: string, mountpoint: string, o) => {
      const cacheSize = parseSize(o.cacheSize, '--cache-size')
      if (cacheSize < MIN_CACHE_SIZE) throw new PackerError('USAGE', `--cache-size: ${o.cacheSize} is too small; give at least ${formatSize(MIN_CACHE_SIZE)}`)
      const fuseOpts = new Set<string>(o.options ? String(o.options).split(',').map((s: string) => s.trim()).filter(Boolean) : [])
      for (const f of fuseOpts) {
        if (f !== 'allow_other' && f !== 'allow_root' && f !== 'ro') throw new PackerError('USAGE', `-o ${f}: not supported (packer mount takes allow_other, allow_root; it is always read-only)`)
      }
      const started = Date.now()
      const m = await mountSet({
        carDir: cardir,
        setDir: o.manifest,
        pieceUrls: (o.pieceUrl as string[] | undefined)?.map(checkPieceUrl),
        http: httpTimeouts(seconds(o.httpTimeout, '--http-timeout')),
        s3: s3ReadOptions(s3AccessOptions(o)),
        mountpoint,
        identities: async () => await identitiesOf(await keyOptionsFrom(o)),
        expect: o.expect,
        cacheSize,
        workers: o.workers !== undefined ? id(o.workers, '--workers') : undefined,
        uid: o.uid !== undefined ? id(o.uid, '--uid') : undefined,
        gid: o.gid !== undefined ? id(o.gid, '--gid') : undefined,
        allowOther: fuseOpts.has('allow_other'),
        allowRoot: fuseOpts.has('allow_root'),
      })
      let stopping = false
      const stop = (): void => {
        if (stopping) { process.exit(130) }
        stopping = true
        void m.unmount()
      }
      // Handlers before the ready line: whoever reads it may signal at once (the default action would kill us).
      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
      process.on('SIGHUP', stop)
      const missing = m.missing.length > 0 ? `; ${m.missing.length} of ${m.set.manifest.cars.length} CAR(s) missing (files in them give EIO until copied into ${cardir})` : ''
      process.stdout.write(`mounted set ${m.set.setId} at ${m.mountpoint}: ${m.files} files, ${m.entries} entries, ${formatSize(m.bytes)} in ${m.set.manifest.cars.length} CAR(s), ready in ${((Date.now() - started) / 1000).toFixed(2)} s${missing}; Ctrl-C or 'packer umount ${m.mountpoint}' unmounts\n`)
      await m.closed
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      process.off('SIGHUP', stop)
      process.stderr.write(`packer mount: unmounted ${m.mountpoint}\n`)
      // fuse-native's thread may hold the event loop; nothing is left to do.
      process.exit(0)
    })

  program.command('umount').alias('unmount').argument('<mountpoint>')
    .description('unmount a packer mount (same as fusermount -u)')
    .option('-z, --lazy', 'detach now even while programs use it (they keep their view until they close it)')
    .action(async (mountpoint: string, o) => {
      await unmount(mountpoint, { lazy: !!o.lazy })
    })
}
