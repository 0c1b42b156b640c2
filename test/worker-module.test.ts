import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, run, tmpDir } from './helpers.js'

/**
 * terminateWorkers keeps its process alive until the workers are gone. Without its timer, a worker unref'd while
 * being stopped (its last result arriving) left Node's event loop empty: a CLI whose last step was that wait (unpack
 * after a full disk) exited with code 0 and without its error message.
 */
describe('terminateWorkers', () => {
  it('keeps the process alive until every worker has stopped', async () => {
    const script = path.join(tmpDir(), 'stop.mjs')
    fs.writeFileSync(script, `
      import { Worker } from 'node:worker_threads'
      import { terminateWorkers } from ${JSON.stringify(path.join(ROOT, 'dist/worker-module.js'))}
      // As the pools do: a worker is ref'd while it has a job and unref'd when its last result comes back, which may be
      // while it is being stopped.
      const echo = "require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))"
      const workers = [1, 2].map(() => new Worker(echo, { eval: true }))
      for (const w of workers) { w.unref(); w.on('message', () => w.unref()) }
      let stopping = false
      process.on('beforeExit', () => { if (stopping) console.log('event loop empty while workers were stopping') })
      await new Promise((resolve) => setTimeout(resolve, 100))
      for (const w of workers) { w.ref(); w.postMessage('job') }
      stopping = true
      await terminateWorkers(workers)
      stopping = false
      console.log('stopped', workers.map((w) => w.threadId).join(','))
    `)
    for (let i = 0; i < 5; i++) {
      const r = await run(process.execPath, [script])
      expect(r.stderr).toBe('')
      expect(r.stdout).toBe('stopped -1,-1\n') // a stopped worker's threadId is -1
      expect(r.code).toBe(0)
    }
  })
})
