import crypto from 'node:crypto'

/** Blocks at least this large are hashed off the JavaScript thread. */
const OFF_THREAD_HASH = 256 * 1024

/**
 * True when `bytes` hash to `digest` (SHA-256). Large blocks are hashed on libuv's thread pool (WebCrypto), so
 * several are checked at once, off the thread that decrypts and writes; small ones are cheaper to hash here.
 */
export async function hashMatches (bytes: Uint8Array, digest: Uint8Array): Promise<boolean> {
  const got = bytes.length >= OFF_THREAD_HASH
    ? Buffer.from(await crypto.webcrypto.subtle.digest('SHA-256', bytes))
    : crypto.createHash('sha256').update(bytes).digest()
  return got.equals(digest)
}
