import { PackerError } from '../errors.js'

/** Reads a line from the terminal without echo. */
async function prompt (question: string): Promise<string> {
  const stdin = process.stdin
  stdin.setRawMode(true) // before the question: a reply typed as soon as it shows must not echo
  process.stderr.write(question)
  stdin.resume()
  let text = ''
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (buf: Buffer): void => {
        for (const ch of buf.toString('utf8')) {
          if (ch === '\r' || ch === '\n') { stdin.off('data', onData); resolve(text); return }
          if (ch === '\u0003') { stdin.off('data', onData); reject(new PackerError('USAGE', 'interrupted')); return }
          if (ch === '\u007f') text = text.slice(0, -1)
          else text += ch
        }
      }
      stdin.on('data', onData)
    })
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    process.stderr.write('\n')
  }
}

/** The passphrase from PACKER_PASSPHRASE, else from the terminal (asked twice when it sets a new one); the API refuses an empty one. */
export async function readPassphrase (confirm: boolean): Promise<string> {
  let pass = process.env.PACKER_PASSPHRASE
  if (pass === undefined) {
    if (!process.stdin.isTTY) throw new PackerError('USAGE', 'a passphrase is needed and there is no terminal to ask: set PACKER_PASSPHRASE')
    pass = await prompt('Passphrase: ')
    if (confirm && await prompt('Passphrase again: ') !== pass) throw new PackerError('USAGE', 'the two passphrases differ; nothing was written')
  }
  return pass
}
