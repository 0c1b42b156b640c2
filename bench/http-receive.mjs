#!/usr/bin/env node
/**
 * CPU-seconds per GB of receiving ranged GETs, by HTTP client (issue 15): node:http (what remote reads used before),
 * undici's request and dispatch APIs (when `undici` can be imported: it is no dependency of packer; `npm install
 * --no-save undici@7` to include it), and packer's own src/net/http1-client.ts, reading into its own buffer and, as the
 * fetch threads do, straight into the caller's memory. After `npm run build`:
 *   node bench/http-receive.mjs --url http://127.0.0.1:PORT/FILE [--size-mib 1,4,16] [--total-mib 512]
 * FILE: any file of at least 64 MiB on a server that serves byte ranges (nginx, `packer serve`). Each client runs in a
 * process of its own, two GETs in flight, each piece copied into a preallocated destination (or read there).
 */
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }
const URL_ = opt('--url')
const SIZES = opt('--size-mib', '1,4,16').split(',').map(Number)
const TOTAL = Number(opt('--total-mib', '512')) << 20
const CLIENT = opt('--client')
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

async function fileSize (url) {
  return await new Promise((resolve, reject) => http.request(url, { method: 'HEAD' }, (res) => { res.resume(); resolve(Number(res.headers['content-length'])) }).on('error', reject).end())
}

/** One client's GET of [from, to) into `dest`. */
async function clients () {
  const u = new URL(URL_)
  const headers = (from, to) => ({ range: `bytes=${from}-${to - 1}`, 'accept-encoding': 'identity' })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  const { http1Get } = await import(pathToFileURL(path.join(ROOT, 'dist/net/http1-client.js')).href)
  const t = { connect: 10_000, firstByte: 30_000, stall: 30_000 }
  const own = (placed) => (from, to, dest) => new Promise((resolve, reject) => {
    let got = 0
    http1Get(u, headers(from, to), t, {
      head: () => {},
      piece: (p) => { if (p.buffer !== dest.buffer) p.copy(dest, got); got += p.length },
      end: () => got === to - from ? resolve() : reject(new Error('short')),
      error: reject,
      into: placed ? (max) => dest.subarray(got, got + max) : undefined,
    })
  })
  const all = {
    'node:http': (from, to, dest) => new Promise((resolve, reject) => {
      http.get(u, { agent, headers: headers(from, to) }, (res) => {
        let got = 0
        res.on('data', (p) => { p.copy(dest, got); got += p.length })
        res.on('end', () => got === to - from ? resolve() : reject(new Error('short')))
      }).on('error', reject)
    }),
    'packer http1-client': own(false),
    'packer http1-client, into': own(true),
  }
  try {
    const { request, Agent } = await import('undici')
    const dispatcher = new Agent({ connections: 4 })
    all['undici request'] = async (from, to, dest) => {
      const { body } = await request(URL_, { dispatcher, headers: headers(from, to) })
      let got = 0
      for await (const p of body) { p.copy(dest, got); got += p.length }
      if (got !== to - from) throw new Error('short')
    }
    all['undici dispatch'] = (from, to, dest) => new Promise((resolve, reject) => {
      let got = 0
      dispatcher.dispatch({ origin: u.origin, path: u.pathname, method: 'GET', headers: headers(from, to) }, {
        onConnect () {}, onHeaders () { return true }, onData (p) { p.copy(dest, got); got += p.length; return true },
        onComplete () { got === to - from ? resolve() : reject(new Error('short')) }, onError: reject,
      })
    })
  } catch {}
  return all
}

async function measure (name, sizeMib) {
  const fn = (await clients())[name]
  const size = sizeMib << 20
  const file = await fileSize(URL_)
  const dest = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)]
  let at = 0
  let done = 0
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(dest.map(async (d) => {
    while (done < TOTAL) {
      const from = at
      at = (at + size) % (file - size)
      done += size
      await fn(from, from + size, d)
    }
  }))
  const c = process.cpuUsage(c0)
  const gb = TOTAL / 1e9
  console.log(`  ${name.padEnd(26)} ${String(sizeMib).padStart(2)} MiB GETs: ${((c.user + c.system) / 1e6 / gb).toFixed(2)} CPU-s/GB (user ${(c.user / 1e6 / gb).toFixed(2)}, sys ${(c.system / 1e6 / gb).toFixed(2)}), ${(TOTAL / 1e6 / ((performance.now() - t0) / 1000)).toFixed(0)} MB/s`)
  process.exit(0)
}

if (URL_ === undefined) {
  console.error('usage: node bench/http-receive.mjs --url http://127.0.0.1:PORT/FILE [--size-mib 1,4,16] [--total-mib 512]')
  process.exit(2)
} else if (CLIENT !== undefined) {
  await measure(CLIENT, SIZES[0])
} else {
  const names = Object.keys(await clients())
  console.log(`ranged GETs of ${URL_}, ${TOTAL >> 20} MiB per client and size, load ${(await import('node:os')).loadavg()[0].toFixed(1)}:`)
  for (const size of SIZES) {
    for (const name of names) execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--url', URL_, '--size-mib', String(size), '--total-mib', String(TOTAL >> 20), '--client', name], { stdio: 'inherit' })
  }
  process.exit(0)
}
