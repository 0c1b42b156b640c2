import { spawn } from 'node:child_process'
import path from 'node:path'
import { ROOT, run } from '../helpers.js'

const CHILD = path.join(ROOT, 'test/servers/helia-fetch.mjs')
/**
 * Helia's dependencies use Promise.withResolvers (Node 22), and the `helia` package that @helia/verified-fetch brings
 * loads undici 8 (engines: Node >= 22.19); the tests run on Node 20 and 22.12 too.
 */
const HELIA_NODE = [22, 19]
/** What the child gets beyond its own timeout before it is killed. */
const KILL_GRACE_MS = 5_000

let heliaNodeBinary: Promise<string> | undefined

/** A Node binary that runs Helia: this one if it is recent enough, else Node 24 (fetched by `npm test`'s pretest). */
export function heliaNode (): Promise<string> {
  heliaNodeBinary ??= (async () => {
    const [major, minor] = process.versions.node.split('.').map(Number)
    if (major > HELIA_NODE[0] || (major === HELIA_NODE[0] && minor >= HELIA_NODE[1])) return process.execPath
    const r = await run('bash', [path.join(ROOT, 'scripts/fetch-node.sh'), '--cached', '24'])
    if (r.code !== 0) throw new Error(`cannot get Node 24 for the Helia client: ${r.stderr.trim()}`)
    return r.stdout.trim()
  })()
  return heliaNodeBinary
}

/** Loopback is never proxied, whatever proxy variables the environment holds (Node 24 reads them if asked to). */
function withLoopbackUnproxied (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const noProxy = [env.NO_PROXY ?? env.no_proxy, '127.0.0.1', 'localhost'].filter(Boolean).join(',')
  return { ...env, NO_PROXY: noProxy, no_proxy: noProxy }
}

export interface HeliaFetchOptions {
  /** A path inside the directory `cid` names. */
  path?: string
  /** The whole fetch, the child's start-up included. */
  timeoutMs: number
  /** Added to the child's environment. */
  env?: NodeJS.ProcessEnv
}

/**
 * Fetches the UnixFS file `cid` (or `path` inside it) with Helia from the trustless gateway at `gatewayUrl` and
 * nowhere else, in a child process (test/servers/helia-fetch.mjs). Rejects with the child's one-line error.
 */
export async function heliaFetch (gatewayUrl: string, cid: string, opts: HeliaFetchOptions): Promise<Buffer> {
  return await runChild(gatewayUrl, cid, opts, [])
}

export interface VerifiedFetchResponse { status: number, headers: Record<string, string>, body: Buffer }

/**
 * Asks @helia/verified-fetch for `ipfs://{cid}[/{path}]`, with the Helia node of `heliaFetch` (the trustless gateway
 * at `gatewayUrl` and nowhere else) under it, and resolves with its response whatever the status. Rejects with the
 * child's one-line error.
 */
export async function heliaVerifiedFetch (gatewayUrl: string, cid: string, opts: HeliaFetchOptions): Promise<VerifiedFetchResponse> {
  const out = await runChild(gatewayUrl, cid, opts, ['--verified-fetch'])
  const eol = out.indexOf('\n')
  if (eol < 0) throw new Error(`helia-fetch --verified-fetch wrote no status line: ${out.toString().slice(0, 200)}`)
  const { status, headers } = JSON.parse(out.subarray(0, eol).toString())
  return { status, headers, body: out.subarray(eol + 1) }
}

async function runChild (gatewayUrl: string, cid: string, opts: HeliaFetchOptions, extra: string[]): Promise<Buffer> {
  const args = [CHILD, gatewayUrl, cid, '--timeout-ms', String(opts.timeoutMs), ...extra]
  if (opts.path !== undefined) args.push('--path', opts.path)
  const child = spawn(await heliaNode(), args, {
    env: withLoopbackUnproxied({ ...process.env, ...opts.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const chunks: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => chunks.push(d))
  child.stderr.on('data', (d) => { stderr += d })
  // the child ends itself on time; this is for a child that cannot
  const kill = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs + KILL_GRACE_MS)
  const onExit = (): void => { child.kill('SIGKILL') }
  process.once('exit', onExit)
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (c, s) => resolve([c, s]))
    })
    if (code !== 0) throw new Error(stderr.trim() || `helia-fetch exited with ${code ?? signal}`)
    return Buffer.concat(chunks)
  } finally {
    clearTimeout(kill)
    process.removeListener('exit', onExit)
  }
}
