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
