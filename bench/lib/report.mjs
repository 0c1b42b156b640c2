// The results table: plain text for the terminal, Markdown for the README.
import { MB } from './sys.mjs'

const fmtBytes = (b) => (b == null ? '' : b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`)
const fmtS = (s) => (s == null ? '' : s.toFixed(1))
const fmtMBps = (v) => (v == null ? '' : v.toFixed(0))
const fmtRatio = (r) => (r == null ? '' : `${r.toFixed(2)}`)
const fmtPct = (f) => (f == null ? '' : `${(100 * f).toFixed(0)} %`)
const fmtRss = (b) => (b == null ? '' : `${(b / MB).toFixed(0)} MB`)

/** A case that ran and was timed. */
export const ran = (c) => c && !c.error && c.seconds != null
/** A case's MB/s, null if it did not run or moved no bytes. */
export const rate = (c) => (ran(c) && c.bytes ? c.bytes / c.seconds / MB : null)

/** A table row of a case's figures; extra: ratio, vs, target, met. Null if the case was not run. */
export function caseRow (name, c, extra = {}) {
  if (!c) return null
  const r = { case: name, ...extra }
  if (c.error) r.error = c.error
  else Object.assign(r, { bytes: c.bytes, files: c.files, seconds: c.seconds, mbps: rate(c), rssBytes: c.rssBytes, cpuSeconds: c.cpuSeconds, othersCpu: c.othersCpu, load1: c.load1 })
  return r
}

/** A row of one case's peak RSS against a limit (300 MB: the issues' bound). Null if the case was not run. */
export function rssRow (name, c, limit = 300 * MB) {
  if (!c) return null
  const target = `< ${limit / MB} MB`
  if (c.error || c.rssBytes == null) return { case: name, error: c.error ?? 'no RSS figure', target }
  return { case: name, rssBytes: c.rssBytes, target, met: c.rssBytes < limit, load1: c.load1 }
}

// columns aligned right: the figures
const right = new Set([1, 2, 3, 4, 5, 9, 10, 11, 12])

/** Table rows as arrays of strings. */
export function tableCells (rows) {
  const head = ['case', 'bytes', 's', 'MB/s', 'files/s', 'ratio', 'vs', 'target', 'met?', 'peak RSS', 'CPU s', 'others', 'load']
  const body = rows.map((r) => [
    r.case,
    fmtBytes(r.bytes),
    fmtS(r.seconds),
    fmtMBps(r.mbps),
    r.files == null || r.seconds == null ? '' : (r.files / r.seconds).toFixed(0),
    r.error ? '' : fmtRatio(r.ratio),
    r.vs ?? '',
    r.target ?? '',
    r.error ? (r.error === 'not installed' || r.error.startsWith('not ') ? r.error : 'FAILED') : r.met == null ? '' : r.met ? 'yes' : 'NO',
    fmtRss(r.rssBytes),
    r.cpuSeconds == null ? '' : r.cpuSeconds.toFixed(1),
    fmtPct(r.othersCpu),
    r.load1 == null ? '' : r.load1.toFixed(1),
  ])
  return { head, body }
}

export function printTable (rows) {
  const { head, body } = tableCells(rows)
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)))
  const line = (cells) => cells.map((c, i) => (right.has(i) ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ')
  console.log(line(head))
  console.log(w.map((n) => '-'.repeat(n)).join('  '))
  for (const r of body) console.log(line(r))
}

export function markdownTable (rows) {
  const { head, body } = tableCells(rows)
  const esc = (s) => s.replace(/\|/g, '\\|')
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (right.has(i) ? '---:' : '---')).join('|')}|`,
    ...body.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}
