import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytes, packerOk, packerWithPreload, tmpDir } from '../helpers.js'

/**
 * A command left waiting on something that can never happen (nothing left in Node's event loop) must not pass for
 * a success: Node alone would exit with code 0 and no output.
 */
describe('a command that stops before it finishes', () => {
  it('exits 70 with one line, not 0 in silence', async () => {
    const src = tmpDir()
    fs.writeFileSync(path.join(src, 'a.bin'), bytes(1000, 3))
    const set = tmpDir()
    await packerOk(['pack', src, '-o', set, '--no-encrypt'])
    // Preloaded into the CLI: unpack's work directory is never made, and nothing else is pending.
    const dest = path.join(tmpDir(), 'dest')
    const r = await packerWithPreload("import fsp from 'node:fs/promises'\nfsp.mkdtemp = () => new Promise(() => {})\n", ['unpack', set, '-o', dest])
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe('packer: internal error: the command stopped before it finished (nothing was left to wait for); rerun it, and please report this\n')
    expect(r.code).toBe(70)
  })
})
