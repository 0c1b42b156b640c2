import { isErrno } from './errors.js'

/** Whether a process of this host exists (one of another user's counts): what tells a lock left by a crash. */
export function processAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return isErrno(err, 'EPERM') }
}
