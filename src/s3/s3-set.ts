import type { CarRecord } from '../format/manifest.js'
import { s3Client, type S3Options } from './client.js'
import { S3Cars } from './s3-cars.js'
import { S3SetFiles } from './s3-set-files.js'
import { asDirectory, parseS3Url } from './s3-url.js'

/** What reads a set in S3 (`s3://BUCKET/PREFIX`: its files, its CARs, or both), through one client. */
export interface S3SetAccess {
  files: (url: string) => S3SetFiles
  cars: (url: string, cars: CarRecord[]) => S3Cars
}

export async function s3SetAccess (opts: S3Options = {}): Promise<S3SetAccess> {
  const store = await s3Client(opts)
  const at = (url: string): [string, string] => {
    const { bucket, prefix } = parseS3Url(url)
    return [bucket, asDirectory(prefix)]
  }
  return {
    files: (url) => new S3SetFiles(store, ...at(url)),
    cars: (url, cars) => new S3Cars(store, ...at(url), cars),
  }
}
