import { nativeAddon } from '../native-addon.js'

/**
 * The plaintext of a whole age file opened with its file key in the native addon (native/src/age.c): one call, for
 * the small files a restore opens by the thousand (in JavaScript each cost several HMAC and cipher objects). null
 * when the addon is absent or the file does not open: then decryptStream opens it, or names the fault.
 */
export function nativeOpenFile (fileKey: Uint8Array, file: Uint8Array): Buffer | null {
  return nativeAddon()?.ageOpenFile(fileKey, file) ?? null
}
