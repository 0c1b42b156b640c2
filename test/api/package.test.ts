import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, bytes, run, sha256, tmpDir } from '../helpers.js'
import { isMounted } from '../mount/mount-helpers.js'

/**
 * The package as a dependent gets it: `npm pack` of this project (built by pretest), installed into a new project
 * with npm, used from TypeScript by its name: type-checked with tsc --strict (NodeNext) and run.
 */
const DEPENDENT = path.join(ROOT, 'test/api/dependent')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))

/** Unsets what `npm test` set for this project (its lifecycle and package variables; spawn skips undefined values). */
const NOT_OURS: NodeJS.ProcessEnv = Object.fromEntries(Object.keys(process.env)
  .filter((k) => /^(npm_lifecycle_|npm_package_|INIT_CWD$)/.test(k)).map((k) => [k, undefined]))

async function ok (cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, { cwd, env: NOT_OURS })
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

describe(`the npm package ${pkg.name}`, () => {
  it('installs, type-checks and runs from a new project: pack, list, verify, unpack, mount, native CommP', async () => {
    const work = tmpDir('packer-dependent-')
    const started = Date.now()
    const tarball = (await ok('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], ROOT)).trim().split('\n').pop()!
    const listing = (await ok('tar', ['-tzf', path.join(work, tarball)], work)).split('\n')
    expect(listing).toContain('package/native/build/Release/packer_native.node')
    expect(listing).toContain('package/dist/index.d.ts')
    expect(listing).toContain('package/native/src/commp.c')
    expect(listing.filter((f) => /^package\/(src|test|bench|testdata)\//.test(f))).toEqual([])

    const app = path.join(work, 'app')
    fs.mkdirSync(app)
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'dependent', private: true, type: 'module' }))
    for (const f of ['main.ts', 'bad.ts', 'tsconfig.json']) fs.copyFileSync(path.join(DEPENDENT, f), path.join(app, f))
    // Install scripts stay blocked, as npm does by default for a dependent: the package must work as it is.
    await ok('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(work, tarball), 'typescript@^5', '@types/node@^20'], app)
    const installed = path.join(app, 'node_modules', pkg.name)
    expect(sha256(fs.readFileSync(path.join(installed, 'native/build/Release/packer_native.node'))))
      .toBe(sha256(fs.readFileSync(path.join(ROOT, 'native/build/Release/packer_native.node'))))

    const tsc = path.join(app, 'node_modules/typescript/bin/tsc')
    // Type-checked with --strict and compiled in one run: tsc exits non-zero on any type error (ok() throws), even
    // though it still emits, so a separate --noEmit pass would only check the same program twice.
    await ok(process.execPath, [tsc, '--strict', '-p', 'tsconfig.json'], app)
    // The types catch mistakes: each line of bad.ts marked ERROR, and nothing else.
    const bad = await run(process.execPath, [tsc, '--strict', '--noEmit', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--types', 'node', 'bad.ts'], { cwd: app })
    expect(bad.code).not.toBe(0)
    const badLines = fs.readFileSync(path.join(app, 'bad.ts'), 'utf8').split('\n').flatMap((l, i) => l.includes('// ERROR') ? [i + 1] : [])
    const reported = [...new Set([...bad.stdout.matchAll(/^bad\.ts\((\d+),\d+\): error TS\d+/gm)].map((m) => Number(m[1])))]
    expect(reported).toEqual(badLines)
    expect(bad.stdout).toMatch(/Cannot find module 'filecoin-packer\/dist\/read\/car-set\.js'/)

    const src = path.join(work, 'src')
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
    const big = bytes(5 * 1024 * 1024 + 3, 41)
    fs.writeFileSync(path.join(src, 'big.bin'), big)
    fs.writeFileSync(path.join(src, 'sub/small.txt'), 'small\n')
    fs.writeFileSync(path.join(src, 'empty'), '')
    fs.symlinkSync('sub/small.txt', path.join(src, 'link'))
    const data = path.join(work, 'data')
    fs.mkdirSync(data)
    let report: any
    try {
      report = JSON.parse(await ok(process.execPath, ['out/main.js', src, data], app))
    } finally {
      if (await isMounted(path.join(data, 'mnt'))) await run('fusermount', ['-uz', path.join(data, 'mnt')])
    }
    const entries = ['dir sub', 'file big.bin 5242883', 'file empty 0', 'file sub/small.txt 6', 'symlink link']
    for (const kind of ['encrypted', 'clear']) {
      expect(report[kind]).toMatchObject({ files: 3, bytes: big.length + 6, progressBytes: big.length + 6, verified: true, restoredFiles: 3, sameBytes: true })
      expect(report[kind].pieces).toEqual(report[kind].carEvents)
      expect(report[kind].pieces.length).toBeGreaterThan(2)
      expect([...report[kind].entries].sort()).toEqual(entries)
    }
    expect(report).toMatchObject({
      backend: 'native',
      mountedSha256: sha256(big),
      wrongKey: { code: 'NO_IDENTITY', exitCode: 1 },
      internalImport: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    })
    process.stdout.write(`package test: npm pack, install, tsc and the program took ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  }, 300_000)
})
