import type { Command } from 'commander'
import { PackerError } from '../errors.js'
import { DEFAULT_HOST, DEFAULT_MAX_REQUESTS, DEFAULT_PORT, DEFAULT_TIMEOUT_MS, serveSet, type AccessLogEntry } from '../serve/server.js'
import { out } from './output.js'

/** `HOST:PORT`, `[IPv6]:PORT` or `PORT`. */
function parseListen (text: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]:|([^:[\]]*):)?(\d+)$/.exec(text)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new PackerError('USAGE', `--listen: '${text}' is not HOST:PORT (e.g. 127.0.0.1:7777, [::1]:7777, 0.0.0.0:8080)`)
  return { host: m[1] ?? (m[2] || DEFAULT_HOST), port }
}

/** A number > 0 given as digits (`integer`: without a fraction). */
function positive (text: string, option: string, integer = false): number {
  const n = Number(text)
  if (!(integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text) || n <= 0) throw new PackerError('USAGE', `${option}: '${text}' is not a positive ${integer ? 'integer' : 'number'}`)
  return n
}

/**
 * One access-log line: client, time, request, status, bytes sent, duration; `aborted` when the response did not end,
 * and the error that ended it.
 */
function accessLine (e: AccessLogEntry): string {
  const request = JSON.stringify(e.url).slice(1, -1)
  return `${e.remote} [${e.time}] "${e.method} ${request}" ${e.status} ${e.bytes} ${e.ms}ms${e.complete ? '' : ' aborted'}${e.error !== undefined ? ` (${e.error})` : ''}`
}

/** `packer serve SETDIR`. */
export function addServeCommand (program: Command): void {
  program.command('serve').argument('<setdir>', 'directory with manifest.json, blocks.idx and the CARs')
    .description('serve a set over HTTP: pieces (/piece/{pieceCid}), an IPFS trustless gateway (/ipfs/{cid}) and the set\'s files; runs until Ctrl-C')
    .option('--listen <host:port>', 'address to listen on', `${DEFAULT_HOST}:${DEFAULT_PORT}`)
    .option('--cars <dir>', 'the CARs are in DIR, not beside manifest.json')
    .option('--max-requests <n>', 'requests answered at once; more get 429', String(DEFAULT_MAX_REQUESTS))
    .option('--timeout <seconds>', 'close a connection idle this long (and one whose request headers take longer)', String(DEFAULT_TIMEOUT_MS / 1000))
    .option('--json', 'the ready line and the access log as JSON lines')
    .option('-q, --quiet', 'no access log')
    .action(async (dir: string, o) => {
      const { host, port } = parseListen(o.listen)
      const log = o.quiet ? undefined : (e: AccessLogEntry): void => out(o.json ? JSON.stringify({ event: 'request', ...e }) : accessLine(e))
      const s = await serveSet(dir, {
        host,
        port,
        carDir: o.cars,
        maxRequests: positive(o.maxRequests, '--max-requests', true),
        timeoutMs: positive(o.timeout, '--timeout') * 1000,
        onRequest: log,
      })
      const stop = (): void => { void s.close().then(() => process.exit(0)) }
      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
      out(o.json
        ? JSON.stringify({ event: 'listening', url: s.url, setId: s.setId, cars: s.cars })
        : `serving set ${s.setId} (${s.cars} CAR(s)) at ${s.url}: /piece/{pieceCid}, /ipfs/{cid}, /manifest.json; Ctrl-C stops`)
    })
}
