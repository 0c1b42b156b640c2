#!/usr/bin/env node
// npm's prepare: builds dist/ and the native addon in a clone (npm ci, a git dependency). An installed package
// (a tarball, whose prepare npm may run when its scripts are allowed) has no sources and is already built.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

if (!existsSync(new URL('../src/index.ts', import.meta.url))) process.exit(0)
const r = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' })
process.exit(r.status ?? 1)
