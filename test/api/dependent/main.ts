// A dependent's program (test/api/package.test.ts installs the packed package and runs this): it uses the API by
// the package name only, and prints what it found as one JSON object for the test to check.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import {
  PackerError, commpBackend, keygen, list, mount, pack, pieces, unpack, verify, type PackEvent, type SetEntry,
} from 'filecoin-packer'

const [src, work] = process.argv.slice(2)
const run = promisify(execFile)

/** Every file under `dir` by relative path, with its bytes (symlinks by target). */
function tree (dir: string, rel = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const d of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, d.name)
    const abs = path.join(dir, r)
    if (d.isDirectory()) for (const [k, v] of tree(dir, r)) out.set(k, v)
    else out.set(r, d.isSymbolicLink() ? Buffer.from(`-> ${fs.readlinkSync(abs)}`) : fs.readFileSync(abs))
  }
  return out
}

function sameTree (a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k)?.equals(v) === true)
}

const key = await keygen(path.join(work, 'key.txt'))
const report: Record<string, unknown> = { backend: commpBackend() }
for (const encrypted of [true, false]) {
  const out = path.join(work, encrypted ? 'encrypted' : 'clear')
  const carEvents: string[] = []
  let lastProgress = 0
  const packed = await pack(src, {
    output: out,
    binSize: '2MiB',
    stateDir: path.join(work, 'state'),
    ...(encrypted ? { recipients: [key.recipient] } : { encrypt: false }),
    onEvent: (e: PackEvent) => {
      if (e.event === 'car') carEvents.push(e.pieceCid)
      else if (e.event === 'progress') lastProgress = e.bytes
    },
  })
  const keys = encrypted ? { identities: [key.identityFile] } : {}
  const entries: SetEntry[] = []
  for await (const e of list(out, keys)) entries.push(e)
  const verified = await verify(out, { ...keys, decrypt: encrypted })
  const dest = path.join(work, `restored-${encrypted ? 'encrypted' : 'clear'}`)
  const restored = await unpack(out, { ...keys, output: dest })
  report[encrypted ? 'encrypted' : 'clear'] = {
    files: packed.files,
    bytes: packed.bytes,
    progressBytes: lastProgress,
    carEvents,
    pieces: (await pieces(out)).map((p) => p.pieceCid),
    entries: entries.map((e) => `${e.type} ${e.path}${e.size !== undefined ? ` ${e.size}` : ''}`),
    verified: verified.ok,
    restoredFiles: restored.files,
    sameBytes: sameTree(tree(src), tree(dest)),
  }
}

const mnt = path.join(work, 'mnt')
fs.mkdirSync(mnt)
const mounted = await mount(path.join(work, 'encrypted'), mnt, { identities: [key.identityFile] })
try {
  // Read through the mount from another process: this one never touches it with synchronous calls.
  const { stdout } = await run('sha256sum', [path.join(mnt, 'big.bin')])
  report.mountedSha256 = stdout.split(' ')[0]
} finally {
  await mounted.unmount()
}
await mounted.closed

const wrongKey = await unpack(path.join(work, 'encrypted'), { output: path.join(work, 'no'), identities: [] })
  .then(() => null, (e: unknown) => e instanceof PackerError ? { code: e.code, exitCode: e.exitCode } : String(e))
report.wrongKey = wrongKey

const internal = 'filecoin-packer/dist/pack/packer.js'
report.internalImport = await import(internal).then(() => 'importable', (e: NodeJS.ErrnoException) => e.code)
process.stdout.write(JSON.stringify(report) + '\n')
