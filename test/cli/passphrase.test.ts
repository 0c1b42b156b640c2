import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, describeTree, tmpDir } from '../helpers.js'

/**
 * Runs packer on a pseudo-terminal (util-linux `script`) and types each line of `typed` once the next prompt
 * ("Passphrase…: ") is on the screen, as a person would: typing before the prompt would echo (the terminal is still
 * in cooked mode), however slow the machine.
 */
async function typing (args: string[], typed: string[]): Promise<{ status: number | null, screen: string }> {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const env = { ...process.env, PACKER_STATE_DIR: tmpDir() }
  delete env.PACKER_PASSPHRASE
  const child = spawn('script', ['-qec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'inherit'] })
  let screen = ''
  let prompts = 0
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  child.stdout.on('data', (d: Buffer) => {
    screen += d.toString()
    const seen = screen.match(/Passphrase[^:\n]*: /g)?.length ?? 0
    while (prompts < seen && prompts < typed.length) child.stdin.write(`${typed[prompts++]}\r`)
  })
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  clearTimeout(timer)
  return { status, screen }
}

describe('a passphrase typed on the terminal', () => {
  it('pack asks twice (without echo), unpack once; the set round-trips', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'secret.txt'), 'typed passphrase\n')
    const out = path.join(tmpDir(), 'set')
    const p = await typing(['pack', src, '-o', out, '--passphrase'], ['tty pass 1', 'tty pass 1'])
    expect(p.status).toBe(0)
    expect(p.screen).toMatch(/Passphrase: [\s\S]*Passphrase again: /)
    expect(p.screen).not.toContain('tty pass 1')
    const dest = tmpDir()
    const u = await typing(['unpack', out, '-o', dest, '--passphrase'], ['tty pass 1'])
    expect(u.status).toBe(0)
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('two different passphrases: refused, nothing written', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'f'), 'f')
    const out = path.join(tmpDir(), 'set')
    const p = await typing(['pack', src, '-o', out, '--passphrase'], ['one', 'two'])
    expect(p.status).toBe(2)
    expect(p.screen).toMatch(/the two passphrases differ; nothing was written/)
    expect(fs.existsSync(out)).toBe(false)
  })
})
