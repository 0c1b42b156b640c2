/**
 * How much the bounded structures hold in memory before they go to disk: a directory's names while walking, the
 * directory builders, the sorts (block index, rebuild). PACKER_TEST_TINY_MEMORY=1 — for tests only, like PACKER_FAULT —
 * shrinks every one, so that small trees take the on-disk paths a tree of millions of files takes.
 */
const tiny = process.env.PACKER_TEST_TINY_MEMORY === '1'

export const LIMITS = {
  /** Bytes of records an external sort holds before writing a sorted run. */
  sortMemory: tiny ? 4096 : 32 << 20,
  /** Bytes of entries the open UnixFS directories hold together before the largest spills. */
  directoryBudget: tiny ? 1024 : 32 << 20,
  /** Names of one directory a walk sorts in memory (more are sorted on disk). */
  namesInMemory: tiny ? 8 : 100_000,
  /** Names of an S3 listing held back (waiting to know their place) before the store is asked (src/s3/listing-order.ts). */
  listingHeld: tiny ? 4 : 1000,
}
