/**
 * The digests of the last `capacity` blocks written, each with the CAR holding it and its record number (its place
 * among all the blocks written): what "a block already written is
 * not written again" remembers (FORMAT.md §2). A fixed-size FIFO (the oldest digest goes when a new one comes; a hit
 * changes nothing), so the decision is deterministic and a resumed pack rebuilds the same state by replaying the
 * records of its kept CARs in order; and memory is fixed (~52 bytes a slot) whatever the size of the set.
 *
 * Open addressing with linear probing over a table of twice the capacity, keyed by the digest's first four bytes
 * (SHA-256 is uniform); a slot holds 1 + the ring position of its digest. Deletion shifts later slots back, so
 * lookups never meet tombstones.
 */
export class RecentBlocks {
  readonly capacity: number
  readonly #digests: Uint8Array
  readonly #cars: Uint32Array
  readonly #records: Float64Array
  readonly #slots: Int32Array
  readonly #mask: number
  #next = 0
  #size = 0

  constructor (capacity: number) {
    this.capacity = capacity
    this.#digests = new Uint8Array(capacity * 32)
    this.#cars = new Uint32Array(capacity)
    this.#records = new Float64Array(capacity)
    let tableSize = 1
    while (tableSize < capacity * 2) tableSize *= 2
    this.#slots = new Int32Array(tableSize)
    this.#mask = tableSize - 1
  }

  #home (d: Uint8Array, at = 0): number {
    return ((d[at]! | (d[at + 1]! << 8) | (d[at + 2]! << 16) | (d[at + 3]! << 24)) >>> 0) & this.#mask
  }

  #equals (pos: number, d: Uint8Array): boolean {
    const base = pos * 32
    for (let i = 0; i < 32; i++) if (this.#digests[base + i] !== d[i]) return false
    return true
  }

  /** The CAR holding a block with this digest and its record number, if it is among the recent ones. */
  get (digest: Uint8Array): { car: number, record: number } | undefined {
    for (let s = this.#home(digest); ; s = (s + 1) & this.#mask) {
      const v = this.#slots[s]!
      if (v === 0) return undefined
      if (this.#equals(v - 1, digest)) return { car: this.#cars[v - 1]!, record: this.#records[v - 1]! }
    }
  }

  /** Records a block just written (its digest must not be present); the oldest one goes when full. */
  add (digest: Uint8Array, car: number, record: number): void {
    const pos = this.#next
    if (this.#size === this.capacity) this.#remove(pos)
    else this.#size++
    this.#digests.set(digest.subarray(0, 32), pos * 32)
    this.#cars[pos] = car
    this.#records[pos] = record
    let s = this.#home(digest)
    while (this.#slots[s] !== 0) s = (s + 1) & this.#mask
    this.#slots[s] = pos + 1
    this.#next = (pos + 1) % this.capacity
  }

  /** Removes the digest at ring position `pos` from the table, shifting back the slots after it. */
  #remove (pos: number): void {
    let s = this.#home(this.#digests, pos * 32)
    while (this.#slots[s] !== pos + 1) s = (s + 1) & this.#mask
    let hole = s
    for (let j = (hole + 1) & this.#mask; this.#slots[j] !== 0; j = (j + 1) & this.#mask) {
      const home = this.#home(this.#digests, (this.#slots[j]! - 1) * 32)
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j
      if (!inRange) {
        this.#slots[hole] = this.#slots[j]!
        hole = j
      }
    }
    this.#slots[hole] = 0
  }
}
