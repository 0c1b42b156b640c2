#!/usr/bin/env node
import { writeSync } from 'node:fs'
import { Command } from 'commander'
import { PackerError } from '../errors.js'
import { VERSION } from '../version.js'
import { addPackCommand } from './pack-command.js'
import { addReadCommands } from './read-commands.js'
import { addKeygenCommand } from './keygen-command.js'
import { addMountCommands } from './mount-command.js'
import { addShardCommands } from './shard-commands.js'
import { addServeCommand } from './serve-command.js'
import { addFetchCommand } from './fetch-command.js'

/** The CLI: options become calls; a PackerError becomes one line on stderr and its exit code. */
const program = new Command()
program.name('packer').version(VERSION)
  .description('Pack data sets into Filecoin-ready CAR sets (encrypted, with piece CIDs); unpack, list, verify and mount them.')
  .showHelpAfterError('(run packer --help for usage)')
addPackCommand(program)
addReadCommands(program)
addKeygenCommand(program)
addMountCommands(program)
addShardCommands(program)
addServeCommand(program)
addFetchCommand(program)

let finished = false
// A command still running when nothing is left that could resume it (a promise that nothing will settle) must not
// end as a success: Node would exit with code 0, the command's output and error never written.
process.on('beforeExit', () => {
  if (finished) return
  finished = true
  process.stderr.write('packer: internal error: the command stopped before it finished (nothing was left to wait for); rerun it, and please report this\n')
  process.exitCode = 70
})

program.parseAsync(process.argv).then(() => { finished = true }, (err: unknown) => {
  finished = true
  if (err instanceof PackerError) {
    process.stderr.write(`packer: ${err.message}\n`)
    process.exitCode = err.exitCode
    // The library's mount runs this CLI in a child process and reads the error, with its code, from this descriptor.
    const fd = process.env.PACKER_ERROR_FD
    if (fd !== undefined) {
      try { writeSync(Number(fd), JSON.stringify({ code: err.code, message: err.message, exitCode: err.exitCode, subject: err.subject }) + '\n') } catch {}
    }
  } else {
    const e = err as Error
    process.stderr.write(`packer: unexpected error: ${e?.message ?? String(err)} (please report it with the output of PACKER_DEBUG=1)\n`)
    if (process.env.PACKER_DEBUG) process.stderr.write(`${e?.stack}\n`)
    process.exitCode = 70
  }
})
