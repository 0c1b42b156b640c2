import fs from 'node:fs'
import path from 'node:path'
import { bytes, setMtimeNs } from './helpers.js'

export const MiB = 1024 * 1024

/**
 * The round-trip tree: the cases the foundation issue names, on real bytes. Sizes around the 1 MiB chunk and the
 * 64 KiB age chunk, an empty file and directory, unicode and awkward names, a symlink, odd modes, nanosecond mtimes.
 */
export async function makeRoundTripTree (root: string, opts: { big?: number } = {}): Promise<void> {
  const w = (rel: string, data: Buffer, mode = 0o644): void => {
    const p = path.join(root, rel)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    fs.writeFileSync(p, data)
    fs.chmodSync(p, mode)
  }
  w('empty.txt', Buffer.alloc(0))
  w('one-byte', Buffer.from('x'))
  w('exactly-1MiB.bin', bytes(MiB, 2))
  w('1MiB-minus-1.bin', bytes(MiB - 1, 3))
  w('1MiB-plus-1.bin', bytes(MiB + 1, 4))
  w('chunks/64KiB-edges.bin', bytes(3 * 65536 + 1, 5), 0o600)
  w('big/spans-cars.bin', bytes(opts.big ?? 5 * MiB + 12345, 6), 0o640)
  w('unicode/naïve café ✓ 日本語.txt', Buffer.from('unicode name\n'))
  w('unicode/with space and\nnewline', Buffer.from('newline in name\n'), 0o755)
  w('.dotfile', Buffer.from('hidden\n'))
  w('exec.sh', Buffer.from('#!/bin/sh\necho hi\n'), 0o755)
  fs.mkdirSync(path.join(root, 'empty-dir'))
  fs.mkdirSync(path.join(root, 'deep/a/b/c'), { recursive: true })
  w('deep/a/b/c/leaf.txt', Buffer.from('deep leaf\n'))
  fs.chmodSync(path.join(root, 'deep/a'), 0o750)
  // A name that is not valid UTF-8.
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e])]), bytes(100, 7))
  fs.symlinkSync('exec.sh', path.join(root, 'link-to-exec'))
  fs.symlinkSync('/etc', path.join(root, 'abs-link'))
  // Nanosecond mtimes, set last (writing into a directory changes its mtime).
  let t = 1_600_000_000_123_456_789n
  for (const rel of ['empty.txt', 'one-byte', 'exactly-1MiB.bin', 'big/spans-cars.bin', 'link-to-exec', 'deep/a/b/c/leaf.txt', 'deep/a/b/c', 'deep/a', 'empty-dir', 'big', 'chunks', 'unicode', 'deep/a/b', 'deep']) {
    await setMtimeNs(path.join(root, rel), t)
    t += 1_000_000_001n
  }
}

/** Log-like text: compresses ~3–4× at zstd's fast levels, not 100× (so its stream spans CARs too). */
export function logText (n: number, seed: number): Buffer {
  const hex = bytes(n, seed).toString('hex')
  const lines: string[] = []
  let size = 0
  for (let i = 0; size < n; i++) {
    const line = `2026-12-01T04:${String(i % 60).padStart(2, '0')}:00Z INFO request ${hex.slice((i * 16) % (hex.length - 16), (i * 16) % (hex.length - 16) + 16)} served in ${i % 997} ms\n`
    lines.push(line)
    size += line.length
  }
  return Buffer.from(lines.join('')).subarray(0, n)
}
