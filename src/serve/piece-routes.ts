import type { IncomingMessage, ServerResponse } from 'node:http'
import { CID } from 'multiformats/cid'
import type { CarRecord } from '../format/manifest.js'
import { CAR_CONTENT_TYPE, IMMUTABLE, sendFile, sendText } from './file-response.js'
import type { ServedFiles } from './served-files.js'

/**
 * Piece retrieval as storage providers serve it: `/piece/{pieceCid}` (FRC-0066) and the piece locator
 * `/piece?id={pieceCid}`, for a v1 (`baga…`) or v2 (`bafkzcib…`) piece CID. The bytes are the CAR the manifest gives
 * that piece CID, found by content (ServedFiles), so a misnamed CAR is served under its own piece CID and no other.
 */
export class PieceRoutes {
  readonly #files: ServedFiles
  readonly #cars: CarRecord[]
  /** Both piece CIDs of every CAR, as CID#toString gives them → the CAR's index. */
  readonly #byPieceCid = new Map<string, number>()

  constructor (files: ServedFiles, cars: CarRecord[]) {
    this.#files = files
    this.#cars = cars
    cars.forEach((c, i) => {
      this.#byPieceCid.set(CID.parse(c.pieceCid).toString(), i)
      this.#byPieceCid.set(CID.parse(c.pieceCidV2).toString(), i)
    })
  }

  /** Answers for `pieceCid` (the path component or the id parameter): the CAR's bytes, or 404. */
  async serve (req: IncomingMessage, res: ServerResponse, pieceCid: string): Promise<void> {
    const car = this.#carOf(pieceCid)
    const file = car === undefined ? null : await this.#files.openCar(car)
    if (car === undefined || file === null) {
      sendText(req, res, 404, car === undefined ? 'no such piece in this set' : 'this piece\'s CAR is not here')
      return
    }
    await sendFile(req, res, file, { contentType: CAR_CONTENT_TYPE, etag: `"${this.#cars[car]!.pieceCid}"`, cacheControl: IMMUTABLE })
  }

  #carOf (text: string): number | undefined {
    try { return this.#byPieceCid.get(CID.parse(text).toString()) } catch { return undefined }
  }
}
