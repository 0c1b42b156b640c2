import type { TableEntry } from '../format/file-table.js'
import { splitPath } from '../format/stored-path.js'

/** One name in the mounted tree. */
export interface Node {
  entry: TableEntry | null // null: the root
  ino: number
  /** dir: child names in table order. */
  children?: string[]
  nlink: number
  /** Milliseconds (what fuse-native passes to the kernel). */
  mtimeMs: number
}

export interface Tree {
  nodes: Map<string, Node>
  files: number
  bytes: number
  /** Names changed because they are not valid UTF-8 (FUSE paths are strings here): table path → mounted path. */
  renamed: Array<{ from: Buffer, to: string }>
}

const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * The whole tree from the file table, at once: FUSE path ("/a/b") → node. Names that are not valid UTF-8 appear with
 * U+FFFD for the bad bytes (made unique with ~N when two collide).
 */
export function buildTree (entries: TableEntry[]): Tree {
  let newest = 0n
  for (const e of entries) if (e.mtimeNs > newest) newest = e.mtimeNs
  const root: Node = { entry: null, ino: 1, children: [], nlink: 2, mtimeMs: msOf(newest) }
  const nodes = new Map<string, Node>([['/', root]])
  const byTable = new Map<string, string>([['', '/']])
  const renamed: Tree['renamed'] = []
  let files = 0
  let bytes = 0
  entries.forEach((e, i) => {
    const parts = splitPath(e.path)
    const name = parts[parts.length - 1]
    const parentKey = e.path.subarray(0, Math.max(0, e.path.length - name.length - 1)).toString('latin1')
    const parentPath = byTable.get(parentKey)!
    const parent = nodes.get(parentPath)!
    let text: string
    let valid = true
    try { text = decoder.decode(name) } catch { text = name.toString('utf8'); valid = false }
    let full = (parentPath === '/' ? '/' : parentPath + '/') + text
    if (!valid || nodes.has(full)) {
      for (let n = 1; nodes.has(full); n++) full = (parentPath === '/' ? '/' : parentPath + '/') + `${text}~${n}`
      renamed.push({ from: e.path, to: full })
    }
    const node: Node = { entry: e, ino: i + 2, nlink: e.type === 'dir' ? 2 : 1, mtimeMs: msOf(e.mtimeNs) }
    if (e.type === 'dir') { node.children = []; parent.nlink++ }
    if (e.type === 'file') { files++; bytes += e.size! }
    parent.children!.push(full.slice(full.lastIndexOf('/') + 1))
    nodes.set(full, node)
    byTable.set(e.path.toString('latin1'), full)
  })
  return { nodes, files, bytes, renamed }
}

function msOf (ns: bigint): number {
  return ns <= 0n ? 0 : Number(ns / 1_000_000n)
}
