import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, bytes, packerOk, tmpDir } from '../helpers.js'

const MiB = 1024 * 1024

/** Runs packer on a pseudo-terminal (util-linux `script`), as a user at a terminal would, and returns what it drew. */
function onTerminal (args: string[]): { status: number | null, screen: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, PACKER_STATE_DIR: tmpDir(), COLUMNS: '200' }, timeout: 60_000 })
  return { status: r.status, screen: r.stdout.toString() }
}

function source (): string {
  const src = tmpDir()
  for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), bytes(MiB, i))
  return src
}

describe('progress', () => {
  it('on a terminal, pack, verify and unpack draw a bar with bytes, files, MB/s and ETA', async () => {
    const src = source()
    const out = tmpDir()
    const pack = onTerminal(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '8MiB'])
    expect(pack.status).toBe(0)
    expect(pack.screen).toMatch(/pack \[[#-]{24}\] +\d+% [\d.]+ \w+\/30.0 MiB +\d+\/30 files +\d+ MB\/s +ETA [\d:-]+/)
    expect(pack.screen).toMatch(/CAR \d+ done/)
    expect(pack.screen).toMatch(/packed 30 files \(30.0 MiB\)/)
    const verify = onTerminal(['verify', out])
    expect(verify.status).toBe(0)
    expect(verify.screen).toMatch(/verify \[[#-]{24}\]/)
    const unpack = onTerminal(['unpack', out, '-o', tmpDir()])
    expect(unpack.status).toBe(0)
    expect(unpack.screen).toMatch(/unpack \[[#-]{24}\] +\d+% .* +\d+\/30 files/)
  })

  it('with --quiet there is no bar and no summary; when stdout is not a terminal there is no bar', async () => {
    const src = source()
    const quiet = onTerminal(['pack', src, '-o', tmpDir(), '--no-encrypt', '--quiet'])
    expect(quiet.status).toBe(0)
    expect(quiet.screen.trim()).toBe('')
    const piped = await packerOk(['pack', src, '-o', tmpDir(), '--no-encrypt'], { env: { PACKER_STATE_DIR: tmpDir() } })
    expect(piped.stderr).toBe('')
    expect(piped.stdout).not.toMatch(/\[[#-]+\]/)
  })

  it('--json prints one JSON line per event: scan, each file, each CAR with its piece CID, done', async () => {
    const src = source()
    const out = tmpDir()
    const r = await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '8MiB', '--json'], { env: { PACKER_STATE_DIR: tmpDir() } })
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(events[0]).toEqual({ event: 'scan', files: 30, bytes: 30 * MiB })
    expect(events.filter((e) => e.event === 'file')).toHaveLength(30)
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(events.filter((e) => e.event === 'car').map((e) => e.pieceCid)).toEqual(manifest.cars.map((c: any) => c.pieceCid))
    const done = events[events.length - 1]
    expect(done).toMatchObject({ event: 'done', files: 30, bytes: 30 * MiB, cars: manifest.cars.length, root: manifest.root, setId: manifest.table.cid })
  })
})
