import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import readline from 'node:readline'
import { CLI } from '../helpers.js'

/** The environment without proxy variables: what the tests start talks to 127.0.0.1, never through a proxy. */
export function unproxiedEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k]
  return env
}

export interface RunningServe {
  url: string
  /** The access log so far: one object per request (`--json`). */
  log: Array<Record<string, any>>
  child: ChildProcess
  stop: () => Promise<void>
}

/** Starts `packer serve SETDIR --listen 127.0.0.1:0 --json ARGS…` and waits for its ready line. */
export async function startServe (setDir: string, args: string[] = []): Promise<RunningServe> {
  const child = spawn(process.execPath, [CLI, 'serve', setDir, '--listen', '127.0.0.1:0', '--json', ...args], {
    env: unproxiedEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (d) => { stderr += d })
  const log: Array<Record<string, any>> = []
  const lines = readline.createInterface({ input: child.stdout! })
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const e = JSON.parse(line)
      if (e.event === 'listening') resolve(e.url)
      else log.push(e)
    })
    child.once('exit', (code) => reject(new Error(`packer serve exited ${code}: ${stderr.trim()}`)))
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    url,
    log,
    child,
    stop: async () => {
      child.kill('SIGTERM')
      await exited
    },
  }
}

export interface Response { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

/** One request to `url` + `target` sent as it is (no normalization of `..` or `//`), without any proxy. */
export function request (url: string, target: string, opts: { method?: string, headers?: Record<string, string> } = {}): Promise<Response> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: target, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
