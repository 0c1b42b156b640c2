import { Option, type Command } from 'commander'

/** How any command reaches S3 for an s3:// argument (pack, plan, and the readers of a set: ls, verify, unpack, mount, pieces). */
export function addS3AccessOptions (cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible store to use for s3:// (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3); credentials come from the AWS chain (environment, profile, role)')
    .option('--s3-path-style', 'address buckets as ENDPOINT/BUCKET (automatic for an IP address or localhost)')
    .option('--s3-timeout <seconds>', 'how long an S3 request may go without a byte before it is retried', '60')
}

/** The options of commands whose SOURCE may be in S3 (pack, plan): access, and where an object's mtime comes from. */
export function addS3Options (cmd: Command): Command {
  return addS3AccessOptions(cmd)
    .addOption(new Option('--s3-mtime <rule>', "a source object's mtime: its Last-Modified, or x-amz-meta-mtime as rclone stores it (one HEAD request per object)").choices(['last-modified', 'metadata']).default('last-modified'))
}

/** The S3 access options as the API takes them. */
export function s3AccessOptions (o: any): { s3Endpoint?: string, s3PathStyle?: boolean, s3Timeout?: string } {
  return { s3Endpoint: o.s3Endpoint, s3PathStyle: o.s3PathStyle, s3Timeout: o.s3Timeout }
}

/** The S3 options as pack and plan take them. */
export function s3Options (o: any): { s3Endpoint?: string, s3PathStyle?: boolean, s3Mtime?: 'metadata' | 'last-modified', s3Timeout?: string } {
  return { ...s3AccessOptions(o), s3Mtime: o.s3Mtime }
}
