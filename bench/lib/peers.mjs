// The peers packer is measured against, each run on a tree given by the caller, timed by lib/sys.mjs's timed():
// ipfs-car (devDependency), restic, borg and rclone crypt (Debian packages), with their defaults, as a user would.
// Each takes the tree, a directory of its own (removed first) and a log file, and returns timed()'s figures plus
// outBytes, the size of what it wrote.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { diskUsage, run, timed } from './sys.mjs'

const IPFS_CAR = fileURLToPath(new URL('../../node_modules/ipfs-car/bin.js', import.meta.url))
const rm = (p) => fs.rm(p, { recursive: true, force: true })
export const PASSWORD = 'bench-password'

/** borg's environment for a repository made in DIR by the borg peer. */
export const borgEnv = (dir) => ({
  BORG_PASSPHRASE: PASSWORD,
  BORG_BASE_DIR: path.join(dir, 'home'),
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  BORG_DISPLAY_PASSPHRASE: 'no',
})

export const PEERS = {
  /** `ipfs-car pack TREE --output dir/x.car` (no CommP) */
  'ipfs-car': async (tree, dir, log) => {
    await rm(dir)
    await fs.mkdir(dir, { recursive: true })
    const car = path.join(dir, 'x.car')
    const r = await timed(process.execPath, [IPFS_CAR, 'pack', tree, '--output', car], { log })
    return { outBytes: diskUsage(car), ...r }
  },
  /** `restic init && restic backup TREE`, its cache beside the repository */
  restic: async (tree, dir, log) => {
    await rm(dir)
    const r = await timed('sh', ['-c', 'restic -r "$R" init && restic -r "$R" backup "$T"'], {
      env: { R: path.join(dir, 'repo'), T: tree, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(dir, 'cache') },
      log,
    })
    return { outBytes: diskUsage(path.join(dir, 'repo')), ...r }
  },
  /** `borg init -e repokey && borg create R::bench .` in TREE (lz4 by default) */
  borg: async (tree, dir, log) => {
    await rm(dir)
    await fs.mkdir(dir, { recursive: true })
    const r = await timed('sh', ['-c', 'borg init -e repokey "$R" && borg create "$R::bench" .'], {
      cwd: tree,
      env: { R: path.join(dir, 'repo'), ...borgEnv(dir) },
      log,
    })
    return { outBytes: diskUsage(path.join(dir, 'repo')), ...r }
  },
  /** `rclone copy TREE bench-crypt:`, a crypt remote over a local directory (4 transfers by default) */
  rclone: async (tree, dir, log) => {
    await rm(dir)
    const dst = path.join(dir, 'dst')
    await fs.mkdir(dst, { recursive: true })
    const conf = path.join(dir, 'rclone.conf')
    const ob = (s) => run('rclone', ['obscure', s]).trim()
    await fs.writeFile(conf, `[bench-crypt]\ntype = crypt\nremote = ${dst}\npassword = ${ob(PASSWORD)}\npassword2 = ${ob('bench-salt')}\n`)
    const r = await timed('rclone', ['--config', conf, 'copy', tree, 'bench-crypt:'], { log })
    return { outBytes: diskUsage(dst), ...r }
  },
}
