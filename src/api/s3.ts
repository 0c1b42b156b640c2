import { s3ClientOptions, type S3Settings } from '../pack/locations.js'
import type { S3Options as S3ClientOptions } from '../s3/client.js'

/**
 * How packer reaches S3 when a set, SOURCE or the output is `s3://BUCKET/PREFIX` (credentials: the AWS SDK's default
 * chain, never options).
 */
export interface S3Access {
  /** The store's URL, for S3-compatible stores (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3). */
  s3Endpoint?: string
  /** Address buckets as ENDPOINT/BUCKET (automatic for an IP address or localhost). */
  s3PathStyle?: boolean
  /** Seconds a request may go without a byte before it is aborted and retried (default 60). */
  s3Timeout?: number | string
}

/** S3 as pack and plan take it: how it is reached, and where a source object's mtime comes from. */
export interface S3Options extends S3Access {
  /**
   * Where a source object's mtime comes from: 'last-modified' (the default: the listing's, free) or 'metadata'
   * (`x-amz-meta-mtime` as rclone stores it, else Last-Modified: one HEAD request per object).
   */
  s3Mtime?: 'metadata' | 'last-modified'
}

/** The S3 settings of an API call's options. */
export function s3SettingsOf (o: S3Options): S3Settings {
  return { endpoint: o.s3Endpoint, pathStyle: o.s3PathStyle, mtime: o.s3Mtime, timeout: o.s3Timeout === undefined ? undefined : Number(o.s3Timeout) }
}

/** The S3 client's options for reading a set (--s3-mtime is a source's only). */
export function s3ReadOptions (o: S3Access): S3ClientOptions {
  return s3ClientOptions(s3SettingsOf(o))
}
