// Builds the format's test-vector tree in DIR: fixed bytes, modes, mtimes (ns) and, as root, owner 0:0.
// Usage: node testdata/vectors/make-tree.mjs DIR   (DIR must not exist)
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export function makeVectorTree (dir, { small = false } = {}) {
  fs.mkdirSync(dir)
  const data = Buffer.alloc(200_000)
  for (let i = 0; i < data.length; i += 32) crypto.createHash('sha256').update(`packer vector ${i}`).digest().copy(data, i)
  const files = [
    ['hello.txt', Buffer.from('hello, packer\n'), 0o644],
    ['dir/data.bin', data, 0o600],
    ['dir/empty', Buffer.alloc(0), 0o644],
    ['dir/run.sh', Buffer.from('#!/bin/sh\necho vector\n'), 0o755],
  ]
  // A file over one 1 MiB chunk, so the unencrypted vector spans two CARs (packed with --bin-size 1200000).
  if (!small) files.push(['large.bin', Buffer.concat([data, data, data, data, data, data, data, data.subarray(0, 100_000)]), 0o644])
  for (const [rel, bytes, mode] of files) {
    fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), bytes)
    fs.chmodSync(path.join(dir, rel), mode)
  }
  fs.mkdirSync(path.join(dir, 'empty-dir'))
  fs.chmodSync(path.join(dir, 'dir'), 0o750)
  fs.chmodSync(path.join(dir, 'empty-dir'), 0o755)
  fs.symlinkSync('hello.txt', path.join(dir, 'link'))
  const all = [...files.map((f) => f[0]), 'link', 'empty-dir', 'dir']
  all.forEach((rel, i) => {
    const p = path.join(dir, rel)
    if (process.getuid?.() === 0) fs.lchownSync(p, 0, 0)
    execFileSync('touch', ['-h', '-d', `@1700000000.${String(123456789 + i).padStart(9, '0')}`, p])
  })
}

if (import.meta.url === `file://${process.argv[1]}`) makeVectorTree(process.argv[2], { small: process.argv[3] === '--small' })
