import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, run, tmpDir } from '../helpers.js'
import { startNginx } from './nginx.js'
import { isListening } from './ports.js'

// Proxy variables as a user behind a proxy has them: nothing here may go through it (it does not exist).
const PROXY_ENV = { HTTP_PROXY: 'http://127.0.0.1:9', HTTPS_PROXY: 'http://127.0.0.1:9', http_proxy: 'http://127.0.0.1:9', NO_PROXY: '', no_proxy: '' }

function servedTree (): { root: string, data: Buffer } {
  const root = tmpDir()
  const data = bytes(1 << 20, 7)
  fs.mkdirSync(path.join(root, 'sub dir'))
  fs.writeFileSync(path.join(root, 'sub dir', 'data.bin'), data)
  return { root, data }
}

describe('nginx started by a test', () => {
  it('serves byte ranges to curl and fetch, answers HEAD, logs each request, and leaves nothing listening', async () => {
    const { root, data } = servedTree()
    const server = await startNginx({ root })
    const port = Number(new URL(server.url).port)
    try {
      const url = `${server.url}/sub%20dir/data.bin`
      // curl honours proxy variables; --noproxy '*' is how a caller keeps loopback off the proxy.
      const out = path.join(tmpDir(), 'range')
      const curl = await run('curl', ['-sS', '--noproxy', '*', '-r', '0-99', '-o', out, '-w', '%{http_code}', url], { env: PROXY_ENV })
      expect(curl.stderr).toBe('')
      expect(curl.stdout).toBe('206')
      expect(fs.readFileSync(out).equals(data.subarray(0, 100))).toBe(true)

      // Node 20's fetch (undici) never reads proxy variables.
      Object.assign(process.env, PROXY_ENV)
      const res = await fetch(url, { headers: { Range: 'bytes=1000-1999' } })
      expect(res.status).toBe(206)
      expect(res.headers.get('content-range')).toBe(`bytes 1000-1999/${data.length}`)
      expect(res.headers.get('content-encoding')).toBeNull()
      expect(Buffer.from(await res.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true)

      const tail = await fetch(url, { headers: { Range: 'bytes=-10', 'Accept-Encoding': 'gzip' } })
      expect(tail.status).toBe(206)
      expect(tail.headers.get('content-encoding')).toBeNull()
      expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(-10))).toBe(true)

      const head = await fetch(url, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-length')).toBe(String(data.length))
      expect(head.headers.get('accept-ranges')).toBe('bytes')

      expect((await fetch(`${server.url}/missing`)).status).toBe(404)
      // no listing unless asked for
      expect((await fetch(`${server.url}/sub%20dir/`)).status).toBe(403)

      expect(await server.requests(6)).toEqual([
        { method: 'GET', path: '/sub%20dir/data.bin', range: 'bytes=0-99', status: 206, bytes: 100 },
        { method: 'GET', path: '/sub%20dir/data.bin', range: 'bytes=1000-1999', status: 206, bytes: 1000 },
        { method: 'GET', path: '/sub%20dir/data.bin', range: 'bytes=-10', status: 206, bytes: 10 },
        { method: 'HEAD', path: '/sub%20dir/data.bin', range: '', status: 200, bytes: 0 },
        { method: 'GET', path: '/missing', range: '', status: 404, bytes: expect.any(Number) },
        { method: 'GET', path: '/sub%20dir/', range: '', status: 403, bytes: expect.any(Number) },
      ])
    } finally {
      for (const name of Object.keys(PROXY_ENV)) delete process.env[name]
      await server.stop()
    }
    expect(await isListening(port)).toBe(false)
    await server.stop() // a second stop is harmless
  })

  it('lists directories with autoindex and delays each answer by delayMs', async () => {
    const { root, data } = servedTree()
    const server = await startNginx({ root, autoindex: true, delayMs: 300 })
    try {
      const listing = await (await fetch(`${server.url}/sub%20dir/`)).text()
      expect(listing).toContain('<a href="data.bin">data.bin</a>')
      const started = performance.now()
      const res = await fetch(`${server.url}/sub%20dir/data.bin`, { headers: { Range: 'bytes=5-9' } })
      expect(Buffer.from(await res.arrayBuffer()).equals(data.subarray(5, 10))).toBe(true)
      expect(performance.now() - started).toBeGreaterThanOrEqual(290)
      expect(res.status).toBe(206)
    } finally {
      await server.stop()
    }
  })

  it('runs side by side with another, while the Debian package\'s own server (port 80) stays off', async () => {
    const { root } = servedTree()
    const [a, b] = await Promise.all([startNginx({ root }), startNginx({ root })])
    try {
      expect(a.url).not.toBe(b.url)
      expect(await isListening(80)).toBe(false)
      expect((await fetch(`${b.url}/sub%20dir/data.bin`, { method: 'HEAD' })).status).toBe(200)
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  })
})
