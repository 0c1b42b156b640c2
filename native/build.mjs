#!/usr/bin/env node
// Builds native/build/Release/packer_native.node with node-gyp, offline.
//
//   node native/build.mjs            build; on failure print one warning and exit 0 (packer falls back to JS)
//   node native/build.mjs --strict   build; exit non-zero on failure
//
// node-gyp: the one npm runs scripts with (npm_config_node_gyp), else npm's bundled copy next to this node, else
// `node-gyp` on PATH. Headers: npm's configured nodedir (npm_config_nodedir, e.g. `nodedir=/usr` in ~/.npmrc), else
// the headers installed with this node (<prefix>/include/node, as in Debian/NodeSource packages and the official
// tarballs), so node-gyp never downloads anything; else node-gyp's own cache (~/.cache/node-gyp).
// An addon newer than its sources is kept (`npm ci && npm test` builds twice: prepare, then pretest); it uses only
// N-API, so one build loads on every Node version.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const strict = process.argv.includes('--strict')
const built = path.join(here, 'build/Release/packer_native.node')

function upToDate () {
  if (!existsSync(built)) return false
  const sources = ['binding.gyp', 'build.mjs', ...readdirSync(path.join(here, 'src')).map((name) => path.join('src', name))]
  const newest = Math.max(...sources.map((name) => statSync(path.join(here, name)).mtimeMs))
  return statSync(built).mtimeMs > newest
}

function findNodeGyp () {
  const fromNpm = process.env.npm_config_node_gyp
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm]
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  for (const p of [
    path.join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
    path.join(prefix, 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'), // Windows layout
    path.join(prefix, 'share/nodejs/node-gyp/bin/node-gyp.js'), // Debian's node-gyp package
  ]) {
    if (existsSync(p)) return [process.execPath, p]
  }
  return ['node-gyp']
}

function findNodeDir () {
  const configured = process.env.npm_config_nodedir
  if (configured && existsSync(path.join(configured, 'include/node/node_api.h'))) return configured
  const prefix = path.resolve(path.dirname(process.execPath), '..')
  if (existsSync(path.join(prefix, 'include/node/node_api.h')) && existsSync(path.join(prefix, 'include/node/common.gypi'))) return prefix
  return undefined
}

if (upToDate()) {
  process.stdout.write(`packer: native addon up to date (${built})\n`)
  process.exit(0)
}
const [cmd, ...pre] = findNodeGyp()
const nodedir = findNodeDir()
const args = [...pre, 'rebuild', '-C', here, ...(nodedir ? [`--nodedir=${nodedir}`] : [])]
// node-gyp lets npm_config_nodedir from the environment override --nodedir, even when it is empty.
const env = { ...process.env }
if (nodedir) env.npm_config_nodedir = nodedir
else delete env.npm_config_nodedir
const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env })
if (r.status === 0) {
  process.stdout.write(`packer: built native addon (${built})\n`)
  process.exit(0)
}
const output = `${r.stdout ?? ''}${r.stderr ?? ''}`
// A compiler's "fatal error" (e.g. zstd.h missing) says what to install; make's and gyp's lines after it do not.
const fatal = output.split('\n').find((l) => /fatal error/.test(l))?.replace(/^.*?(?=[^/\s]+: fatal error)/, '')
const why = r.error ? r.error.message : (fatal ?? (output.split('\n').filter((l) => /error/i.test(l)).slice(-3).join(' | ') || `exit ${r.status}`))
if (strict) {
  process.stderr.write(output)
  process.stderr.write(`packer: native addon build failed: ${why}\n`)
  process.exit(1)
}
process.stderr.write(`packer: native addon not built (${why}); packer will use the slower JavaScript CommP, and zstd only ` +
  'where node:zlib has it (Node 22.15 and later). ' +
  'Needs python3, make, a C compiler, Node headers and libzstd-dev; retry with: node native/build.mjs --strict\n')
process.exit(0)
