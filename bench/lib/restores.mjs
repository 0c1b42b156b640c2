// The peers' restores, of what lib/peers.mjs's backup of the same name left in its directory: restic restore, borg
// extract, rclone copy out of the crypt remote. Each takes that directory, an empty destination and a log file and
// returns timed()'s figures (page cache dropped, until on disk).
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { PASSWORD, borgEnv } from './peers.mjs'
import { timed } from './sys.mjs'

const fresh = async (dest) => { await fs.rm(dest, { recursive: true, force: true }); await fs.mkdir(dest, { recursive: true }) }

export const RESTORES = {
  /** `restic restore latest --target DEST` */
  restic: async (dir, dest, log) => {
    await fresh(dest)
    return timed('restic', ['-r', path.join(dir, 'repo'), 'restore', 'latest', '--target', dest], {
      env: { RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(dir, 'cache') },
      log,
    })
  },
  /** `borg extract R::bench` in DEST */
  borg: async (dir, dest, log) => {
    await fresh(dest)
    return timed('borg', ['extract', `${path.join(dir, 'repo')}::bench`], { cwd: dest, env: borgEnv(dir), log })
  },
  /** `rclone copy bench-crypt: DEST` */
  rclone: async (dir, dest, log) => {
    await fresh(dest)
    return timed('rclone', ['--config', path.join(dir, 'rclone.conf'), 'copy', 'bench-crypt:', dest], { log })
  },
}
