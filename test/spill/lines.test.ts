import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { readLines, readLinesBackward } from '../../src/spill/lines.js'
import { tmpDir } from '../helpers.js'

async function all (lines: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const l of lines) out.push(l)
  return out
}

describe('readLinesBackward', () => {
  it('gives readLines\' lines last first, across read boundaries, for any chunk size', async () => {
    const file = path.join(tmpDir(), 'lines')
    const texts = [
      '', '\n', 'a', 'a\n', '\n\n', 'a\n\nb\n', 'one\ntwo\nthree', 'naïve ✓ 日本語\nline\n',
      Array.from({ length: 300 }, (_, i) => `${i}:${'x'.repeat(i % 37)}`).join('\n') + '\n',
    ]
    for (const text of texts) {
      fs.writeFileSync(file, text)
      const forward = await all(readLines(file))
      for (const chunkSize of [1, 2, 3, 7, 64, 1 << 20]) {
        expect(await all(readLinesBackward(file, { chunkSize })), `${JSON.stringify(text.slice(0, 40))} in chunks of ${chunkSize}`).toEqual([...forward].reverse())
      }
    }
  })
})
