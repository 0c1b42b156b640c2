import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { PackJournal, type JournalEntry, type JournalHeader, type JournalItem } from '../../src/pack/journal.js'
import { packer, packerOk, tmpDir } from '../helpers.js'

const HEADER: JournalHeader = { out: '/out', source: '/src', binSize: 1 << 20, encryption: 'none', names: 'clear' }

function entries (): JournalItem[] {
  const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
  const file = (p: string | Buffer, more: Partial<JournalEntry> = {}): JournalEntry => ({
    entry: { path: Buffer.from(p), type: 'file', mode: 0o640, mtimeNs: 1_700_000_000_000_000_001n, uid: 1000, gid: 100, size: 5, cid: 'bafkreia', storedSize: 5, cars: [0] },
    dagSize: 5, src: { dev: '2049', ino: '18446744073709551615', size: '5', mtimeNs: '1700000000000000001' }, records: [0, 1], ...more,
  })
  return [
    { dir: Buffer.alloc(0) },
    file('a.txt'),
    { entry: { path: Buffer.from('d'), type: 'dir', mode: 0o7777, mtimeNs: -1n, uid: 0, gid: 2 ** 32 - 1 } },
    { entry: { path: Buffer.from('l'), type: 'symlink', mode: 0o777, mtimeNs: 0n, uid: 0, gid: 0, target: Buffer.from([0x2e, 0xff, 0x2f]) } },
    { dir: Buffer.from('d') },
    // Not UTF-8, an mtime past 64 bits, encrypted and compressed, an S3 version, reused blocks.
    file(Buffer.from([0x64, 0x2f, 0xff, 0xfe]), {
      entry: { path: Buffer.from([0x64, 0x2f, 0xff, 0xfe]), type: 'file', mode: 0o600, mtimeNs: 10n ** 24n, uid: 1, gid: 2, size: 2 ** 53 - 1, cid: 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', storedSize: 3, cars: [2, 3, 70000], enc: { key, headerLength: 200 }, compression: 'zstd' },
      src: { dev: '0', ino: '0', size: '3', mtimeNs: '5', version: '"etag-ü"' }, refs: [7, 2 ** 40],
    }),
    { dir: Buffer.from('d/sub') },
    file('d/sub/' + 'n'.repeat(255)),
  ]
}

async function itemsOf (j: PackJournal): Promise<JournalItem[]> {
  const out: JournalItem[] = []
  for await (const item of j.items()) out.push(item)
  return out
}

async function write (j: PackJournal, items: JournalItem[]): Promise<void> {
  for (const item of items) {
    if ('dir' in item) await j.addDir(item.dir)
    else await j.addEntry(item)
  }
}

describe('pack journal', () => {
  it('gives back every directory and entry as written, and the CARs and drafts recorded', async () => {
    const j = await PackJournal.at(path.join(tmpDir(), 'pack'))
    await j.open(HEADER)
    const items = entries()
    await write(j, items.slice(0, 4))
    await j.addDraft('draft-1')
    const car = { file: 'x.car', pieceCid: 'baga', size: 10, rootCid: 'bafy' } as any
    await j.addCar(car)
    await write(j, items.slice(4))
    expect(await itemsOf(j)).toEqual(items)
    await j.close()
    const state = await (await PackJournal.at(j.base)).load()
    expect(state).toEqual({ header: HEADER, cars: [car], blockCounts: [0], drafts: ['draft-1'] })
  })

  it('many entries cross frames; a frame cut short by a crash ends the journal, and what the rerun continues is intact', async () => {
    const j = await PackJournal.at(path.join(tmpDir(), 'pack'))
    await j.open(HEADER)
    const many: JournalItem[] = []
    for (let i = 0; i < 20000; i++) many.push({ entry: { ...(entries()[1] as JournalEntry).entry, path: Buffer.from(`f${String(i).padStart(6, '0')}`) }, refs: [i] })
    await write(j, many)
    await j.addCar({ file: 'x.car' } as any)
    await j.close()
    expect(await itemsOf(j)).toEqual(many)

    // Cut the last bytes (a torn append), then more: the entries of the whole frames before stay.
    const file = `${j.base}.journal`
    const size = fs.statSync(file).size
    fs.truncateSync(file, size - 3)
    const cut = await itemsOf(j)
    expect(cut.length).toBeLessThan(many.length)
    expect(cut.length).toBeGreaterThan(0)
    expect(cut).toEqual(many.slice(0, cut.length))
    // A frame whose bytes were zeroed (a crash before its data reached the disk) ends it too.
    fs.appendFileSync(file, Buffer.alloc(4096))
    expect(await itemsOf(j)).toEqual(cut)
    expect((await (await PackJournal.at(j.base)).load())!.cars).toEqual([]) // the CAR's record was in the torn frame
  })
})

describe('pack with a journal of packer 0.1.0 (version 3, JSON lines)', () => {
  it('is refused in one line naming the state directory and what to do, and the journal is left as it was', async () => {
    const src = tmpDir()
    for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(src, `f${i}`), Buffer.alloc(300_000, i))
    const out = tmpDir()
    const stateDir = tmpDir('packer-state-')
    const env = { PACKER_STATE_DIR: stateDir }
    const killed = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env: { ...env, PACKER_FAULT: 'car-journaled:2' } })
    expect(killed.code).toBe(null)
    const name = fs.readdirSync(stateDir).find((n) => n.endsWith('.journal'))!
    const journal = path.join(stateDir, name)
    const first = JSON.parse(fs.readFileSync(journal, 'utf8').split('\n')[0]!)
    expect(first.version).toBe(4)
    // What packer 0.1.0 wrote: its header line, then JSON lines.
    const v3 = JSON.stringify({ ...first, version: 3 }) + '\n' + JSON.stringify({ dir: { path: '' } }) + '\n'
    fs.writeFileSync(journal, v3)

    const r = await packer(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toContain('made by an older packer (journal version 3')
    expect(r.stderr).toContain(`remove ${name.replace(/\.journal$/, '')}.* from the state directory ${stateDir}`)
    expect(fs.readFileSync(journal, 'utf8')).toBe(v3)

    // Doing what it says: the pack starts afresh and succeeds.
    for (const n of fs.readdirSync(stateDir)) fs.rmSync(path.join(stateDir, n), { recursive: true })
    for (const n of fs.readdirSync(out)) fs.rmSync(path.join(out, n), { recursive: true })
    await packerOk(['pack', src, '-o', out, '--no-encrypt', '--bin-size', '2MiB'], { env })
    await packerOk(['verify', out])
  })
})
