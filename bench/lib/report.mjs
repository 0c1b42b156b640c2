// The results table: plain text for the terminal, Markdown for the README.
import { MB } from './sys.mjs'

const fmtBytes = (b) => (b == null ? '' : b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`)
const fmtS = (s) => (s == null ? '' : s.toFixed(1))
const fmtMBps = (v) => (v == null ? '' : v.toFixed(0))
const fmtRatio = (r) => (r == null ? '' : `${r.toFixed(2)}`)
const fmtPct = (f) => (f == null ? '' : `${(100 * f).toFixed(0)} %`)
const fmtRss = (b) => (b == null ? '' : `${(b / MB).toFixed(0)} MB`)

/** Table rows as arrays of strings. */
export function tableCells (rows) {
  const head = ['case', 'bytes', 's', 'MB/s', 'ratio', 'vs', 'target', 'met?', 'peak RSS', 'CPU s', 'others']
  const body = rows.map((r) => [
    r.case,
    fmtBytes(r.bytes),
    fmtS(r.seconds),
    fmtMBps(r.mbps),
    r.error ? '' : fmtRatio(r.ratio),
    r.vs ?? '',
    r.target ?? '',
    r.error ? (r.error === 'not installed' || r.error.startsWith('not ') ? r.error : 'FAILED') : r.met == null ? '' : r.met ? 'yes' : 'NO',
    fmtRss(r.rssBytes),
    r.cpuSeconds == null ? '' : r.cpuSeconds.toFixed(1),
    fmtPct(r.othersCpu),
  ])
  return { head, body }
}

export function printTable (rows) {
  const { head, body } = tableCells(rows)
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)))
  const right = new Set([1, 2, 3, 4, 8, 9, 10])
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
    `|${head.map((_, i) => ([1, 2, 3, 4, 8, 9, 10].includes(i) ? '---:' : '---')).join('|')}|`,
    ...body.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}
