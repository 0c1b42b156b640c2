/**
 * Crash points for the fault suite: with PACKER_FAULT=NAME (or NAME:N for the N-th time it is reached) the process
 * kills itself with SIGKILL there, as a power cut or the OOM killer would. Unset in normal use: a no-op.
 */
const spec = process.env.PACKER_FAULT
const counts = new Map<string, number>()

export function faultPoint (name: string): void {
  if (spec === undefined) return
  const [want, nth] = spec.split(':')
  if (want !== name) return
  const n = (counts.get(name) ?? 0) + 1
  counts.set(name, n)
  if (n === Number(nth ?? 1)) process.kill(process.pid, 'SIGKILL')
}
