import fs from 'node:fs/promises'
import path from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import type { ImportCandidate } from 'ipfs-unixfs-importer'
import { PackerError, isErrno } from '../errors.js'
import { CarSetWriter } from '../car/car-set-writer.js'
import { INDEX_FILE } from '../car/block-index.js'
import { writeFileDurably } from '../car/durable-file.js'
import { MANIFEST_FILE, MANIFEST_VERSION, encodeManifest, type CarRecord, type Manifest } from '../format/manifest.js'
import { encodeTableEntry, encodeTableHeader, type TableEntry } from '../format/file-table.js'
import { walkSource, type SourceEntry } from '../source/walk.js'
import { readSourceFile } from '../source/file-reader.js'
import { importFile, importTree } from './unixfs.js'
import type { SetEncryption } from './set-encryption.js'
import { VERSION } from '../version.js'

export interface PackOptions {
  source: string
  out: string
  binSize: number
  /** null: files are stored in clear (`--no-encrypt`). */
  encryption: SetEncryption | null
  warn: (msg: string) => void
  progress?: (event: PackEvent) => void
}

export type PackEvent =
  | { type: 'scanned', files: number, bytes: number }
  | { type: 'file', path: Buffer, bytes: number }
  | { type: 'car', car: CarRecord, index: number }

export interface PackResult { manifest: Manifest, files: number, bytes: number }

export const TABLE_FILE_PLAIN = 'table.jsonl'
export const TABLE_FILE_ENCRYPTED = 'table.jsonl.age'

/** Name a file gets in the flat UnixFS tree of a hidden-names set: its position, base 36, fixed width. */
function storedName (n: number): string { return n.toString(36).padStart(8, '0') }

async function prepareOutDir (out: string): Promise<void> {
  await fs.mkdir(out, { recursive: true }).catch((err) => {
    if (isErrno(err, 'EEXIST') || isErrno(err, 'ENOTDIR')) throw new PackerError('OUTPUT', `output ${out} exists and is not a directory; choose a directory`, { subject: out })
    throw new PackerError('OUTPUT', `cannot create output directory ${out}: ${(err as Error).message}`, { subject: out, cause: err })
  })
  const names = await fs.readdir(out)
  if (names.includes(MANIFEST_FILE)) {
    throw new PackerError('OUTPUT', `output ${out} already holds a packer set (manifest.json); choose an empty directory`, { subject: out })
  }
  const foreign = names.filter((n) => !n.startsWith('.partial-'))
  if (foreign.length > 0) {
    throw new PackerError('OUTPUT', `output ${out} is not empty (it holds ${foreign[0]}); choose an empty or new directory`, { subject: out })
  }
}

function tableEntryOf (e: SourceEntry): TableEntry {
  return {
    path: e.path,
    type: e.type,
    mode: Number(e.stat.mode & 0o7777n),
    mtimeNs: e.stat.mtimeNs,
    uid: Number(e.stat.uid),
    gid: Number(e.stat.gid),
    target: e.target,
    size: e.type === 'file' ? Number(e.stat.size) : undefined,
  }
}

/** The string path the importer gets for an entry. Names that are not UTF-8 are shown lossily in the UnixFS tree; the file table keeps the exact bytes. */
function importPath (e: SourceEntry): string { return e.path.toString('utf8') }

/**
 * pack: SOURCE → CAR set in OUT. One pass: each source byte is read once, each CAR byte written once and hashed for
 * its piece CID as it is written. Order of what goes into the set: file blocks (in walk order), directory nodes,
 * the file table, the set descriptor. manifest.json is written last: its presence means the set is complete.
 */
export async function pack (opts: PackOptions): Promise<PackResult> {
  const tree = await walkSource(opts.source, opts.warn)
  opts.progress?.({ type: 'scanned', files: tree.fileCount, bytes: tree.totalBytes })
  await prepareOutDir(opts.out)

  const enc = opts.encryption
  const hidden = enc?.names === 'hidden'
  const writer = new CarSetWriter({ dir: opts.out, binSize: opts.binSize, onCarDone: (car, index) => opts.progress?.({ type: 'car', car, index }) })
  const table: TableEntry[] = tree.entries.map(tableEntryOf)
  const pending: TableEntry[] = []
  try {
    let fileNo = 0
    async function * candidates (): AsyncGenerator<ImportCandidate> {
      for (const [i, e] of tree.entries.entries()) {
        const t = table[i]
        if (e.type === 'file') {
          if (hidden) t.storedName = storedName(fileNo)
          fileNo++
          pending.push(t)
          const source = readSourceFile(e)
          const content = (async function * () {
            writer.takeTouchedCars() // blocks put before this file's first byte belong to something else
            let stream: AsyncIterable<Uint8Array> = source
            if (enc) {
              const sealed = enc.sealFile(source)
              t.enc = { key: sealed.fileKey, headerLength: sealed.headerLength }
              stream = sealed.stream
            }
            t.storedSize = 0
            for await (const chunk of stream) {
              t.storedSize += chunk.length
              yield chunk
            }
          })()
          yield { path: t.storedName ?? importPath(e), content }
        } else if (e.type === 'dir' && !hidden) {
          yield { path: importPath(e) }
        }
      }
    }

    let root: CID | undefined
    for await (const r of importTree(candidates(), writer, !tree.single)) {
      const isDir = r.unixfs?.isDirectory() === true
      if (!isDir) {
        const t = pending.shift()
        if (t === undefined) throw new Error(`importer returned an unexpected file ${r.path}`)
        t.cid = r.cid.toString()
        t.cars = writer.takeTouchedCars()
        opts.progress?.({ type: 'file', path: t.path, bytes: t.size! })
        if (tree.single) root = r.cid
      } else if (r.path === '') {
        root = r.cid
      }
    }
    if (root === undefined) {
      // An empty source directory: the importer yields nothing, so store the empty UnixFS directory ourselves.
      for await (const r of importTree([{ path: 'empty' }], writer, false)) root = r.cid
    }

    const tableText = (async function * () {
      yield Buffer.from(encodeTableHeader({ setIdentity: enc?.setIdentity }))
      let batch = ''
      for (const t of table) {
        batch += encodeTableEntry(t)
        if (batch.length > 1 << 20) { yield Buffer.from(batch); batch = '' }
      }
      if (batch) yield Buffer.from(batch)
    })()
    const tableFile = enc ? TABLE_FILE_ENCRYPTED : TABLE_FILE_PLAIN
    const tableBytes = enc ? enc.sealTable(tableText) : tableText
    const tableOut = await fs.open(path.join(opts.out, `.${tableFile}.tmp`), 'w')
    let tableSize = 0
    const teed = (async function * () {
      for await (const chunk of tableBytes) {
        await tableOut.write(chunk)
        tableSize += chunk.length
        yield chunk
      }
    })()
    const tableCid = (await importFile(teed, writer)).cid
    await tableOut.datasync()
    await tableOut.close()
    await fs.rename(path.join(opts.out, `.${tableFile}.tmp`), path.join(opts.out, tableFile))

    // The set descriptor, the last block of the set: lets the CARs alone say where the tree and the table are.
    const descriptorBytes = dagCbor.encode({ format: 'packer-car-set', version: MANIFEST_VERSION, root, table: tableCid, encrypted: enc !== null })
    const descriptor = CID.create(1, dagCbor.code, await sha256.digest(descriptorBytes))
    await writer.put(descriptor, descriptorBytes)

    const cars = await writer.finish()
    await writeFileDurably(path.join(opts.out, INDEX_FILE), writer.index.encode())
    const manifest: Manifest = {
      format: 'packer-car-set',
      version: MANIFEST_VERSION,
      createdBy: `packer ${VERSION}`,
      root: root!.toString(),
      table: { cid: tableCid.toString(), file: tableFile, size: tableSize },
      descriptor: descriptor.toString(),
      index: { file: INDEX_FILE, blocks: writer.index.count },
      encryption: enc ? { scheme: 'age-v1', names: enc.names, recipients: enc.recipientKinds } : null,
      binSize: opts.binSize,
      cars,
    }
    await writeFileDurably(path.join(opts.out, MANIFEST_FILE), encodeManifest(manifest))
    return { manifest, files: tree.fileCount, bytes: tree.totalBytes }
  } catch (err) {
    await writer.abort()
    if (isErrno(err, 'ENOSPC')) {
      throw new PackerError('NO_SPACE', `no space left on the device of ${opts.out} (the set needs about ${tree.totalBytes} bytes plus 1%); free space and rerun`, { subject: opts.out, cause: err })
    }
    throw err
  }
}
