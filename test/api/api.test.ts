import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  PackerError, commpBackend, keygen, list, listMissing, mount, openSet, pack, pieces, unpack, unmount, verify,
  type PackEvent, type SetEntry, type UnpackEvent, type VerifyEvent,
} from '../../src/index.js'
import { describeTree, packer, packerOk, run, sha256, tmpDir } from '../helpers.js'
import { MiB, makeRoundTripTree } from '../fixtures.js'
import { isMounted, waitFor } from '../mount/mount-helpers.js'

/** The library API, called as a dependent would (src/index.ts), on real trees; compared with the CLI it serves. */
let src: string
let key: string
let keyText: string
let recipient: string
let set: string

beforeAll(async () => {
  src = tmpDir()
  await makeRoundTripTree(src)
  const work = tmpDir()
  const k = await keygen(path.join(work, 'key.txt'))
  key = k.identityFile
  keyText = fs.readFileSync(key, 'utf8')
  recipient = k.recipient
  set = path.join(work, 'set')
  await pack(src, { output: set, recipients: [recipient], binSize: '2MiB', stateDir: tmpDir() })
})

afterEach(() => { vi.restoreAllMocks() })

/** What a rejected promise was rejected with (fails the test if it resolved). */
async function failure (p: Promise<unknown>): Promise<PackerError> {
  const err = await p.then(() => null, (e: unknown) => e)
  expect(err).toBeInstanceOf(PackerError)
  return err as PackerError
}

/** The CLI's one error line for the same input, without its `packer: ` prefix. */
async function cliError (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null, line: string }> {
  const r = await packer(args, { env })
  return { code: r.code, line: r.stderr.trim().split('\n').pop()!.replace(/^packer: /, '') }
}

describe('pack', () => {
  it('sends the events --json prints, in the same order and with the same values, plus running totals', async () => {
    const events: PackEvent[] = []
    const out = path.join(tmpDir(), 'set')
    const stateDir = tmpDir()
    const r = await pack(src, { output: out, encrypt: false, binSize: 2 * MiB, stateDir, onEvent: (e) => events.push(e) })
    const cli = await packerOk(['pack', src, '-o', path.join(tmpDir(), 'set'), '--no-encrypt', '--bin-size', '2MiB', '--json', '--state-dir', tmpDir()])
    const printed = cli.stdout.trim().split('\n').map((l) => JSON.parse(l))
    const mine = events.filter((e) => e.event !== 'progress' && e.event !== 'scanning').map((e) => JSON.parse(JSON.stringify(e)))
    // --no-encrypt sets are byte-identical: every event is the same but the time taken.
    const noTime = (e: any): any => e.event === 'done' ? { ...e, seconds: 0 } : e
    expect(mine.map(noTime)).toEqual(printed.map(noTime))
    expect(mine.map((e) => e.event)).toEqual(['scan', ...mine.slice(1, -1).map((e) => e.event), 'done'])
    expect(mine.filter((e) => e.event === 'file')).toHaveLength(13)

    const progress = events.filter((e): e is Extract<PackEvent, { event: 'progress' }> => e.event === 'progress')
    for (let i = 1; i < progress.length; i++) expect(progress[i].bytes).toBeGreaterThanOrEqual(progress[i - 1].bytes)
    const last = progress[progress.length - 1]
    expect(last).toEqual({ event: 'progress', bytes: r.bytes, totalBytes: r.bytes, files: 13, totalFiles: 13 })

    expect(r).toMatchObject({ nothingToDo: false, files: 13, cars: r.pieces.length, resumed: null, skipped: [] })
    expect(r.pieces).toEqual(await pieces(out))
    const cars = events.filter((e): e is Extract<PackEvent, { event: 'car' }> => e.event === 'car')
    expect(cars.map((c) => c.pieceCid)).toEqual(r.pieces.map((p) => p.pieceCid))

    const again = await pack(src, { output: out, encrypt: false, binSize: 2 * MiB, stateDir })
    expect(again).toMatchObject({ nothingToDo: true, setId: r.setId, root: r.root })
  })

  it('passes warnings to onWarning and prints nothing itself', async () => {
    const tree = tmpDir()
    fs.writeFileSync(path.join(tree, 'f'), 'f')
    expect((await run('mkfifo', [path.join(tree, 'pipe')])).code).toBe(0)
    const writes = vi.spyOn(process.stderr, 'write')
    const stdout = vi.spyOn(process.stdout, 'write')
    const warnings: string[] = []
    const events: PackEvent[] = []
    const r = await pack(tree, { output: tmpDir(), encrypt: false, stateDir: tmpDir(), onWarning: (m) => warnings.push(m), onEvent: (e) => events.push(e) })
    expect(warnings).toEqual([expect.stringMatching(/pipe.*FIFO/i)])
    expect(events.filter((e) => e.event === 'file')).toEqual([{ event: 'file', path: 'f', bytes: 1 }])
    expect(r.files).toBe(1)
    expect(writes).not.toHaveBeenCalled()
    expect(stdout).not.toHaveBeenCalled()
  })

  it('throws PackerErrors with the CLI\'s codes and messages', async () => {
    let e = await failure(pack(src, { output: tmpDir(), binSize: 'lots', encrypt: false }))
    expect([e.code, e.exitCode]).toEqual(['USAGE', 2])
    expect(await cliError(['pack', src, '-o', tmpDir(), '--bin-size', 'lots', '--no-encrypt'])).toEqual({ code: 2, line: e.message })

    e = await failure(pack(src, { output: tmpDir(), encrypt: false, recipients: [recipient] }))
    expect([e.code, e.message]).toEqual(['USAGE', '--no-encrypt cannot be combined with -r, -R or --passphrase'])
    e = await failure(pack(src, { output: tmpDir() }))
    expect(e.message).toMatch(/^no recipient: give -R certificate.pem/)
    e = await failure(pack(src, { output: tmpDir(), jobs: 0, encrypt: false }))
    expect(e.message).toBe('--jobs 0: give a whole number from 1 to 256')
    e = await failure(pack(src, { output: tmpDir(), passphrase: '' }))
    expect([e.code, e.exitCode, e.message]).toEqual(['CRYPTO', 1, 'the passphrase is empty; choose a non-empty passphrase'])
    e = await failure(pack(path.join(src, 'nothing-here'), { output: tmpDir(), encrypt: false }))
    expect(e.code).toBe('SOURCE')
  })
})

describe('reading a set', () => {
  it('list is an async iterable of typed entries, the same as ls --json, and stops early on break', async () => {
    const listing = list(set, { identities: [key] })
    expect(Array.isArray(listing)).toBe(false)
    expect(typeof listing[Symbol.asyncIterator]).toBe('function')
    const entries: SetEntry[] = []
    for await (const e of listing) entries.push(e)
    const cli = (await packerOk(['ls', set, '--json', '-i', key])).stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(entries.map((e) => e.path)).toEqual(cli.map((c) => c.path))
    const tree = describeTree(src)
    expect(entries).toHaveLength(tree.size)
    for (const e of entries) {
      const t = tree.get(Buffer.from(e.pathBytes).toString('latin1'))!
      expect([e.type, e.mtimeNs]).toEqual([t.type, t.mtimeNs])
      if (e.type === 'file') expect([e.mode, e.size]).toEqual([t.mode, t.size])
      if (e.type === 'symlink') expect(Buffer.from(e.targetBytes!).toString('latin1')).toBe(t.target)
    }
    expect(entries.find((e) => e.pathBytes.includes(0xff))?.path).toBe('f\\xff\\xfe.bin')

    let seen = 0
    for await (const e of list(set, { identities: [key], path: '/deep/' })) { seen++; expect(e.path).toBe('deep'); break }
    expect(seen).toBe(1)
    const below = []
    for await (const e of list(set, { identities: [keyText], path: 'deep/a' })) below.push(e.path)
    expect(below).toEqual(['deep/a', 'deep/a/b', 'deep/a/b/c', 'deep/a/b/c/leaf.txt'])

    const it = list(set, { identities: [key], path: 'not/there' })[Symbol.asyncIterator]()
    const e = await failure(it.next())
    expect([e.code, e.message]).toEqual(['USAGE', `not/there is not in the set (see 'packer ls ${set}')`])
    const noKey = await failure(list(set)[Symbol.asyncIterator]().next())
    expect(noKey.code).toBe('NO_IDENTITY')
    expect((await cliError(['ls', set])).line).toBe(noKey.message)
  })

  it('openSet reads the manifest, entries and any file\'s bytes, whole, streamed or a range', async () => {
    const s = await openSet(set, { identities: [keyText] })
    try {
      const manifest = JSON.parse(fs.readFileSync(path.join(set, 'manifest.json'), 'utf8'))
      expect(s.setId).toBe(manifest.table.cid)
      expect(s.manifest).toMatchObject({ setId: manifest.table.cid, root: manifest.root, encryption: { names: 'hidden', recipients: ['X25519'] } })
      expect(s.manifest.cars.map((c) => c.pieceCid)).toEqual(manifest.cars.map((c: any) => c.pieceCid))
      const big = fs.readFileSync(path.join(src, 'big/spans-cars.bin'))
      expect(sha256(Buffer.from(await s.readFile('big/spans-cars.bin')))).toBe(sha256(big))
      const parts: Uint8Array[] = []
      for await (const p of s.stream('/big/spans-cars.bin')) parts.push(p)
      expect(Buffer.concat(parts).equals(big)).toBe(true)
      expect(Buffer.from(await s.read('big/spans-cars.bin', MiB - 7, 100_000)).equals(big.subarray(MiB - 7, MiB - 7 + 100_000))).toBe(true)
      expect((await s.entry('empty-dir'))?.type).toBe('dir')
      expect(await s.entry('nope')).toBeUndefined()
      const e = await failure(s.readFile('deep'))
      expect([e.code, e.message]).toEqual(['USAGE', 'deep is a directory, not a file'])
      let n = 0
      for await (const _ of s.entries()) n++
      expect(n).toBe(describeTree(src).size)
    } finally { await s.close() }
    expect((await failure(openSet(set, { identities: [key], expect: 'bafkreiwrong' }))).code).toBe('CORRUPT')
  })

  it('unpack restores byte for byte with events; a missing CAR is a MISSING_CAR error after the others are restored', async () => {
    const dest = tmpDir()
    const events: UnpackEvent[] = []
    const r = await unpack(set, { identities: [key], output: dest, onEvent: (e) => events.push(e) })
    expect(describeTree(dest)).toEqual(describeTree(src))
    expect(r).toMatchObject({ files: 13, dirs: 8, symlinks: 2, already: 0, failed: 0 })
    const done = events[events.length - 1]
    expect(done).toEqual({ event: 'done', ...r })
    expect(events.filter((e) => e.event === 'file')).toHaveLength(13)
    const progress = events.filter((e) => e.event === 'progress')
    expect(progress[progress.length - 1]).toEqual({ event: 'progress', bytes: r.bytes, totalBytes: r.bytes, files: 13, totalFiles: 13 })

    const broken = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(broken, n))
    const gone = (await pieces(set))[1].carFile
    fs.rmSync(path.join(broken, gone))
    const warnings: string[] = []
    const partial = tmpDir()
    const e = await failure(unpack(broken, { identities: [key], output: partial, onWarning: (m) => warnings.push(m) }))
    expect(e.code).toBe('MISSING_CAR')
    expect(e.message).toMatch(/^\d+ file\(s\) could not be restored \(first: .*\); the others are in /)
    expect(warnings.length).toBeGreaterThan(0)
    expect(warnings.join('\n')).toContain(gone.replace(/\.car$/, ''))
    expect(fs.readFileSync(path.join(partial, 'one-byte'), 'utf8')).toBe('x')
    const missing = []
    for await (const m of listMissing(broken, { identities: [key] })) missing.push(m)
    expect(missing.length).toBeGreaterThan(0)
    for (const m of missing) expect(m.cars).toEqual([gone])
  })

  it('verify reports every CAR (and file) as events and a result; damage is ok: false, not an exception', async () => {
    const events: VerifyEvent[] = []
    const r = await verify(set, { identities: [key], decrypt: true, onEvent: (e) => events.push(e) })
    expect(r).toMatchObject({ ok: true, badCars: 0, files: 13, badFiles: 0 })
    expect(r.cars.map((c) => c.car)).toEqual((await pieces(set)).map((p) => p.carFile))
    expect(events.filter((e) => e.event === 'file').every((e) => e.event === 'file' && e.ok)).toBe(true)

    const damaged = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(damaged, n))
    const victim = r.cars[0].car
    const fd = fs.openSync(path.join(damaged, victim), 'r+')
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, 5000)
    byte[0] ^= 0xff // flipped: writing a fixed value left the (random) CAR unchanged 1 time in 256
    fs.writeSync(fd, byte, 0, 1, 5000)
    fs.closeSync(fd)
    const seen: VerifyEvent[] = []
    const bad = await verify(damaged, { identities: [key], onEvent: (e) => seen.push(e) })
    expect(bad.ok).toBe(false)
    expect(bad.badCars).toBe(1)
    expect(seen.find((e) => e.event === 'car' && e.car === victim)).toMatchObject({ status: 'corrupt' })
    // The files with blocks in the damaged CAR, one event each, after every CAR's.
    const inFirst: string[] = []
    for await (const e of list(set, { identities: [key] })) if (e.cars?.includes(0)) inFirst.push(e.path)
    expect(inFirst.length).toBeGreaterThan(0)
    const affected = seen.flatMap((e) => e.event === 'affected' ? [e] : [])
    expect(affected).toEqual(inFirst.map((file) => ({ event: 'affected', file, cars: [victim] })))
    expect(seen.findIndex((e) => e.event === 'affected')).toBeGreaterThan(seen.findLastIndex((e) => e.event === 'car'))
    expect(bad.affected).toBe(inFirst.length)
    // Without a key the CARs are still checked; the files affected are then unknown (null), and a warning says why.
    const unnamed: VerifyEvent[] = []
    const warnings: string[] = []
    const blind = await verify(damaged, { onEvent: (e) => unnamed.push(e), onWarning: (w) => warnings.push(w) })
    expect([blind.badCars, blind.affected]).toEqual([1, null])
    expect(unnamed.find((e) => e.event === 'car' && e.car === victim)).toMatchObject({ status: 'corrupt' })
    expect(unnamed.some((e) => e.event === 'affected')).toBe(false)
    expect(warnings).toEqual(['give -i FILE (or --passphrase) to name the files affected'])
    const e = await failure(verify(set, { decrypt: true }))
    expect([e.code, e.message]).toEqual(['USAGE', '--decrypt needs the identity: give -i FILE or --passphrase'])
  })

  it('a passphrase set opens with a passphrase string or function, and the native CommP was used', async () => {
    const out = path.join(tmpDir(), 'set')
    await pack(src, { output: out, passphrase: async () => 'correct horse', binSize: '2MiB', stateDir: tmpDir() })
    const dest = tmpDir()
    await unpack(out, { passphrase: 'correct horse', output: dest })
    expect(describeTree(dest)).toEqual(describeTree(src))
    const e = await failure(unpack(out, { passphrase: 'wrong', output: tmpDir() }))
    expect(e.code).toBe('NO_IDENTITY')
    expect((await cliError(['unpack', out, '-o', tmpDir(), '--passphrase'], { PACKER_PASSPHRASE: 'wrong' })).line).toBe(e.message)
    expect(commpBackend()).toBe('native')
  })
})

describe('mount', () => {
  it('mounts in a child process, serves files to other processes, and unmounts', async () => {
    const mnt = tmpDir('packer-mnt-')
    const m = await mount(set, mnt, { identities: [key] })
    try {
      expect(m.mountpoint).toBe(mnt)
      expect(await isMounted(mnt)).toBe(true)
      // Read through the mount from another process, never with synchronous fs calls from this one.
      const r = await run('sha256sum', [path.join(mnt, 'big/spans-cars.bin'), path.join(mnt, 'unicode/naïve café ✓ 日本語.txt')])
      expect(r.stdout.split('\n').slice(0, 2).map((l) => l.split(' ')[0])).toEqual([
        sha256(fs.readFileSync(path.join(src, 'big/spans-cars.bin'))), sha256('unicode name\n')])
      await m.unmount()
      await m.closed
      expect(await waitFor(async () => !(await isMounted(mnt)), 5000)).toBe(true)
    } finally { await releaseMount(mnt) }
  })

  it('takes keys as text (never in argv) and a passphrase; an outside unmount resolves closed', async () => {
    const out = path.join(tmpDir(), 'set')
    await pack(src, { output: out, passphrase: 'mount me', binSize: '2MiB', stateDir: tmpDir() })
    for (const [dir, keys] of [[set, { identities: [keyText] }], [out, { passphrase: 'mount me' }]] as const) {
      const mnt = tmpDir('packer-mnt-')
      const m = await mount(dir, mnt, keys)
      try {
        const ps = await run('ps', ['-eo', 'args'])
        expect(ps.stdout).not.toContain('AGE-SECRET-KEY')
        expect(ps.stdout).not.toContain('mount me')
        expect((await run('cat', [path.join(mnt, 'deep/a/b/c/leaf.txt')])).stdout).toBe('deep leaf\n')
        await unmount(mnt)
        await m.closed
        expect(await isMounted(mnt)).toBe(false)
        await m.unmount() // already gone: a no-op
      } finally { await releaseMount(mnt) }
    }
  })

  it('rejects with the mount process\'s error, code and all; passes its log lines to onWarning', async () => {
    const mnt = tmpDir('packer-mnt-')
    let e = await failure(mount(set, mnt))
    expect(e.code).toBe('NO_IDENTITY')
    const other = await keygen(path.join(tmpDir(), 'other.txt'))
    e = await failure(mount(set, mnt, { identities: [other.identityFile] }))
    expect([e.code, e.exitCode]).toEqual(['NO_IDENTITY', 1])
    e = await failure(mount(set, path.join(mnt, 'absent'), { identities: [key] }))
    expect(e.code).toBe('MOUNT')
    expect(e.message).toMatch(/absent/)
    e = await failure(mount(set, mnt, { identities: [key], cacheSize: '1KiB' }))
    expect([e.code, e.exitCode, e.message]).toEqual(['USAGE', 2, '--cache-size: 1KiB is too small; give at least 4.00 MiB'])
    e = await failure(mount(set, mnt, { identities: ['AGE-SECRET-KEY-1NOTAKEY'] }))
    expect(e.code).toBe('CRYPTO')
    expect(e.message).toMatch(/^identity 1 \(key text\)/)
    expect(await isMounted(mnt)).toBe(false)

    const broken = tmpDir()
    for (const n of fs.readdirSync(set)) fs.copyFileSync(path.join(set, n), path.join(broken, n))
    const s = await openSet(set, { identities: [key] })
    // Its first CAR: the last one holds the file table too (then nothing could be mounted).
    const gone = s.manifest.cars[(await s.entry('big/spans-cars.bin'))!.cars![0]!].carFile
    await s.close()
    fs.rmSync(path.join(broken, gone))
    const warnings: string[] = []
    const m = await mount(broken, mnt, { identities: [key], onWarning: (w) => warnings.push(w) })
    try {
      const r = await run('cat', [path.join(mnt, 'big/spans-cars.bin')])
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/Input\/output error/)
      expect(await waitFor(async () => warnings.some((w) => w.includes(gone)), 5000)).toBe(true)
    } finally {
      await m.unmount()
      await releaseMount(mnt)
    }
  })
})

/** For finally: a mount a failed test left behind is detached. */
async function releaseMount (mnt: string): Promise<void> {
  if (await isMounted(mnt)) await run('fusermount', ['-uz', mnt])
}
