import { mtimeMs, type Node, type Tree } from './tree.js'
import type { SetReader as MountReader } from '../read/reader.js'

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000

export interface FsOptions { uid: number, gid: number, log: (line: string) => void }

/**
 * The FUSE handlers: thin. Metadata comes from the tree built from the file table; file bytes from the MountReader.
 * Every writing operation answers EROFS (the mount is also mounted `ro`, so the kernel refuses most before they get
 * here).
 */
export function fuseOperations (Fuse: any, tree: Tree, reader: MountReader, opts: FsOptions): Record<string, Function> {
  const { nodes } = tree
  const stats = new Map<Node, object>()
  const statOf = (n: Node): object => {
    let st = stats.get(n)
    if (st === undefined) {
      const e = n.entry
      const type = e === null || e.type === 'dir' ? S_IFDIR : e.type === 'symlink' ? S_IFLNK : S_IFREG
      const size = e === null || e.type === 'dir' ? 4096 : e.type === 'symlink' ? e.target!.length : e.size!
      st = {
        mode: type | (e === null ? 0o755 : e.mode),
        uid: opts.uid,
        gid: opts.gid,
        size,
        nlink: n.nlink,
        ino: n.ino,
        blksize: 65536,
        blocks: Math.ceil(size / 512),
        atime: mtimeMs(n),
        mtime: mtimeMs(n),
        ctime: mtimeMs(n),
      }
      stats.set(n, st)
    }
    return st
  }
  const erofs = (...args: any[]): void => { args[args.length - 1](Fuse.EROFS) }
  const statfs = {
    bsize: 65536,
    frsize: 65536,
    blocks: Math.min(2 ** 32 - 1, Math.ceil(tree.bytes / 65536)),
    bfree: 0,
    bavail: 0,
    files: Math.min(2 ** 32 - 1, nodes.size),
    ffree: 0,
    favail: 0,
    fsid: 0,
    flag: 1, // ST_RDONLY
    namemax: 255,
  }
  return {
    init: (cb: Function) => cb(0),
    statfs: (_p: string, cb: Function) => cb(0, statfs),
    getattr: (p: string, cb: Function) => {
      const n = nodes.get(p)
      if (n === undefined) return cb(Fuse.ENOENT)
      cb(0, statOf(n))
    },
    readdir: (p: string, cb: Function) => {
      const n = nodes.get(p)
      if (n === undefined) return cb(Fuse.ENOENT)
      if (n.children === undefined) return cb(Fuse.ENOTDIR)
      cb(0, ['.', '..', ...n.children])
    },
    readlink: (p: string, cb: Function) => {
      const n = nodes.get(p)
      if (n === undefined) return cb(Fuse.ENOENT)
      if (n.entry?.type !== 'symlink') return cb(Fuse.EINVAL)
      cb(0, n.entry.target!.toString('utf8'))
    },
    access: (p: string, mode: number, cb: Function) => {
      if (!nodes.has(p)) return cb(Fuse.ENOENT)
      cb((mode & 2) !== 0 ? Fuse.EROFS : 0)
    },
    open: (p: string, flags: number, cb: Function) => {
      const n = nodes.get(p)
      if (n === undefined) return cb(Fuse.ENOENT)
      if ((flags & 3) !== 0 || (flags & 0o1000) !== 0) return cb(Fuse.EROFS) // O_WRONLY, O_RDWR, O_TRUNC
      if (n.entry?.type !== 'file') return cb(Fuse.EISDIR)
      cb(0, reader.open())
    },
    release: (_p: string, fd: number, cb: Function) => { reader.release(fd); cb(0) },
    read: (p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Function) => {
      const n = nodes.get(p)
      if (n === undefined || n.entry?.type !== 'file') return cb(Fuse.ENOENT)
      const fail = (err: Error): void => {
        opts.log(`EIO reading ${p}: ${err.message}`)
        cb(Fuse.EIO)
      }
      let got: number | Promise<number>
      try {
        got = reader.read(n.entry, fd, buf, len, pos)
      } catch (err) { return fail(err as Error) }
      // Answered from memory when everything is cached: no promise, no extra turn of the event loop.
      if (typeof got === 'number') cb(got)
      else got.then((k) => cb(k), fail)
    },
    write: erofs,
    create: erofs,
    mknod: erofs,
    mkdir: erofs,
    unlink: erofs,
    rmdir: erofs,
    rename: erofs,
    link: erofs,
    symlink: erofs,
    chmod: erofs,
    chown: erofs,
    truncate: erofs,
    ftruncate: erofs,
    utimens: erofs,
    setxattr: erofs,
    removexattr: erofs,
  }
}
