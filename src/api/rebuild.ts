import { rebuildSet } from '../restore/rebuild.js'
import { setManifest, type SetManifest } from './set.js'

/**
 * `packer rebuild`: remakes manifest.json and blocks.idx in `carDir` from the CARs alone (reading every CAR once).
 * `force` replaces an existing manifest.
 */
export async function rebuild (carDir: string, options: { force?: boolean, onWarning?: (message: string) => void } = {}): Promise<SetManifest> {
  return setManifest(await rebuildSet(carDir, options.onWarning ?? (() => {}), !!options.force))
}
