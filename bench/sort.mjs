// Speed of the external sorter (src/spill/external-sort.ts) on random 48-byte records, the block index's size: records/s
// for add() and for sorted(), at 1 M and 10 M records, with a 64 MiB memory limit. `node bench/sort.mjs [millions…]`
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ExternalSorter } from '../dist/spill/external-sort.js'

const RECORD = 48

async function measure (n) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sort-bench-'))
  const sorter = new ExternalSorter({ dir, memoryLimit: 64 * 1024 * 1024, keyBytes: RECORD })
  const random = Buffer.alloc(RECORD * 65536)
  try {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const j = i % 65536
      if (j === 0) crypto.randomFillSync(random) // random records, like the digests of a block index
      const r = random.subarray(j * RECORD, j * RECORD + RECORD)
      await sorter.add(r)
    }
    const t1 = performance.now()
    let count = 0
    const previous = Buffer.alloc(RECORD) // a record is valid until the next: keep a copy
    for await (const r of sorter.sorted()) {
      if (count > 0 && Buffer.compare(previous, r) > 0) throw new Error(`record ${count} out of order`)
      previous.set(r)
      count++
    }
    const t2 = performance.now()
    if (count !== n) throw new Error(`sorted ${count} of ${n}`)
    const rate = (k, ms) => `${(k / ms * 1000 / 1e6).toFixed(2)} M/s`
    console.log(`${n / 1e6} M records of ${RECORD} B: add ${rate(n, t1 - t0)}, sorted ${rate(n, t2 - t1)}, overall ${rate(n, t2 - t0)} (${((t2 - t0) / 1000).toFixed(1)} s, ${sorter.runs} runs, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB)`)
  } finally {
    await sorter.dispose()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const sizes = process.argv.slice(2).map(Number)
for (const m of sizes.length > 0 ? sizes : [1, 10]) await measure(m * 1e6)
