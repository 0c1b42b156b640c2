/** Where the CLI writes: results on stdout, warnings and errors on stderr (one line each). */
export const warn = (msg: string): void => { process.stderr.write(`packer: warning: ${msg}\n`) }
export const out = (line: string): void => { process.stdout.write(line + '\n') }

// A reader that stops early (`packer ls | head`) closes the pipe: that ends the command quietly, as for any Unix tool.
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err })
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v]
