// Summary of V8 .cpuprofile files (node --cpu-prof): self time per function and per module.
import { promises as fs } from 'node:fs'
import path from 'node:path'

function moduleOf (url) {
  if (!url) return '(native/V8)'
  if (url.startsWith('node:')) return url
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1]
  const dist = /\/dist\/(.*)$/.exec(url)
  if (dist) return `dist/${dist[1]}`
  return path.basename(url)
}

/** { totalMs, functions: [{ name, where, selfMs, pct }], modules: [{ module, selfMs, pct }] } for one profile. */
export async function summariseProfile (file, top = 15) {
  const prof = JSON.parse(await fs.readFile(file, 'utf8'))
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const self = new Map()
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0))
  }
  const fn = new Map()
  const mod = new Map()
  let total = 0
  for (const [id, us] of self) {
    const n = byId.get(id)
    const cf = n.callFrame
    const name = cf.functionName || '(anonymous)'
    const where = cf.url ? `${moduleOf(cf.url)}:${cf.lineNumber + 1}` : ''
    const key = `${name}\t${where}`
    fn.set(key, (fn.get(key) ?? 0) + us)
    const m = ['(idle)', '(program)', '(garbage collector)'].includes(name) ? name : moduleOf(cf.url).replace(/^node:internal\/.*$/, 'node:internal (core JS)')
    mod.set(m, (mod.get(m) ?? 0) + us)
    total += us
  }
  // inclusive time: each sample counts once for every distinct function on its stack
  const parent = new Map()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const keyOf = (n) => `${n.callFrame.functionName || '(anonymous)'}\t${n.callFrame.url ? `${moduleOf(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : ''}`
  const incl = new Map()
  const stackKeys = new Map()
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]
    let keys = stackKeys.get(id)
    if (!keys) {
      keys = new Set()
      for (let x = id; x !== undefined; x = parent.get(x)) keys.add(keyOf(byId.get(x)))
      stackKeys.set(id, keys)
    }
    for (const k of keys) incl.set(k, (incl.get(k) ?? 0) + (prof.timeDeltas[i] ?? 0))
  }
  const pct = (us) => (100 * us) / total
  return {
    file: path.basename(file),
    totalMs: total / 1000,
    functions: [...fn].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => {
      const [name, where] = k.split('\t')
      return { name, where, selfMs: us / 1000, pct: pct(us) }
    }),
    inclusive: [...incl].filter(([k]) => !/^\((root|program|idle|garbage collector)\)/.test(k) && !/^\(anonymous\)\t$/.test(k))
      .sort((a, b) => b[1] - a[1]).slice(0, 2 * top).map(([k, us]) => {
        const [name, where] = k.split('\t')
        return { name, where, totalMs: us / 1000, pct: pct(us) }
      }),
    modules: [...mod].sort((a, b) => b[1] - a[1]).slice(0, top).map(([m, us]) => ({ module: m, selfMs: us / 1000, pct: pct(us) })),
  }
}

export function printProfile (s) {
  console.log(`  ${s.file}: ${(s.totalMs / 1000).toFixed(1)} s sampled`)
  console.log('    self time by module:')
  for (const m of s.modules.slice(0, 10)) console.log(`      ${m.pct.toFixed(1).padStart(5)} %  ${m.module}`)
  console.log('    top functions (self time):')
  for (const f of s.functions) console.log(`      ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`)
  console.log('    top functions (inclusive time, JS frames only: awaited I/O is not on the stack):')
  for (const f of s.inclusive.slice(0, 25)) console.log(`      ${f.pct.toFixed(1).padStart(5)} %  ${f.name}  ${f.where}`)
}
