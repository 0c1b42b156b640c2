import { PackerError } from '../errors.js'

/** True for `s3://…`: a place pack writes to or reads from, and readers read a set from, in S3. */
export const isS3Url = (where: string): boolean => where.startsWith('s3://')

/** `s3://BUCKET/PREFIX` as its parts; the prefix is taken as written (keys are not URL-encoded). */
export function parseS3Url (url: string): { bucket: string, prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/s.exec(url)
  if (m === null) throw new PackerError('USAGE', `${url}: not an S3 URL; write s3://BUCKET or s3://BUCKET/PREFIX`, { subject: url })
  return { bucket: m[1]!, prefix: m[2] ?? '' }
}

/** A prefix as the "directory" it names: '' (the bucket) or ending in '/'. */
export function asDirectory (prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`
}
