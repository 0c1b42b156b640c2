import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, describeTree, tmpDir } from '../helpers.js'

/** Runs packer on a pseudo-terminal (util-linux `script`), typing each line of `typed` after a pause, as a person would. */
function typing (args: string[], typed: string[]): { status: number | null, screen: string } {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const env = { ...process.env, PACKER_STATE_DIR: tmpDir() }
  delete env.PACKER_PASSPHRASE
  const r = spawnSync('bash', ['-c', `(for l in "$@"; do sleep 1; printf '%s\\r' "$l"; done; sleep 1) | script -qec ${JSON.stringify(cmd)} /dev/null`, '_', ...typed],
    { env, timeout: 60_000 })
  return { status: r.status, screen: r.stdout.toString() }
}

describe('a passphrase typed on the terminal', () => {
  it('pack asks twice (without echo), unpack once; the set round-trips', () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'secret.txt'), 'typed passphrase\n')
    const out = path.join(tmpDir(), 'set')
    const p = typing(['pack', src, '-o', out, '--passphrase'], ['tty pass 1', 'tty pass 1'])
    expect(p.status).toBe(0)
    expect(p.screen).toMatch(/Passphrase: [\s\S]*Passphrase again: /)
    expect(p.screen).not.toContain('tty pass 1')
    const dest = tmpDir()
    const u = typing(['unpack', out, '-o', dest, '--passphrase'], ['tty pass 1'])
    expect(u.status).toBe(0)
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('two different passphrases: refused, nothing written', () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'f'), 'f')
    const out = path.join(tmpDir(), 'set')
    const p = typing(['pack', src, '-o', out, '--passphrase'], ['one', 'two'])
    expect(p.status).toBe(2)
    expect(p.screen).toMatch(/the two passphrases differ; nothing was written/)
    expect(fs.existsSync(out)).toBe(false)
  })
})
