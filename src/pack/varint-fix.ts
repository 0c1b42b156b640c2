import { writer as createWriter } from 'protons-runtime'

/**
 * Works around a protons-runtime bug (7.x and 8.0.1, also 5.x) that corrupts UnixFS nodes of files of 2 to 4 GiB.
 * Its uint64 writer keeps the low 32 bits in a signed int32 (`lo | 0`) and, when the high bits are zero, loops
 * `while (lo > 127)`: a value in [2^31, 2^32) is negative there, so one byte is written and the rest of the
 * varint is left as zeros. ipfs-unixfs writes a file's size (and each child's block size) with it, so the root node
 * of a file whose stored size lies in that range was unreadable (found by the benchmark's 3 GiB file). Such values
 * go through the writer's number path instead, which encodes them correctly; every other value is unchanged, so
 * no other CID changes. This module must be loaded before the importer encodes anything (src/pack/unixfs.ts does).
 */
const proto = Object.getPrototypeOf(createWriter()) as { uint64: (v: bigint) => unknown, uint64Number: (v: number) => unknown }
const original = proto.uint64
if (!(original as { packerFixed?: boolean }).packerFixed) {
  const fixed = function (this: typeof proto, value: bigint): unknown {
    return value >= 0x80000000n && value < 0x100000000n ? this.uint64Number(Number(value)) : original.call(this, value)
  }
  ;(fixed as { packerFixed?: boolean }).packerFixed = true
  proto.uint64 = fixed
}
