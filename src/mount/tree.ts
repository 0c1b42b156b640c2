import { isUtf8 } from 'node:buffer'
import type { TableEntry } from '../format/table-entry.js'

/** One name in the mounted tree. */
export interface Node {
  entry: TableEntry | null // null: the root
  ino: number
  /** dir: child names in table order. */
  children?: string[]
  nlink: number
  /** Milliseconds (what fuse-native passes to the kernel); the root's is set, the others' computed on first stat. */
  mtimeMs?: number
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
 * U+FFFD for the bad bytes (made unique with ~N when two collide). The table lists parents before their contents.
 *
 * Until the first name that must change, a mounted path is "/" + the table path decoded: one native UTF-8 check and
 * one decode per entry (100k entries in tens of milliseconds). From then on, each entry's parent is looked up in a
 * map from table paths to mounted paths (filled only from there on; earlier parents are the decoded paths).
 */
export function buildTree (entries: TableEntry[]): Tree {
  let newest = 0n
  for (const e of entries) if (e.mtimeNs > newest) newest = e.mtimeNs
  const root: Node = { entry: null, ino: 1, children: [], nlink: 2, mtimeMs: msOf(newest) }
  const nodes = new Map<string, Node>([['/', root]])
  const byTable = new Map<string, string>()
  const renamed: Tree['renamed'] = []
  let files = 0
  let bytes = 0
  let fast = true
  let lastParentPath = '/'
  let lastParent = root
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]
    const node: Node = { entry: e, ino: i + 2, nlink: e.type === 'dir' ? 2 : 1 }
    let full: string
    let parent: Node
    if (fast && isUtf8(e.path)) {
      const str = e.path.toString('utf8')
      full = '/' + str
      const slash = full.lastIndexOf('/')
      const parentPath = slash === 0 ? '/' : full.slice(0, slash)
      if (parentPath !== lastParentPath) {
        lastParent = nodes.get(parentPath)!
        lastParentPath = parentPath
      }
      parent = lastParent
      if (nodes.has(full)) {
        fast = false
        full = unique(nodes, full)
        renamed.push({ from: e.path, to: full })
        byTable.set(e.path.toString('latin1'), full)
      }
    } else {
      fast = false
      const slash = e.path.lastIndexOf(0x2f)
      const name = e.path.subarray(slash + 1)
      const parentBytes = e.path.subarray(0, Math.max(0, slash))
      const parentPath = slash < 0 ? '/' : byTable.get(parentBytes.toString('latin1')) ?? '/' + parentBytes.toString('utf8')
      parent = nodes.get(parentPath)!
      let text: string
      let valid = true
      try { text = decoder.decode(name) } catch { text = name.toString('utf8'); valid = false }
      full = (parentPath === '/' ? '/' : parentPath + '/') + text
      if (!valid || nodes.has(full)) {
        full = unique(nodes, full)
        renamed.push({ from: e.path, to: full })
      }
      byTable.set(e.path.toString('latin1'), full)
    }
    if (e.type === 'dir') { node.children = []; parent.nlink++ }
    if (e.type === 'file') { files++; bytes += e.size! }
    parent.children!.push(full.slice(full.lastIndexOf('/') + 1))
    nodes.set(full, node)
  }
  return { nodes, files, bytes, renamed }
}

function unique (nodes: Map<string, Node>, full: string): string {
  if (!nodes.has(full)) return full
  for (let n = 1; ; n++) if (!nodes.has(`${full}~${n}`)) return `${full}~${n}`
}

/** A node's modification time in milliseconds. */
export function mtimeMs (n: Node): number {
  return (n.mtimeMs ??= msOf(n.entry!.mtimeNs))
}

function msOf (ns: bigint): number {
  return ns <= 0n ? 0 : Number(ns / 1_000_000n)
}
