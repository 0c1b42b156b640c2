// An independent IPFS client for the tests: Helia fetches a UnixFS file by CID (and optionally a path inside a
// directory) from ONE trustless gateway, verifying every block's hash, and writes its bytes to stdout.
//
//   node test/servers/helia-fetch.mjs GATEWAY_URL CID [--path P] [--timeout-ms N] [--verified-fetch]
//
// Exits 0 with the bytes, or non-zero with one line on stderr. With --verified-fetch it asks @helia/verified-fetch
// for ipfs://CID[/P] instead of reading the file with @helia/unixfs, and writes one JSON line (the response's status
// and headers) before the body, exiting 0 whatever the status. It knows no other gateway or router: Helia's defaults
// (public delegated routers, recursive gateways; verified-fetch's own Helia with libp2p) are all replaced, and a TCP
// connection or DNS look-up for anything but the loopback address ends the process (exit 4). Runs under Node >= 22.19
// (test/servers/helia.ts).
import dns from 'node:dns'
import { syncBuiltinESMExports } from 'node:module'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { trustlessGateway } from '@helia/block-brokers'
import { createHeliaHTTP } from '@helia/http'
import { httpGatewayRouting } from '@helia/routers'
import { unixfs } from '@helia/unixfs'
import { CID } from 'multiformats/cid'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { path: { type: 'string' }, 'timeout-ms': { type: 'string', default: '30000' }, 'verified-fetch': { type: 'boolean' } },
})
if (positionals.length !== 2) fail(2, 'usage: helia-fetch.mjs GATEWAY_URL CID [--path P] [--timeout-ms N] [--verified-fetch]')
const [gateway, cidText] = positionals
const timeoutMs = Number(values['timeout-ms'])
if (!(timeoutMs > 0)) fail(2, `--timeout-ms must be a positive number of milliseconds, not ${values['timeout-ms']}`)

function fail (code, message) {
  process.stderr.write(`helia-fetch: ${message.replace(/\s+/g, ' ').trim()}\n`)
  process.exit(code)
}

// Every TCP client (fetch's too) connects through net.Socket, and names are looked up through node:dns: nothing may
// leave this machine.
const LOOPBACK = ['127.0.0.1', '::1', 'localhost']
const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  const options = Array.isArray(args[0]) ? args[0][0] : args[0]
  const { host = 'localhost', port, path } = typeof options === 'object'
    ? options
    : { port: args[0], host: typeof args[1] === 'string' ? args[1] : undefined }
  if (path == null && !LOOPBACK.includes(host)) {
    fail(4, `refused to connect to ${host}:${port}: this client talks to 127.0.0.1 only`)
  }
  return connect.apply(this, args)
}
for (const api of [dns, dns.promises, dns.Resolver.prototype, dns.promises.Resolver.prototype]) {
  for (const name of new Set([...Object.keys(api), ...Object.getOwnPropertyNames(api)])) {
    if (!/^(lookup|resolve|reverse)/.test(name) || typeof api[name] !== 'function') continue
    const original = api[name]
    api[name] = function (host, ...rest) {
      if (!LOOPBACK.includes(host)) fail(4, `refused to look up ${host} in the DNS: this client talks to 127.0.0.1 only`)
      return original.call(this, host, ...rest)
    }
  }
}
syncBuiltinESMExports()
process.on('uncaughtException', (err) => fail(1, err.message))
process.on('unhandledRejection', (err) => fail(1, err?.message ?? String(err)))

// Whatever Helia is doing (routing once ignored an abort signal), the process ends on time.
setTimeout(() => fail(3, `timed out after ${timeoutMs} ms fetching ${cidText} from ${gateway}`), timeoutMs)

async function write (chunk) {
  if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once('drain', resolve))
}

try {
  const helia = await createHeliaHTTP({
    // the gateway is http://127.0.0.1:PORT: insecure and local, which the broker refuses by default
    blockBrokers: [trustlessGateway({ allowInsecure: true, allowLocal: true })],
    routers: [httpGatewayRouting({ gateways: [gateway] })],
    // @helia/http's libp2p node carries a delegated router (https://delegated-ipfs.dev); no router above consults
    // it, and it goes all the same
    libp2p: { services: {} },
  })
  const signal = AbortSignal.timeout(timeoutMs)
  if (values['verified-fetch']) {
    // loaded only here: it takes seconds (it brings the whole `helia` package and libp2p)
    const { createVerifiedFetch } = await import('@helia/verified-fetch')
    // given a Helia node, verified-fetch makes none of its own (that one would have libp2p and public routers)
    const verifiedFetch = await createVerifiedFetch(helia)
    const path = (values.path ?? '').split('/').filter(Boolean).map(encodeURIComponent)
    const response = await verifiedFetch(['ipfs:/', CID.parse(cidText).toString(), ...path].join('/'), { signal })
    await write(JSON.stringify({ status: response.status, headers: Object.fromEntries(response.headers) }) + '\n')
    if (response.body !== null) for await (const chunk of response.body) await write(chunk)
  } else {
    for await (const chunk of unixfs(helia).cat(CID.parse(cidText), { path: values.path, signal })) await write(chunk)
  }
  await new Promise((resolve) => process.stdout.write('', resolve))
  await helia.stop()
  process.exit(0)
} catch (err) {
  // an AggregateError's message says only "from any gateway": its causes say why
  const causes = err.errors?.map((e) => e.message).join('; ')
  fail(1, causes ? `${err.message}: ${causes}` : err.message)
}
