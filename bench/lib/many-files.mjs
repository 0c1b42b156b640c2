// A synthetic tree of many tiny files, made once and reused: DIR/dNNNN/fNNNN, `perDir` files per directory, each a
// few bytes (its own path, so contents differ and nothing deduplicates). Usage as a module or:
//   node bench/lib/many-files.mjs FILES [DIR]   (default DIR /tmp/packer-bench-many-FILES)
import fs from 'node:fs'
import path from 'node:path'

export function manyFilesTree (files, dir = `/tmp/packer-bench-many-${files}`, perDir = 1000) {
  const done = path.join(dir, '.complete')
  if (fs.existsSync(done)) return path.join(dir, 'tree')
  fs.rmSync(dir, { recursive: true, force: true })
  const tree = path.join(dir, 'tree')
  for (let i = 0; i < files; i++) {
    const d = path.join(tree, `d${String(Math.floor(i / perDir)).padStart(5, '0')}`)
    if (i % perDir === 0) fs.mkdirSync(d, { recursive: true })
    fs.writeFileSync(path.join(d, `f${String(i % perDir).padStart(4, '0')}`), `file ${i}\n`)
  }
  fs.writeFileSync(done, '')
  return tree
}

/** The tree's files and bytes (what an unpack of it must restore). */
export function manyFilesSize (files) {
  let bytes = 0
  for (let i = 0; i < files; i++) bytes += `file ${i}\n`.length
  return { files, bytes }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(manyFilesTree(Number(process.argv[2]), process.argv[3]))
