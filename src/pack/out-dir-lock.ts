import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PackerError, isErrno } from '../errors.js'
import { processAlive } from '../process-alive.js'

export const LOCK_FILE = '.packer.lock'

/**
 * One pack per output directory at a time: `.packer.lock` holds the owner's pid and host, created with O_EXCL. A
 * lock whose process is gone (a crash, SIGKILL) is taken over, so a rerun after a crash is not blocked.
 */
export class OutDirLock {
  readonly file: string
  private constructor (file: string) { this.file = file }

  static async acquire (dir: string): Promise<OutDirLock> {
    const file = path.join(dir, LOCK_FILE)
    const me = `${process.pid} ${os.hostname()}\n`
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(file, me, { flag: 'wx' })
        return new OutDirLock(file)
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err
      }
      const [pidText, host] = (await fs.readFile(file, 'utf8').catch(() => '')).trim().split(' ')
      const pid = Number(pidText)
      if (Number.isInteger(pid) && pid > 0 && (host !== os.hostname() || processAlive(pid))) {
        throw new PackerError('LOCKED', `another packer (pid ${pid} on ${host}) is writing ${dir}; wait for it to finish or stop it (if it is gone, remove ${file})`, { subject: dir })
      }
      await fs.rm(file, { force: true }) // stale: its process is gone
    }
    throw new PackerError('LOCKED', `cannot lock ${dir}: ${file} keeps reappearing; is another packer starting?`, { subject: dir })
  }

  async release (): Promise<void> { await fs.rm(this.file, { force: true }) }
}
