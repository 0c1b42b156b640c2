import { Command } from 'commander'
import { keygen } from '../index.js'
import { out } from './output.js'

export function addKeygenCommand (program: Command): void {
  program.command('keygen')
    .description('make a key: an age X25519 identity (default) or, with --rsa, private_key.pem and certificate.pem')
    .requiredOption('-o, --output <path>', 'identity file to write (with --rsa: a directory)')
    .option('--rsa', 'RSA-2048 key and self-signed certificate, as the original tool made them')
    .action(async (o) => {
      if (o.rsa) {
        const r = await keygen(o.output, { rsa: true })
        out(`wrote ${r.privateKey} (keep it secret) and ${r.certificate} (give it to pack with -R)`)
      } else {
        const r = await keygen(o.output)
        process.stderr.write(`wrote ${r.identityFile} (keep it secret); its recipient, for pack -r:\n`)
        out(r.recipient)
      }
    })
}
