import { PackerError } from '../errors.js'
import type { CarRecord } from '../format/manifest.js'

/**
 * A provider's URL of a CAR from a template (`--piece-url`): {pieceCid} is the piece CID v1, {pieceCidV2} v2
 * (FRC-0069), as storage providers serve pieces at /piece/{pieceCid} (FRC-0066).
 */
export function pieceUrl (template: string, car: CarRecord): string {
  return template.replaceAll('{pieceCid}', car.pieceCid).replaceAll('{pieceCidV2}', car.pieceCidV2)
}

/** Refuses a template that is not an http(s) URL naming the piece. */
export function checkPieceUrl (template: string): string {
  if (!/^https?:\/\/[^/]/i.test(template) || !/\{pieceCid(V2)?\}/.test(template)) {
    throw new PackerError('USAGE', `--piece-url ${template}: give an http(s) URL with {pieceCid} or {pieceCidV2} in it, e.g. https://sp.example/piece/{pieceCid}`, { subject: template })
  }
  return template
}
