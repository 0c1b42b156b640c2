import http from 'node:http'
import https from 'node:https'
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent'
import { PackerError } from '../errors.js'

/**
 * The proxy a request to `url` goes through, read from the environment as curl reads it (the AWS SDK reads none of
 * it): https_proxy for https URLs, http_proxy for http, all_proxy for either, each also in capitals; no_proxy lists
 * hosts (each with its subdomains, optionally `:port`) reached directly, `*` for all. Loopback is always reached
 * directly, whatever the environment says: a local store is never sent to a proxy.
 */
export function proxyFor (url: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '')
  if (isLoopback(host)) return undefined
  const port = url.port || (url.protocol === 'https:' ? '443' : '80')
  if (bypassed(host, port, env.no_proxy ?? env.NO_PROXY ?? '')) return undefined
  const scheme = url.protocol === 'https:' ? 'https_proxy' : 'http_proxy'
  const name = [scheme, scheme.toUpperCase(), 'all_proxy', 'ALL_PROXY'].find((n) => (env[n] ?? '') !== '')
  if (name === undefined) return undefined
  const value = env[name] as string
  let proxy: URL | undefined
  try {
    // curl takes a bare host:port as an http proxy
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`)
  } catch {}
  if (proxy === undefined || (proxy.protocol !== 'http:' && proxy.protocol !== 'https:')) {
    throw new PackerError('USAGE', `${name} is not an http(s) proxy URL; set it to e.g. http://proxy.example:3128, or unset it`, { subject: name })
  }
  return proxy
}

function isLoopback (host: string): boolean {
  // URL writes an IPv4-mapped IPv6 address in hex: [::ffff:127.0.0.1] is ::ffff:7f00:1
  return host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host === '::1' || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host)
}

function bypassed (host: string, port: string, noProxy: string): boolean {
  return noProxy.split(/[\s,]+/).filter(Boolean).some((entry) => {
    if (entry === '*') return true
    const { name, port: only } = splitHostPort(entry.toLowerCase())
    if (only !== undefined && only !== port) return false
    const domain = name.replace(/^\*?\./, '')
    return host === domain || host.endsWith(`.${domain}`)
  })
}

/** "host", "host:port", "[v6]", "[v6]:port", or a bare IPv6 address (whose colons are no port). */
function splitHostPort (entry: string): { name: string, port?: string } {
  const bracketed = /^\[([^\]]*)\](?::(\d+))?$/.exec(entry)
  if (bracketed !== null) return { name: bracketed[1], port: bracketed[2] }
  const withPort = /^([^:]*):(\d+)$/.exec(entry)
  return withPort !== null ? { name: withPort[1], port: withPort[2] } : { name: entry }
}

/** A keep-alive agent for requests to `url`'s scheme, through the proxy proxyFor gives it (none for loopback). */
export function proxiedAgent (url: URL, options: https.AgentOptions): http.Agent {
  const proxy = proxyFor(url)
  if (url.protocol === 'https:') return proxy !== undefined ? new HttpsProxyAgent({ ...options, proxy }) : new https.Agent(options)
  return proxy !== undefined ? new HttpProxyAgent({ ...options, proxy }) : new http.Agent(options)
}
