/**
 * One pack per S3 prefix at a time, without conditional writes (which not every store has): each pack writes a lock
 * object of its own, `PREFIX.packer.lock.<host>_<pid>_<random>`, then lists the locks; any other live lock and it
 * removes its own and refuses (restic's scheme). With a store's read-after-write consistency (AWS S3 since 2020,
 * MinIO, Ceph), two packs starting together cannot both miss each other: the later listing sees both. Both may then
 * see each other; so a pack that finds only locks written within a few seconds of its own (a pack started at the same
 * moment, maybe) removes its own, waits a random while and tries again, a few times, before it refuses: one of two
 * packs started together proceeds. Each try writes before it lists, so two never both proceed. A pack rewrites its
 * lock every minute; a lock not rewritten for five minutes (by the store's clock), or left by a process of this host
 * that is gone, is stale: it is removed and does not count.
 */
import crypto from 'node:crypto'
import os from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, type _Object } from '@aws-sdk/client-s3'
import { PackerError } from '../errors.js'
import { processAlive } from '../process-alive.js'
import type { S3Store } from './client.js'
import { sendS3 } from './s3-error.js'

export const LOCK_PREFIX = '.packer.lock.'
const REFRESH_MS = 60_000
/**
 * Test-only, like PACKER_FAULT: PACKER_TEST_S3_LOCK_STALE_MS=N makes a lock stale after N ms instead of five minutes,
 * so a test sees a lock taken over by age without backdating the store's clock.
 */
const STALE_MS = Number(process.env.PACKER_TEST_S3_LOCK_STALE_MS) || 5 * 60_000
/** Locks written this close together (by the store's clock) may be packs started together: tries before refusing. */
const TOGETHER_MS = 5_000
const TRIES = 4

interface Holder { host: string, pid: number }

/** Who holds a lock, from its key: `<host>_<pid>_<random>` after the prefix. */
function holderOf (name: string): Holder | null {
  const m = /^(.*)_(\d+)_[0-9a-f]+$/.exec(name.slice(LOCK_PREFIX.length))
  return m === null ? null : { host: m[1]!, pid: Number(m[2]) }
}

export async function acquireS3Lock (store: S3Store, bucket: string, base: string): Promise<{ release: () => Promise<void> }> {
  const host = os.hostname().replace(/[^A-Za-z0-9.-]/g, '-')
  const key = `${base}${LOCK_PREFIX}${host}_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
  const where = `s3://${bucket}/${base}`
  const send = async <T>(command: object, key: string): Promise<T> => await sendS3<T>(store, command, { bucket, key })
  const body = JSON.stringify({ host: os.hostname(), pid: process.pid, started: new Date().toISOString() }) + '\n'
  const write = async (): Promise<void> => { await send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: Buffer.byteLength(body) }), key) }
  const remove = async (k: string): Promise<void> => { await send(new DeleteObjectCommand({ Bucket: bucket, Key: k }), k) }
  for (let tried = 1; ; tried++) {
    await write()
    try {
      const locks: _Object[] = []
      let token: string | undefined
      do {
        const page = await send<{ Contents?: _Object[], IsTruncated?: boolean, NextContinuationToken?: string }>(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: `${base}${LOCK_PREFIX}`, ContinuationToken: token }), `${base}${LOCK_PREFIX}`)
        locks.push(...page.Contents ?? [])
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      const mine = locks.find((l) => l.Key === key)?.LastModified?.getTime() ?? Date.now()
      const live: Array<{ key: string, holder: Holder | null, age: number }> = []
      for (const l of locks) {
        if (l.Key === key) continue
        const holder = holderOf(l.Key!.slice(base.length))
        const age = mine - (l.LastModified?.getTime() ?? 0)
        const gone = holder !== null && holder.host === host && !processAlive(holder.pid)
        if (gone || age > STALE_MS) await remove(l.Key!)
        else live.push({ key: l.Key!, holder, age })
      }
      if (live.length === 0) break
      if (tried < TRIES && live.every((l) => Math.abs(l.age) <= TOGETHER_MS)) {
        await remove(key)
        await sleep(200 + crypto.randomInt(1000))
        continue
      }
      const { key: theirs, holder, age } = live[0]!
      const who = holder === null ? 'another packer' : `another packer (pid ${holder.pid} on ${holder.host})`
      throw new PackerError('LOCKED', `${who} is writing ${where} (its lock s3://${bucket}/${theirs} was written ${Math.max(0, Math.round(age / 1000))} s ago); wait for it to finish or stop it (if it is gone, delete that object)`, { subject: where })
    } catch (err) {
      await remove(key).catch(() => {})
      throw err
    }
  }
  const timer = setInterval(() => { write().catch(() => {}) }, REFRESH_MS)
  timer.unref()
  return {
    // A lock that cannot be removed (the store is unreachable) must not hide why the pack stopped: a rerun on this
    // host finds it stale (its process gone), elsewhere after five minutes.
    release: async () => {
      clearInterval(timer)
      await remove(key).catch(() => {})
    },
  }
}
