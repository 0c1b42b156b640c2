/**
 * SOURCE and OUTDIR as pack takes them: a local path, or `s3://BUCKET/PREFIX`. The S3 implementations (and the AWS
 * SDK, ~280 ms to load) are imported only when one is named.
 */
import { PackerError } from '../errors.js'
import type { SetOutput } from '../car/set-output.js'
import { localTree } from '../source/local-tree.js'
import type { SourceSpec, TreeSource } from '../source/tree-source.js'
import type { S3Options } from '../s3/client.js'
import type { MtimeRule } from '../s3/s3-tree.js'
import { asDirectory, isS3Url, parseS3Url } from '../s3/s3-url.js'
import { dirOutput } from './dir-output.js'

/** How packer reaches S3 (`--s3-…` options); credentials never: the SDK's default chain gives them. */
export interface S3Settings {
  /** The store's URL (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3). */
  endpoint?: string
  /** Address buckets as ENDPOINT/BUCKET (automatic for an IP address or localhost). */
  pathStyle?: boolean
  /** Where a source object's mtime comes from (default 'last-modified'). */
  mtime?: MtimeRule
  /** Seconds a request may go without a byte before it is aborted and retried (default 60). */
  timeout?: number
}

/** The S3 client's options from the settings (the timeout checked). */
export function s3ClientOptions (s: S3Settings): S3Options {
  if (s.timeout !== undefined && !(Number.isFinite(s.timeout) && s.timeout > 0)) {
    throw new PackerError('USAGE', `--s3-timeout ${s.timeout}: give a number of seconds above 0`)
  }
  return { endpoint: s.endpoint, pathStyle: s.pathStyle, idleTimeoutMs: s.timeout === undefined ? undefined : s.timeout * 1000 }
}

export function mtimeRuleOf (rule: string | undefined): MtimeRule {
  if (rule === undefined || rule === 'last-modified' || rule === 'metadata') return rule ?? 'last-modified'
  throw new PackerError('USAGE', `--s3-mtime ${rule}: give metadata (x-amz-meta-mtime, one HEAD request per object) or last-modified`)
}

/** The tree pack reads: a local directory or file, or the objects under an S3 prefix. */
export async function openSource (source: string, s3: S3Settings = {}): Promise<TreeSource> {
  if (!isS3Url(source)) return localTree(source)
  const { s3Tree } = await import('../s3/s3-tree.js')
  return await s3Tree(source, { ...s3ClientOptions(s3), mtime: mtimeRuleOf(s3.mtime) })
}

/** A source as a plan recorded it (SourceSpec), on this machine. */
export async function openSourceSpec (spec: SourceSpec): Promise<TreeSource> {
  return await openSource(spec.source, spec.s3)
}

/** Where pack writes the set: a local directory, or an S3 prefix. */
export async function openOutput (out: string, s3: S3Settings = {}): Promise<SetOutput> {
  if (!isS3Url(out)) return dirOutput(out)
  const { s3Output } = await import('../s3/s3-output.js')
  return await s3Output(out, s3ClientOptions(s3))
}

/** Refuses an S3 output inside an S3 source (or around it): the walk would list the set being written. */
export function refuseNested (source: string, out: string): void {
  if (!isS3Url(source) || !isS3Url(out)) return
  const [s, o] = [source, out].map(parseS3Url)
  if (s!.bucket !== o!.bucket) return
  const [sd, od] = [asDirectory(s!.prefix), asDirectory(o!.prefix)]
  if (od.startsWith(sd) || sd.startsWith(od)) {
    throw new PackerError('USAGE', `the output ${out} and the source ${source} overlap: the walk would read the set being written; choose an output prefix outside the source`, { subject: out })
  }
}
