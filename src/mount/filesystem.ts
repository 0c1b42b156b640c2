import type { NumberedEntry } from '../read/set-table.js'
import type { SetReader } from '../read/reader.js'
import { S_IFDIR, type Listing, type MountTree } from './tree.js'

export interface FsOptions {
  log: (line: string) => void
  /** statfs: entries in the table and bytes of the set's CARs. */
  entries: number
  bytes: number
}


/** A value, or a promise of one: what the tree answers from memory when it can, without a turn of the event loop. */
function settle<T> (v: T | Promise<T>, ok: (v: T) => void, fail: (err: Error) => void): void {
  if (v instanceof Promise) v.then(ok, fail)
  else ok(v)
}

/**
 * The FUSE handlers: thin. Metadata comes from the tree (the file table, looked up on demand); file bytes from the
 * reader. Every writing operation answers EROFS (the mount is also mounted `ro`, so the kernel refuses most before
 * they get here). An error reading the table (a CAR holding part of it missing or damaged) answers EIO and is logged.
 */
export function fuseOperations (Fuse: any, tree: MountTree, reader: SetReader, opts: FsOptions): Record<string, Function> {
  /** Open files: handle → entry (reads come by handle; the path would need a lookup per read). */
  const open = new Map<number, NumberedEntry>()
  const erofs = (...args: any[]): void => { args[args.length - 1](Fuse.EROFS) }
  const failed = (what: string, p: string, cb: Function) => (err: Error): void => {
    opts.log(`EIO ${what} ${p}: ${err.message}`)
    cb(Fuse.EIO)
  }
  const statfs = {
    bsize: 65536,
    frsize: 65536,
    blocks: Math.min(2 ** 32 - 1, Math.ceil(opts.bytes / 65536)),
    bfree: 0,
    bavail: 0,
    files: Math.min(2 ** 32 - 1, opts.entries + 1),
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
      settle(tree.stat(p), (s) => s === undefined ? cb(Fuse.ENOENT) : cb(0, s), failed('looking up', p, cb))
    },
    readdir: (p: string, cb: Function) => {
      settle(tree.list(p), (l: Listing | null | undefined) => {
        if (l === undefined) return cb(Fuse.ENOENT)
        if (l === null) return cb(Fuse.ENOTDIR)
        // A stat per name gives the kernel each entry's type (find and ls -l need not ask) and inode (never 0: the C
        // library hides entries whose inode is 0).
        const stats = [{ mode: S_IFDIR, ino: l.ino }, { mode: S_IFDIR, ino: l.parentIno }]
        for (let i = 0; i < l.names.length; i++) stats.push({ mode: l.modes[i], ino: l.numbers[i] + 2 })
        cb(0, ['.', '..'].concat(l.names), stats)
      }, failed('listing', p, cb))
    },
    readlink: (p: string, cb: Function) => {
      tree.node(p).then((n) => {
        if (n === undefined) return cb(Fuse.ENOENT)
        if (n.entry.type !== 'symlink') return cb(Fuse.EINVAL)
        cb(0, n.entry.target!.toString('utf8'))
      }, failed('looking up', p, cb))
    },
    access: (p: string, mode: number, cb: Function) => {
      settle(tree.stat(p), (s) => s === undefined ? cb(Fuse.ENOENT) : cb((mode & 2) !== 0 ? Fuse.EROFS : 0), failed('looking up', p, cb))
    },
    open: (p: string, flags: number, cb: Function) => {
      if ((flags & 3) !== 0 || (flags & 0o1000) !== 0) return cb(Fuse.EROFS) // O_WRONLY, O_RDWR, O_TRUNC
      tree.node(p).then((n) => {
        if (n === undefined) return cb(Fuse.ENOENT)
        if (n.entry.type !== 'file') return cb(Fuse.EISDIR)
        const fd = reader.open()
        open.set(fd, n.entry)
        cb(0, fd)
      }, failed('opening', p, cb))
    },
    release: (_p: string, fd: number, cb: Function) => {
      open.delete(fd)
      reader.release(fd)
      cb(0)
    },
    read: (p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Function) => {
      const e = open.get(fd)
      if (e === undefined) return cb(Fuse.EBADF)
      const fail = failed('reading', p, cb)
      let got: number | Promise<number>
      try {
        got = reader.read(e, fd, buf, len, pos)
      } catch (err) { return fail(err as Error) }
      // Answered from memory when everything is cached: no promise, no extra turn of the event loop.
      settle(got, (k) => cb(k), fail)
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
