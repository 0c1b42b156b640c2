import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * A worker thread's compiled module: `beside` (the .js next to the module starting the worker), or `dist/<inDist>`
 * when that module runs from the TypeScript sources (the test runner, the library API in-process): a worker cannot
 * load .ts files.
 */
export function compiledModule (beside: URL, inDist: string): URL {
  return existsSync(fileURLToPath(beside)) ? beside : new URL(`../dist/${inDist}`, import.meta.url)
}

/** Longest wait for workers to stop: a worker stuck in native code must not hang its process for ever. */
const TERMINATE_WAIT_MS = 10_000

/**
 * Stops worker threads and waits until they have (at most TERMINATE_WAIT_MS). The wait holds a timer: Node's
 * terminate() does not keep the process alive by itself (its event loop was found empty while workers were still
 * stopping), so a command whose last work was this wait ended there, with exit code 0 and the rest of it (its error
 * message, its exit code) never run.
 */
export async function terminateWorkers (workers: Array<{ terminate: () => Promise<number> }>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const waited = new Promise<void>((resolve) => { timer = setTimeout(resolve, TERMINATE_WAIT_MS) })
  try {
    await Promise.race([Promise.all(workers.map(async (w) => await w.terminate())), waited])
  } finally {
    clearTimeout(timer)
  }
}
