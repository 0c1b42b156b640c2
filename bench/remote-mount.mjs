#!/usr/bin/env node
/**
 * Remote mount against local mount, and against peers reading the same bytes from the same server (issue 15). Run as
 * root on a machine with FUSE, nginx and rclone, after `npm run build`:
 *   node bench/remote-mount.mjs [--work DIR] [--size-mib 1024] [--runs 3] [--delay-ms 0] [--cli dist/cli/main.js]
 *
 * One file of --size-mib random bytes packed encrypted (age X25519); a sequential cold read (dd bs=1M, page cache
 * dropped before every run, a fresh mount each run) of it through `packer mount SETDIR` and through `packer mount
 * http://127.0.0.1:PORT/set/` with the same directory served by nginx (started here on 127.0.0.1, one process,
 * autoindex on; with --delay-ms, nginx's echo module holds every answer that long: a distant server). Peers, from the
 * same nginx in the same runs: `rclone mount` of the directory over HTTP (`:http:` remote) read with the same dd — the
 * raw CAR, no decryption or hash checks, so close to the ceiling of an HTTP FUSE mount — and `curl` of the whole CAR
 * to /dev/null. And `packer fetch` of the set (its CAR written to disk, its piece CID checked) against `curl -o` of the
 * CAR to disk. Prints MB/s of each (median of the runs), the remote mount's ratio to each, fetch's to curl's, and the
 * CPU-seconds (a mount's during the read, all threads) and peak RSS of each. --cli measures another build (e.g. a copy of an older dist),
 * in the same conditions.
 */
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { config } from './lib/sys.mjs'
import { measureRemoteMount, printRemoteMount, remoteMountMissing } from './lib/remote-mount-cases.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const delayMs = Number(opt('--delay-ms', '0'))
// the runs are interleaved, so each measures the same moment of a shared machine: none waits for quiet
config.waitQuiet = false

const missing = remoteMountMissing(delayMs)
if (missing.length > 0) {
  console.error(`bench/remote-mount.mjs needs ${missing.join(', ')}`)
  process.exit(2)
}
measureRemoteMount({
  cli: path.resolve(opt('--cli', path.join(ROOT, 'dist/cli/main.js'))),
  work: path.resolve(opt('--work', path.join(os.tmpdir(), 'packer-remote-mount-bench'))),
  sizeMib: Number(opt('--size-mib', '1024')),
  runs: Number(opt('--runs', '3')),
  delayMs,
}).then(printRemoteMount).catch((err) => { console.error(err); process.exitCode = 1 })
