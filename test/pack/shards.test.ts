import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { CLI, ROOT, bytes, describeTree, packer, packerOk, tmpDir } from '../helpers.js'
import { startSlurm, type SlurmCluster } from '../servers/slurm.js'

const BIN = '2MiB'
let src: string

/** A tree with large and small files, empty and nested directories, a symlink: cut into shards mid-directory. */
function makeTree (root: string): void {
  fs.mkdirSync(path.join(root, 'big/deeper'), { recursive: true })
  fs.mkdirSync(path.join(root, 'small'))
  fs.mkdirSync(path.join(root, 'empty'))
  for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(root, 'big', `b${i}.bin`), bytes(300_000 + i * 97_003, i))
  fs.writeFileSync(path.join(root, 'big/deeper/huge.bin'), bytes(3_500_000, 99))
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(root, 'small', `s${String(i).padStart(3, '0')}.txt`), `small file ${i}\n`)
  fs.chmodSync(path.join(root, 'small/s007.txt'), 0o600)
  fs.symlinkSync('big/b1.bin', path.join(root, 'link'))
}

beforeAll(() => {
  src = tmpDir()
  makeTree(src)
})

const memo = <T>(make: () => Promise<T>): () => Promise<T> => {
  let p: Promise<T> | undefined
  return async () => await (p ??= make())
}
/** The root of the set one machine packs from the same tree (packed once, for every test that compares with it). */
const singleMachineRoot = memo(async () => {
  const single = tmpDir()
  await packerOk(['pack', src, '-o', single, '--no-encrypt', '-b', BIN])
  return JSON.parse(fs.readFileSync(path.join(single, 'manifest.json'), 'utf8')).root as string
})
/** A recipient and its identity file (made once: the tests that encrypt only need some key). */
const recipientKey = memo(async () => {
  const identity = path.join(tmpDir(), 'k.txt')
  const recipient = (await packerOk(['keygen', '-o', identity])).stdout.trim()
  return { recipient, identity }
})

async function planned (args: string[]): Promise<{ out: string, work: string }> {
  const base = tmpDir()
  const out = path.join(base, 'set')
  const work = path.join(base, 'work')
  await packerOk(['plan', src, '-o', out, '--work', work, '-b', BIN, ...args])
  return { out, work }
}

const shard = async (work: string, i: number | 'auto', env?: NodeJS.ProcessEnv): Promise<void> => { await packerOk(['pack', '--plan', work, '--shard', String(i)], { env }) }

describe('packing one set on many machines: plan, shards, join', () => {
  it('4 shards joined give the single-machine root in clear; the set verifies and unpacks byte for byte with modes and mtimes', async () => {
    const { out, work } = await planned(['--shards', '4', '--no-encrypt'])
    expect(fs.statSync(work).mode & 0o777).toBe(0o700)
    const plan = JSON.parse(fs.readFileSync(path.join(work, 'plan.json'), 'utf8'))
    // Balanced: each shard within the largest file of the mean (files are never split).
    const sizes = plan.shards.map((s: any) => s.bytes)
    const mean = sizes.reduce((a: number, b: number) => a + b, 0) / sizes.length
    for (const s of sizes) expect(Math.abs(s - mean)).toBeLessThanOrEqual(Math.max(0.05 * mean, 3_500_000 + 1024))
    // Every shard's list names files: never in OUTDIR.
    for (let i = 0; i < 4; i++) await shard(work, i)
    const joined = await packerOk(['join', work])
    expect(joined.stdout).toMatch(/removed .*work\/shards/)
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(m.root).toBe(await singleMachineRoot())
    await packerOk(['verify', out])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
    // OUTDIR holds exactly the manifest's CARs; WORK only the record of the join; a second join does nothing.
    expect(fs.readdirSync(out).sort()).toEqual([...m.cars.map((c: any) => c.file), 'blocks.idx', 'manifest.json'].sort())
    expect(fs.readdirSync(work)).toEqual(['joined.json'])
    expect((await packerOk(['join', work])).stdout).toMatch(/nothing to do/)
    // At most one CAR is partly filled: every other is full to within one block.
    const partly = m.cars.filter((c: any) => c.size + 1024 * 1024 + 66 * 1024 <= 2 * 1024 * 1024)
    expect(partly.length).toBeLessThanOrEqual(1)
  })

  it('an encrypted sharded set (recipient) restores; a passphrase set is joined without asking for the passphrase', async () => {
    const { recipient, identity } = await recipientKey()
    const a = await planned(['--shards', '3', '-r', recipient])
    for (let i = 0; i < 3; i++) await shard(a.work, i)
    await packerOk(['join', a.work])
    const dest = tmpDir()
    await packerOk(['unpack', a.out, '-o', dest, '-i', identity])
    expect(describeTree(dest)).toEqual(describeTree(src))
    // No name of the source in what ships.
    for (const n of fs.readdirSync(a.out)) expect(fs.readFileSync(path.join(a.out, n)).includes(Buffer.from('s007.txt'))).toBe(false)

    const base = tmpDir()
    const out = path.join(base, 'set')
    const work = path.join(base, 'work')
    await packerOk(['plan', src, '-o', out, '--work', work, '--shards', '2', '-b', BIN, '--passphrase'], { env: { PACKER_PASSPHRASE: 'sharded secret' } })
    for (let i = 0; i < 2; i++) await shard(work, i)
    await packerOk(['join', work])
    const dest2 = tmpDir()
    await packerOk(['unpack', out, '-o', dest2], { env: { PACKER_PASSPHRASE: 'sharded secret' } })
    expect(describeTree(dest2)).toEqual(describeTree(src))
  })

  it('join refuses while a shard has not committed, naming it; status tells committed from pending', async () => {
    const { work } = await planned(['--shards', '3', '--no-encrypt'])
    await shard(work, 0)
    await shard(work, 2)
    const r = await packer(['join', work])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/1 of 3 shard\(s\) have not committed \(shard 1\)/)
    const s = JSON.parse((await packerOk(['status', work, '--json'])).stdout)
    expect(s.shards.map((x: any) => x.state)).toEqual(['committed', 'pending', 'committed'])
    await shard(work, 1)
    await packerOk(['join', work])
  })

  it('a shard killed with SIGKILL is dead in status, and its rerun takes over its complete CARs', async () => {
    const { out, work } = await planned(['--shards', '2', '--no-encrypt'])
    const killed = await packer(['pack', '--plan', work, '--shard', '0'], { env: { PACKER_FAULT: 'car-journaled:2' } })
    expect(killed.code).toBe(null)
    const s = JSON.parse((await packerOk(['status', work, '--json'])).stdout)
    expect(s.shards[0].state).toBe('dead')
    expect(s.shards[0].cars).toBeGreaterThanOrEqual(1)
    const rerun = await packerOk(['pack', '--plan', work, '--shard', '0', '--json'])
    expect(rerun.stdout).toMatch(/"event":"resume","cars":2/)
    await shard(work, 1)
    await packerOk(['join', work])
    await packerOk(['verify', out])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('the same shard run twice at once: one commits, the other removes its own CARs; the joined set is whole', async () => {
    const { recipient, identity } = await recipientKey()
    const { out, work } = await planned(['--shards', '2', '-r', recipient])
    const [x, y] = await Promise.all([packerOk(['pack', '--plan', work, '--shard', '0']), packerOk(['pack', '--plan', work, '--shard', '0'])])
    const outputs = [x.stdout, y.stdout]
    expect(outputs.filter((o) => /committed as run/.test(o))).toHaveLength(1)
    expect(outputs.filter((o) => /committed by another run meanwhile|nothing to do/.test(o))).toHaveLength(1)
    await shard(work, 1)
    await packerOk(['join', work])
    const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))
    expect(fs.readdirSync(out).filter((n) => n.endsWith('.car')).sort()).toEqual(m.cars.map((c: any) => c.file).sort())
    await packerOk(['verify', out])
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest, '-i', identity])
    expect(describeTree(dest)).toEqual(describeTree(src))
  })

  it('--shard auto takes the index from Kubernetes, Slurm or AWS Batch; none set is one clear error', async () => {
    const { work } = await planned(['--shards', '3', '--no-encrypt'])
    const clean = { ...process.env }
    for (const v of ['JOB_COMPLETION_INDEX', 'SLURM_ARRAY_TASK_ID', 'AWS_BATCH_JOB_ARRAY_INDEX']) delete clean[v]
    const none = await packer(['pack', '--plan', work, '--shard', 'auto'], { env: { ...clean, JOB_COMPLETION_INDEX: '', SLURM_ARRAY_TASK_ID: '', AWS_BATCH_JOB_ARRAY_INDEX: '' } })
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/none of JOB_COMPLETION_INDEX .*SLURM_ARRAY_TASK_ID .*AWS_BATCH_JOB_ARRAY_INDEX .*is set/)
    await shard(work, 'auto', { JOB_COMPLETION_INDEX: '0' })
    await shard(work, 'auto', { SLURM_ARRAY_TASK_ID: '1' })
    await shard(work, 'auto', { AWS_BATCH_JOB_ARRAY_INDEX: '2' })
    const s = JSON.parse((await packerOk(['status', work, '--json'])).stdout)
    expect(s.shards.map((x: any) => x.state)).toEqual(['committed', 'committed', 'committed'])
    const out = await packer(['pack', '--plan', work, '--shard', 'auto'], { env: { SLURM_ARRAY_TASK_ID: '7' } })
    expect(out.code).toBe(2)
    expect(out.stderr).toMatch(/shard 7 is not in the plan of .*: it has shards 0 to 2/)
  })
})

describe('a real Slurm cluster packs a set as a job array', () => {
  let cluster: SlurmCluster
  beforeAll(async () => { cluster = await startSlurm() }, 60_000)
  afterAll(async () => { await cluster?.stop() })

  it('sbatch --array=0-3 of deploy/slurm/pack-array.sbatch packs the 4 shards; join gives the single-machine root', async () => {
    const { out, work } = await planned(['--shards', '4', '--no-encrypt'])
    const bin = path.join(tmpDir(), 'packer')
    fs.writeFileSync(bin, `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 })
    const script = fs.readFileSync(path.join(ROOT, 'deploy/slurm/pack-array.sbatch'), 'utf8')
    const id = await cluster.sbatch(['--array=0-3', '--cpus-per-task=1'], script, { env: { PACKER: bin }, scriptArgs: [work] })
    const tasks = await cluster.waitJob(id, 120_000)
    expect(tasks.map((t) => [t.taskId, t.state, t.exitCode])).toEqual([[0, 'COMPLETED', 0], [1, 'COMPLETED', 0], [2, 'COMPLETED', 0], [3, 'COMPLETED', 0]])
    await packerOk(['join', work])
    expect(JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')).root).toBe(await singleMachineRoot())
    const dest = tmpDir()
    await packerOk(['unpack', out, '-o', dest])
    expect(describeTree(dest, { mtimes: true })).toEqual(describeTree(src, { mtimes: true }))
  }, 180_000)
})

describe('engine files for Kubernetes and AWS Batch', () => {
  it('the Kubernetes Indexed Job packs with --shard auto, with per-index retries and shared volumes; plan and join around it', () => {
    const all = parseAllDocuments(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/packer-job.yaml'), 'utf8')).map((d) => {
      expect(d.errors).toEqual([])
      return d.toJS()
    })
    expect(all.map((d: any) => [d.kind, d.metadata.labels.step])).toEqual([['Job', 'plan'], ['Job', 'pack'], ['Job', 'join']])
    const pack = all[1]
    expect(pack.apiVersion).toBe('batch/v1')
    expect(pack.spec.completionMode).toBe('Indexed')
    expect(pack.spec.completions).toBe(pack.spec.parallelism)
    expect(pack.spec.backoffLimitPerIndex).toBeGreaterThan(0)
    expect(pack.spec.template.spec.restartPolicy).toBe('Never')
    const c = pack.spec.template.spec.containers[0]
    expect(c.args).toEqual(['pack', '--plan', '/shared/work', '--shard', 'auto', '--jobs', '2'])
    expect(c.volumeMounts.map((v: any) => v.mountPath)).toContain('/shared')
    const plan = all[0].spec.template.spec.containers[0].args
    expect(plan.slice(0, 6)).toEqual(['plan', '/data/source', '-o', '/shared/set', '--work', '/shared/work'])
    expect(plan[plan.indexOf('--shards') + 1]).toBe(String(pack.spec.completions))
    expect(all[2].spec.template.spec.containers[0].args).toEqual(['join', '/shared/work'])
  })

  it('the AWS Batch job definition runs pack --shard auto on shared EFS, retrying but for usage errors', () => {
    const d = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/aws-batch/pack-job-definition.json'), 'utf8'))
    expect(d.type).toBe('container')
    expect(d.containerProperties.command).toEqual(['pack', '--plan', '/shared/work', '--shard', 'auto', '--jobs', '2'])
    expect(d.containerProperties.mountPoints.find((m: any) => m.containerPath === '/shared').sourceVolume).toBe('shared')
    expect(d.containerProperties.volumes.find((v: any) => v.name === 'shared').efsVolumeConfiguration.fileSystemId).toMatch(/^fs-/)
    expect(d.retryStrategy.evaluateOnExit[0]).toEqual({ onExitCode: '2', action: 'EXIT' })
  })
})
