import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, isListening } from './ports.js'

/** One line of the access log: what a client asked for and what nginx sent (`bytes`: body bytes). */
export interface AccessLogEntry { method: string, path: string, range: string, status: number, bytes: number }

export interface NginxServer {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  url: string
  /** The access log file, one JSON object (an AccessLogEntry) a line. */
  accessLog: string
  /** The access log's entries, once it holds at least `count` (nginx logs a request just after answering it). */
  requests: (count?: number) => Promise<AccessLogEntry[]>
  /** Stops nginx and waits for it to exit; safe to call twice. */
  stop: () => Promise<void>
}

export interface NginxOptions {
  /** The directory served at `/`. */
  root: string
  /** Directory listings (HTML) for directory URLs, as `rclone mount` of an HTTP remote reads them. */
  autoindex?: boolean
  /** Waits this long before answering each request (a distant server), with the echo module's `echo_sleep`. */
  delayMs?: number
}

const ECHO_MODULE = '/usr/lib/nginx/modules/ngx_http_echo_module.so'
const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 5_000

/** nginx is in /usr/sbin, which a user's PATH may lack. */
function nginxBinary (): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
    const candidate = path.join(dir || '.', 'nginx')
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  throw new Error('nginx not found: install it with: sudo bash scripts/setup-system.sh --tests')
}

function config (dir: string, port: number, opts: NginxOptions): string {
  const file = (name: string): string => JSON.stringify(path.join(dir, name))
  const delay = opts.delayMs ?? 0
  // echo_sleep is the content handler of `/`; echo_exec then hands the request to the static files in @files.
  const locations = delay > 0
    ? `location / { echo_sleep ${delay / 1000}; echo_exec @files; }\n    location @files { }`
    : 'location / { }'
  return `# written by test/servers/nginx.ts
daemon off;
# One process, no workers: it reads the files as the test's user, and killing it leaves no orphan behind.
master_process off;
pid ${file('nginx.pid')};
error_log ${file('error.log')};
${delay > 0 ? `load_module ${ECHO_MODULE};` : ''}
events { worker_connections 1024; }
http {
  log_format packer escape=json '{"method":"$request_method","path":"$request_uri","range":"$http_range","status":$status,"bytes":$body_bytes_sent}';
  access_log ${file('access.log')} packer;
  client_body_temp_path ${file('body')};
  proxy_temp_path ${file('proxy')};
  fastcgi_temp_path ${file('fastcgi')};
  uwsgi_temp_path ${file('uwsgi')};
  scgi_temp_path ${file('scgi')};
  default_type application/octet-stream;
  sendfile on;
  gzip off;
  server {
    listen 127.0.0.1:${port};
    root ${JSON.stringify(path.resolve(opts.root))};
    autoindex ${opts.autoindex === true ? 'on' : 'off'};
    ${locations}
  }
}
`
}

/**
 * Runs nginx in the foreground on 127.0.0.1 (a free port), serving `root` with Range support, no compression, and an
 * access log in its own temporary directory, which stop() removes. It never reads the system's configuration.
 */
export async function startNginx (opts: NginxOptions): Promise<NginxServer> {
  const binary = nginxBinary()
  if ((opts.delayMs ?? 0) > 0 && !fs.existsSync(ECHO_MODULE)) {
    throw new Error(`nginx's echo module (${ECHO_MODULE}) is missing: install it with: sudo bash scripts/setup-system.sh --tests`)
  }
  let lastError = ''
  // Another process may take the free port before nginx binds it: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'packer-nginx-'))
    const port = await freePort()
    const conf = path.join(dir, 'nginx.conf')
    fs.writeFileSync(conf, config(dir, port, opts))
    const proc = spawn(binary, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    proc.stderr!.on('data', (d) => { stderr += d })
    const server = running(proc, dir, port)
    if (await started(proc, port)) return server
    await server.stop()
    lastError = stderr.trim()
    if (!lastError.includes('Address already in use')) break
  }
  throw new Error(`nginx did not start: ${lastError}`)
}

async function started (proc: ChildProcess, port: number): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false
    if (await isListening(port)) return true
    await sleep(20)
  }
  return false
}

function running (proc: ChildProcess, dir: string, port: number): NginxServer {
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  // If the test process dies without stopping it; SIGKILL is enough for a single nginx process.
  const onExit = (): void => { proc.kill('SIGKILL') }
  process.once('exit', onExit)
  const accessLog = path.join(dir, 'access.log')
  let stopping: Promise<void> | undefined
  return {
    url: `http://127.0.0.1:${port}`,
    accessLog,
    requests: async (count = 0) => {
      const deadline = Date.now() + 5_000
      for (;;) {
        const text = fs.existsSync(accessLog) ? fs.readFileSync(accessLog, 'utf8') : ''
        const entries = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as AccessLogEntry)
        if (entries.length >= count || Date.now() > deadline) return entries
        await sleep(10)
      }
    },
    stop: () => {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGTERM') // nginx's fast shutdown
          const killed = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS)
          await exited
          clearTimeout(killed)
        }
        process.removeListener('exit', onExit)
        fs.rmSync(dir, { recursive: true, force: true })
      })()
      return stopping
    },
  }
}
