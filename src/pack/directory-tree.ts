import { createHash, type Hash } from 'node:crypto'
import type { CID } from 'multiformats/cid'
import { SharedSortBudget } from '../spill/external-sort.js'
import { UnixfsDirectory, type DirectoryNode } from './unixfs-directory.js'
import type { BlockSink } from './unixfs.js'

export interface DirectoryTreeOptions {
  sink: BlockSink
  /** A private directory for the entries that do not fit the budget. */
  tmpDir: string
  /** Bytes of entries all the open directories together hold in memory; beyond it, the largest goes to disk. */
  memoryBudget: number
}

interface OpenDirectory {
  path: string
  name: string
  dir: UnixfsDirectory
  listed: number
  begun: number
  /** Digests of the subdirectory names as listed and as begun: the two orders must be the same. */
  listedNames: Hash
  begunNames: Hash
}

/**
 * Builds the UnixFS directories of a tree as `importDirectories` (unixfs.ts) does, from a stream of directory
 * listings, in bounded memory: each directory, in depth-first pre-order (the root first, path ''; siblings in the order
 * of their name bytes, the walk's order), comes as beginDirectory(path) followed by its direct children in that same
 * order: addFile(name, cid, size) and addDirectory(name) (a subdirectory, whose own listing comes later). A directory
 * is complete when the input moves outside it (or at finish()): its blocks are put then and its link added to its
 * parent. Only the directories on the current path are open; their entries share one memory budget (SharedSortBudget:
 * the largest spills to tmpDir when it is passed), so memory grows neither with the width nor with the depth.
 * Empty directories are kept.
 *
 * Block order (deterministic): each directory's blocks as it completes, so children before parents and siblings in
 * listing order; a HAMT's own blocks in the importer's order (UnixfsDirectory). The importer differs in two places,
 * where matching it would mean holding or spooling whole subtrees: (1) it puts the subdirectories of a HAMT directory
 * in the HAMT's slot order, interleaved with the shards, where here they come before the shards, in listing order;
 * (2) as packer feeds it, it puts the empty directory block once early for the first directory entry, where here it is
 * put where an empty directory completes (and not at all if there is none).
 *
 * On an error, call dispose() to remove the temporary files.
 */
export class DirectoryTree {
  readonly #sink: BlockSink
  readonly #tmpDir: string
  readonly #budget: SharedSortBudget
  readonly #open: OpenDirectory[] = []
  #begun = false

  constructor (opts: DirectoryTreeOptions) {
    this.#sink = opts.sink
    this.#tmpDir = opts.tmpDir
    this.#budget = new SharedSortBudget(opts.memoryBudget)
  }

  /** Runs of entries written to disk so far (tests use it to prove the disk path ran). */
  get spills (): number { return this.#budget.spills }

  /** Begins the next directory of the depth-first walk: '' (the root) first, then 'a', 'a/b'… */
  async beginDirectory (path: string): Promise<void> {
    if (!this.#begun) {
      if (path !== '') throw new Error(`DirectoryTree: the root (path '') must come first, not ${JSON.stringify(path)}`)
      this.#begun = true
      this.#push(path, '')
      return
    }
    const slash = path.lastIndexOf('/')
    const parentPath = slash < 0 ? '' : path.slice(0, slash)
    const name = path.slice(slash + 1)
    checkName(name, path)
    let parentDepth = this.#open.length - 1
    while (parentDepth >= 0 && this.#open[parentDepth].path !== parentPath) parentDepth--
    if (parentDepth < 0) throw new Error(`DirectoryTree: ${JSON.stringify(path)} begins outside the open directories (its parent is not open)`)
    while (this.#open.length - 1 > parentDepth) await this.#complete()
    const parent = this.#open[parentDepth]
    if (parent.begun === parent.listed) throw new Error(`DirectoryTree: ${JSON.stringify(path)} was not listed in its parent`)
    parent.begun++
    parent.begunNames.update(name).update('/')
    this.#push(path, name)
  }

  /** A file of the current directory. */
  async addFile (name: string, cid: CID, size: number): Promise<void> {
    await this.#current(name).dir.addFile(name, cid, size)
  }

  /** A subdirectory of the current directory: its own beginDirectory comes later, in this order. */
  addDirectory (name: string): void {
    const current = this.#current(name)
    current.dir.listSubdirectory()
    current.listed++
    current.listedNames.update(name).update('/')
  }

  /** Completes every open directory; returns the root. */
  async finish (): Promise<DirectoryNode> {
    if (!this.#begun) throw new Error("DirectoryTree: finish() before the root (beginDirectory(''))")
    while (this.#open.length > 1) await this.#complete()
    const root = this.#open.pop()
    if (root === undefined) throw new Error('DirectoryTree: finish() called twice')
    this.#checkSubdirectories(root)
    return await root.dir.finish(this.#sink)
  }

  /** Removes the temporary files of the directories still open (after an error). */
  async dispose (): Promise<void> {
    for (const d of this.#open.splice(0)) await d.dir.dispose()
  }

  #push (path: string, name: string): void {
    this.#open.push({
      path,
      name,
      dir: new UnixfsDirectory({ tmpDir: this.#tmpDir, budget: this.#budget }),
      listed: 0,
      begun: 0,
      listedNames: createHash('sha256'),
      begunNames: createHash('sha256'),
    })
  }

  /** The directory last begun, whose listing this is (an earlier one's listing ended when a subdirectory began). */
  #current (name: string): OpenDirectory {
    const current = this.#open[this.#open.length - 1]
    if (current === undefined) throw new Error(`DirectoryTree: ${JSON.stringify(name)} added outside a directory (beginDirectory first)`)
    checkName(name, current.path === '' ? name : `${current.path}/${name}`)
    return current
  }

  async #complete (): Promise<void> {
    const done = this.#open.pop()!
    try {
      this.#checkSubdirectories(done)
      const node = await done.dir.finish(this.#sink)
      await this.#open[this.#open.length - 1].dir.addDirectory(done.name, node.cid, node.size)
    } catch (err) {
      await done.dir.dispose()
      throw err
    }
  }

  #checkSubdirectories (d: OpenDirectory): void {
    if (d.begun !== d.listed) throw new Error(`DirectoryTree: ${JSON.stringify(d.path)} listed ${d.listed} subdirectories but ${d.begun} began`)
    if (d.listedNames.digest('hex') !== d.begunNames.digest('hex')) throw new Error(`DirectoryTree: the subdirectories of ${JSON.stringify(d.path)} began with other names or in another order than listed`)
  }
}

function checkName (name: string, path: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) throw new Error(`DirectoryTree: ${JSON.stringify(path)} has no valid name (empty, '.', '..' or with '/')`)
}
