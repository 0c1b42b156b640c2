/**
 * fauxqs 2.4.1 (devDependency `fauxqs-2`), the one S3-compatible server on npm or in Debian 12 found to implement
 * UploadPartCopy with a byte range from an object uploaded in parts; it needs Node >= 22.5, so it runs in a child
 * process on Node 22 (fetched from the npm registry by `npm test`'s pretest, scripts/fetch-node.sh; the test only takes the copy), on
 * 127.0.0.1 only. It ignores x-amz-copy-source-if-match: a test on it shows the bytes of a copy in parts, not the
 * pinning. The other tests keep fauxqs 1.9.2 in process (test/servers/s3.ts).
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { ROOT, run } from '../helpers.js'

export interface ChildS3 { readonly endpoint: string, stop: () => Promise<void> }

const SERVE = `
import { buildApp } from 'fauxqs-2'
const app = buildApp({ logger: false })
await app.listen({ host: '127.0.0.1', port: 0 })
process.stdout.write('http://127.0.0.1:' + app.server.address().port + '\\n')
`

export async function startFauxqs2 (): Promise<ChildS3> {
  const fetched = await run('bash', [path.join(ROOT, 'scripts/fetch-node.sh'), '--cached', '22'])
  if (fetched.code !== 0) throw new Error(`cannot get Node 22 for fauxqs 2: ${fetched.stderr}`)
  const child = spawn(fetched.stdout.trim(), ['--no-warnings', '--input-type=module', '-e', SERVE], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d) => { err += d })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d) => {
      out += d
      const m = /^(http:\/\/127\.0\.0\.1:\d+)\n/.exec(out)
      if (m !== null) resolve(m[1]!)
    })
    void exited.then(() => reject(new Error(`fauxqs 2 exited before listening: ${err}`)))
  })
  return {
    endpoint,
    stop: async () => {
      child.kill('SIGTERM')
      await exited
    },
  }
}
