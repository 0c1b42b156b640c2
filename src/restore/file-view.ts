import { exporter, type UnixFSFile, type RawNode } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { PackerError } from '../errors.js'
import { displayPath } from '../format/stored-path.js'
import type { TableEntry } from '../format/file-table.js'
import { SeekableAgeReader, decryptStream } from '../crypto/index.js'
import type { CarSet } from './car-set.js'

/** Bytes asked of the exporter at a time: bounds memory (its content() reads ahead without backpressure). */
const WINDOW = 16 * 1024 * 1024

type StoredFile = UnixFSFile | RawNode

/**
 * The one place that knows how a file is laid out in a set: plaintext range → age chunks → UnixFS leaves → CAR
 * offsets. unpack, the mount and random reads all go through it. Every block is hash-checked by the BlockSource and
 * every age chunk authenticated; a file whose stored size differs from the table's is refused.
 */
export class FileView {
  readonly #set: CarSet

  constructor (set: CarSet) { this.#set = set }

  async #stored (e: TableEntry): Promise<StoredFile> {
    const entry = await exporter(CID.parse(e.cid!), this.#set.blocks.blockstore as any)
    if (entry.type !== 'file' && entry.type !== 'raw') {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: ${e.cid} is not a file; the set is damaged`, { subject: displayPath(e.path) })
    }
    const size = entry.type === 'file' ? Number(entry.unixfs.fileSize()) : entry.node.length
    if (size !== e.storedSize) {
      throw new PackerError('CORRUPT', `${displayPath(e.path)}: stored data is ${size} bytes, the file table says ${e.storedSize}; the set is damaged`, { subject: displayPath(e.path) })
    }
    return entry
  }

  async * #storedRange (entry: StoredFile, start: number, end: number): AsyncGenerator<Uint8Array> {
    for (let at = start; at < end; at += WINDOW) {
      yield * entry.content({ offset: at, length: Math.min(WINDOW, end - at) })
    }
  }

  /** The file's plaintext, streamed in order with bounded memory. */
  async * stream (e: TableEntry): AsyncGenerator<Uint8Array> {
    const entry = await this.#stored(e)
    const stored = this.#storedRange(entry, 0, e.storedSize!)
    if (e.enc) yield * decryptStream(stored, { fileKey: e.enc.key })
    else yield * stored
  }

  /** Plaintext bytes [start, end) of a file, reading only the blocks and age chunks that hold them. */
  async read (e: TableEntry, start: number, end: number): Promise<Buffer> {
    end = Math.min(end, e.size!)
    if (start >= end) return Buffer.alloc(0)
    const entry = await this.#stored(e)
    const readStored = async (offset: number, length: number): Promise<Buffer> => {
      const parts: Uint8Array[] = []
      for await (const p of this.#storedRange(entry, offset, offset + length)) parts.push(p)
      return Buffer.concat(parts)
    }
    if (!e.enc) return await readStored(start, end - start)
    const reader = new SeekableAgeReader({ readCiphertext: readStored, fileKey: e.enc.key, headerLength: e.enc.headerLength, plaintextSize: e.size! })
    return await reader.read(start, end)
  }
}
