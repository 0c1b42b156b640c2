import { murmur3128 } from '@multiformats/murmur3'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { dagPbCid, encodeDirectoryNode, type NodeLink } from './dag-pb-node.js'
import type { BlockSink } from './unixfs.js'

/**
 * UnixFS HAMT-sharded directories as ipfs-unixfs-importer writes them (dir-sharded.js over hamt-sharding): fanout 256
 * (8 bits a level); a name's slot at level L is byte L of the first 8 bytes of murmur3-x64-128 of its UTF-8 bytes
 * (the importer reverses those 8 bytes and hamt-sharding reads bits from the end: byte 0 first); past level 7 the
 * hash goes on with murmur3 of the name followed by one byte, the hash's number (1, 2…: hamt-sharding's InfiniteHash).
 * A slot holding one name is a link "XX" + name (XX: the slot in 2 uppercase hex digits), one holding more is a
 * sub-shard linked as "XX". Each node's Data: UnixFS type hamt-sharded-directory, fanout 256, hashType 0x22 (murmur3),
 * and the bitfield of used slots (bit i = slot i, little-endian bytes trimmed of high zero bytes, then reversed).
 * Tsize of a link to a shard: the shard's block plus the Tsizes of its links. Blocks are put as the importer puts
 * them: a shard after its sub-shards, sub-shards in slot order, the root last.
 */

export const HAMT_FANOUT = 256
const HASH_TYPE_MURMUR3 = 0x22n
const HASH_BYTES = 8
/** More levels than this means the same name twice, which the callers reject before. */
const MAX_LEVELS = 64 * HASH_BYTES

/** The name's hash for the HAMT: number 0 is the one slots of levels 0 to 7 come from, number n levels 8n to 8n+7. */
export function hamtHash (nameBytes: Uint8Array, n = 0): Uint8Array {
  const input = n === 0 ? nameBytes : Uint8Array.from([...nameBytes, n & 0xff])
  const hash = murmur3128.encode(input)
  // Typed as possibly asynchronous; this implementation (pure JS) is not.
  if (!(hash instanceof Uint8Array)) throw new Error('murmur3: expected a synchronous hash')
  return hash.subarray(0, HASH_BYTES)
}

export interface HamtEntry {
  /** UTF-8. */
  name: Uint8Array
  /** hamtHash(name). */
  hash: Uint8Array
  /** The linked CID's bytes. */
  cid: Uint8Array
  size: number
}

export type HamtHash = (nameBytes: Uint8Array, n: number) => Uint8Array

/** The slot of an entry at a level: hash bytes, continued by the further hashes when two names share 64 bits. */
function slotAt (e: HamtEntry & { more?: Uint8Array[] }, level: number, hash: HamtHash): number {
  if (level < HASH_BYTES) return e.hash[level]
  const n = Math.floor(level / HASH_BYTES)
  e.more ??= []
  e.more[n - 1] ??= hash(e.name, n)
  return e.more[n - 1][level % HASH_BYTES]
}

/** The number of levels whose slot two entries share. */
function sharedLevels (a: HamtEntry, b: HamtEntry, hash: HamtHash): number {
  let level = 0
  while (slotAt(a, level, hash) === slotAt(b, level, hash)) {
    if (++level === MAX_LEVELS) throw new Error(`HAMT: the names ${shown(a.name)} and ${shown(b.name)} hash alike over ${MAX_LEVELS} levels`)
  }
  return level
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

const fromUtf8 = new TextDecoder()

/** A name in an error message. */
export function shown (name: Uint8Array): string {
  return JSON.stringify(fromUtf8.decode(name))
}

interface ShardNode {
  links: NodeLink[]
  /** Used slots, a bit each (bit i of byte i >> 3). */
  bitfield: Uint8Array
  lastSlot: number
  /** Its slot in its parent (unused for the root). */
  slot: number
}

/**
 * Builds a HAMT bottom-up in one pass over entries given in the order of their hashes (the first 8 bytes; entries
 * whose 8 bytes are equal may come in any order): memory is the open path, at most one node a level. An entry's level
 * is one more than the levels it shares with its neighbours, so each is placed when the next is known.
 */
export class HamtBuilder {
  readonly #sink: BlockSink
  readonly #hash: HamtHash
  /** The open nodes, the root first; open[L] is at level L. */
  readonly #open: ShardNode[] = [newNode(0)]
  /** Entries with the same 8 hash bytes as the last one, to be ordered on the further hashes. */
  #group: HamtEntry[] = []
  /** The entry waiting for its successor, and the levels it shares with its predecessor. */
  #waiting: HamtEntry | undefined
  #waitingShared = 0

  /** `hash`: how entry.hash was made (hamtHash; tests give a weaker one, to make names share all 64 bits). */
  constructor (sink: BlockSink, hash: HamtHash = hamtHash) {
    this.#sink = sink
    this.#hash = hash
  }

  async add (entry: HamtEntry): Promise<void> {
    const last = this.#group[this.#group.length - 1]
    if (last !== undefined && !sameBytes(last.hash, entry.hash)) await this.#flushGroup()
    this.#group.push(entry)
  }

  /** Puts the remaining nodes, the root last; returns the root and its size (block + Tsizes, what a parent records). */
  async finish (): Promise<{ cid: CID, size: number }> {
    await this.#flushGroup()
    if (this.#waiting !== undefined) await this.#place(this.#waiting, this.#waitingShared, this.#waitingShared)
    while (this.#open.length > 1) await this.#closeDeepest()
    return await this.#encode(this.#open[0])
  }

  async #flushGroup (): Promise<void> {
    const group = this.#group
    this.#group = []
    if (group.length > 1) {
      group.sort((a, b) => Buffer.compare(a.name, b.name))
      for (let i = 1; i < group.length; i++) {
        if (sameBytes(group[i - 1].name, group[i].name)) throw new Error(`the name ${shown(group[i].name)} is given twice in one directory`)
      }
      group.sort((a, b) => { const l = sharedLevels(a, b, this.#hash); return slotAt(a, l, this.#hash) - slotAt(b, l, this.#hash) })
    }
    for (const e of group) await this.#next(e)
  }

  async #next (e: HamtEntry): Promise<void> {
    const previous = this.#waiting
    this.#waiting = e
    if (previous === undefined) return
    const shared = sharedLevels(previous, e, this.#hash)
    await this.#place(previous, this.#waitingShared, Math.max(this.#waitingShared, shared))
    this.#waitingShared = shared
  }

  /** Places an entry at `level`, after closing the nodes its predecessor was in deeper than what they share. */
  async #place (e: HamtEntry, sharedWithPrevious: number, level: number): Promise<void> {
    while (this.#open.length - 1 > sharedWithPrevious) await this.#closeDeepest()
    while (this.#open.length <= level) this.#open.push(newNode(slotAt(e, this.#open.length - 1, this.#hash)))
    const slot = slotAt(e, level, this.#hash)
    const label = SLOT_LABELS[slot]
    const name = new Uint8Array(label.length + e.name.length)
    name.set(label)
    name.set(e.name, label.length)
    addLink(this.#open[level], slot, { name, cid: e.cid, tsize: e.size })
  }

  async #closeDeepest (): Promise<void> {
    const node = this.#open.pop()!
    const { cid, size } = await this.#encode(node)
    addLink(this.#open[this.#open.length - 1], node.slot, { name: SLOT_LABELS[node.slot], cid: cid.bytes, tsize: size })
  }

  async #encode (node: ShardNode): Promise<{ cid: CID, size: number }> {
    // hamt-sharding's bitfield: little-endian bytes without the high zero bytes (one at least), then reversed.
    const used = node.links.length === 0 ? 0 : (node.lastSlot >> 3) + 1
    const data = node.bitfield.slice(0, used).reverse()
    const unixfs = new UnixFS({ type: 'hamt-sharded-directory', data, fanout: BigInt(HAMT_FANOUT), hashType: HASH_TYPE_MURMUR3 })
    // Links are in slot order, which is the order of their names, as dag-pb wants.
    const bytes = encodeDirectoryNode(unixfs.marshal(), node.links)
    const cid = dagPbCid(bytes)
    await this.#sink.put(cid, bytes)
    return { cid, size: node.links.reduce((sum, l) => sum + l.tsize, bytes.length) }
  }
}

function newNode (slot: number): ShardNode {
  return { links: [], bitfield: new Uint8Array(HAMT_FANOUT / 8), lastSlot: -1, slot }
}

function addLink (node: ShardNode, slot: number, link: NodeLink): void {
  node.links.push(link)
  node.bitfield[slot >> 3] |= 1 << (slot & 7)
  node.lastSlot = slot
}

/** A slot's label: 2 uppercase hex digits (UTF-8). */
const SLOT_LABELS = Array.from({ length: HAMT_FANOUT }, (_, i) => new TextEncoder().encode(i.toString(16).toUpperCase().padStart(2, '0')))
