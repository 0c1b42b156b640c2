/**
 * Temporary: src/restore/restorer.ts (reworked in parallel) still imports the reader from here. It lives in
 * src/read/ now; once restorer.ts imports '../read/reader.js', this file goes.
 */
export { SetReader as MountReader } from '../read/reader.js'
