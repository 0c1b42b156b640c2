/** Where the CLI writes: results on stdout, warnings and errors on stderr (one line each). */
export const warn = (msg: string): void => { process.stderr.write(`packer: warning: ${msg}\n`) }
export const out = (line: string): void => { process.stdout.write(line + '\n') }
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v]
