import type { Command } from 'commander'
import { DEFAULT_BIN_SIZE } from '../car/car-set-writer.js'
import { collect } from './output.js'

/** The options that say what set is made (bins, encryption, names, compression): `pack` and `plan` take the same. */
export function addSetOptions (cmd: Command): Command {
  return cmd
    .option('-b, --bin-size <size>', 'largest CAR file (bytes or 64MiB, 31.5GiB…); default fits a 32 GiB sector', String(DEFAULT_BIN_SIZE))
    .option('-r, --recipient <recipient>', 'encrypt to an age1… or ssh-rsa/ssh-ed25519 public key (repeatable)', collect)
    .option('-R, --recipients-file <file>', 'encrypt to the keys in FILE: RSA certificate or public key PEM, or lines of age1…/ssh-… keys (repeatable)', collect)
    .option('--passphrase', 'encrypt with a passphrase (asks twice on the terminal, or reads PACKER_PASSPHRASE)')
    .option('--no-encrypt', 'store files in clear')
    .option('--plain-names', 'keep the UnixFS tree browsable (names in clear; contents still encrypted)')
    .option('--compress <how>', 'zstd before encryption: auto (default when encrypting: files whose first MiB shrinks 10 %), off, zstd, zstd:LEVEL')
}
