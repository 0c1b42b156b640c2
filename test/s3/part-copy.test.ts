/**
 * A CAR over CopyObject's limit reaches its `<pieceCid>.car` name by UploadPartCopy in parts, against a server that
 * has it (fauxqs 2.4.1 on Node 22: test/servers/fauxqs2.ts); PACKER_TEST_COPY_OBJECT_MAX lowers the 5 GiB limit so a
 * 30 MiB CAR takes that path. The copy is byte for byte the CAR the same pack writes to disk.
 */
import fs from 'node:fs'
import path from 'node:path'
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { s3Client, type S3Store } from '../../src/s3/client.js'
import { bytes, carFiles, packerOk, tmpDir } from '../helpers.js'
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js'
import { startFauxqs2, type ChildS3 } from '../servers/fauxqs2.js'
import { NO_PROXY_ENV, TEST_ENV, setEnv } from './s3-env.js'

const MiB = 1024 * 1024
let server: ChildS3
let proxy: FaultProxy
let store: S3Store
let restoreEnv: () => void

beforeAll(async () => {
  restoreEnv = setEnv({ ...TEST_ENV, ...NO_PROXY_ENV })
  server = await startFauxqs2()
  proxy = await startFaultProxy(server.endpoint)
  store = await s3Client({ endpoint: server.endpoint })
  await store.client.send(new CreateBucketCommand({ Bucket: 'out' }))
}, 180_000)

afterAll(async () => {
  store?.client.destroy()
  await proxy?.stop()
  await server?.stop()
  restoreEnv?.()
})

it('a CAR past the copy limit is copied to its name by UploadPartCopy in parts, byte for byte the CAR packed to disk', async () => {
  const src = tmpDir()
  fs.writeFileSync(path.join(src, 'big.bin'), bytes(30 * MiB, 3))
  fs.writeFileSync(path.join(src, 'small.txt'), 'small\n')
  const env = { ...TEST_ENV, ...NO_PROXY_ENV, XDG_STATE_HOME: tmpDir(), PACKER_TEST_COPY_OBJECT_MAX: String(6 * MiB) }
  const local = tmpDir()
  await packerOk(['pack', src, '-o', local, '--no-encrypt', '--bin-size', '40MiB'], { env })
  const [car] = carFiles(local)
  await packerOk(['pack', src, '-o', 's3://out/set', '--no-encrypt', '--bin-size', '40MiB', '--s3-endpoint', proxy.url], { env })

  // the parts of the copy: PUTs with an uploadId to the CAR's own name (its bytes went up to .partial-0.car)
  const copyParts = proxy.requests.filter((q) => q.method === 'PUT' && q.path.includes(`/out/set/${car}?`) && q.path.includes('uploadId='))
  const size = fs.statSync(path.join(local, car!)).size
  expect(copyParts.length).toBe(Math.ceil(size / (6 * MiB)))
  expect(copyParts.every((q) => q.status === 200)).toBe(true)

  const listed = await store.client.send(new ListObjectsV2Command({ Bucket: 'out', Prefix: 'set/' }))
  expect((listed.Contents ?? []).map((o) => o.Key!.slice(4)).sort()).toEqual(fs.readdirSync(local).sort())
  const got = await (await store.client.send(new GetObjectCommand({ Bucket: 'out', Key: `set/${car}` }))).Body!.transformToByteArray()
  expect(Buffer.from(got).equals(fs.readFileSync(path.join(local, car!)))).toBe(true)
  await packerOk(['verify', 's3://out/set', '--s3-endpoint', server.endpoint], { env })
}, 180_000)
