import { pieceHasherBackend } from '../car/piece-hasher.js'

/** 'native': packer's C addon (fast); 'data-segment': the JavaScript fallback, about 100× slower. */
export type CommpBackend = 'native' | 'data-segment'

/** Which CommP implementation pack, verify and rebuild use in this process. */
export function commpBackend (): CommpBackend {
  return pieceHasherBackend()
}
