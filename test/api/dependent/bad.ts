// Mistakes the package's types must catch (test/api/package.test.ts expects tsc to report each line marked ERROR).
import { pack, verify } from 'filecoin-packer'
import type { CarSet } from 'filecoin-packer/dist/read/car-set.js' // ERROR: internals are not exported

export const set: CarSet | null = null
await pack('src', { output: 'out', binSize: true }) // ERROR: binSize is a number or a string
await pack('src', { output: 'out', onEvent: (e) => e.pieceCid }) // ERROR: only 'car' events have a pieceCid
await verify('set', { identities: 'key.txt' }) // ERROR: identities is a list
