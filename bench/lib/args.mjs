// Command-line options of bench/run.mjs.
import path from 'node:path'

export const CASES = [
  'dd', // dd conv=fdatasync of the tree's byte count (reference for pack and unpack), run at the start and the end
  'read', // cold sequential read of the large file (information: what the source disk gives)
  'pack', // packer pack, encrypted (age X25519 recipient), CommP included
  'pack-plain', // packer pack --no-encrypt
  'ipfs-car', // ipfs-car pack (reference for pack-plain)
  'restic',
  'borg',
  'rclone',
  'unpack', // packer unpack of the encrypted set
  'sparse', // --full only: 16 GiB sparse file packed encrypted, unpacked, against dd of 16 GiB
  'many', // a tree of tiny files (--files): pack encrypted and in clear, ls, verify, unpack, against tar cf/tvf/xf
  'many-peers', // ipfs-car, restic, borg and rclone on the tiny-files tree (reference for pack)
  'many-growth', // pack, ls and unpack of a tree of 1/10 the files: peak RSS growth with the file count
  'shards', // for each K of --shards: plan, K shards packed at once, join; against one pack --no-encrypt of the tree
  'commp', // bench/commp.mjs (another engineer's), if present
  'mount', // bench/mount.mjs (another engineer's), if present
  'real-tree', // a real tree (--tree, default /usr/share): packer against rclone crypt, restic and borg, --runs rounds
  'compress', // pack --compress auto vs off on a generated text tree and a random one, vs tar | zstd -3 -T0 (own trees);
  // on a real tree (--tree, default part of /usr/share) vs per-file zstd -3, restic and borg; mount of a compressed file
  's3', // pack --no-encrypt from a local S3 server (fauxqs) vs from disk (CPU), vs rclone copy + pack, -o s3:// vs to disk
  'remote-mount', // a 256 MiB encrypted file (1 GiB with --full) read through a mount of its set on nginx, 0 and 50 ms
  // before each answer, vs the local mount and rclone's HTTP mount of the raw CAR; packer fetch vs curl -o (--runs rounds)
  'profile', // node --cpu-prof of one encrypted pack, summarised (only when asked: --profile or --only profile)
]

// What a case needs measured in the same run to be reported as a ratio.
const NEEDS = {
  pack: ['dd'],
  'pack-plain': ['ipfs-car'],
  restic: ['pack'],
  borg: ['pack'],
  rclone: ['pack'],
  unpack: ['dd'],
  'many-peers': ['many'],
  'many-growth': ['many'],
}

export const USAGE = `usage: node bench/run.mjs [--full] [--only CASE,…] [--skip CASE,…] [--work DIR] [--keep] [--profile]
                         [--no-install] [--no-wait] [--max-wait S] [--markdown] [--json FILE] [--tiny]
                         [--files N] [--shards K,…] [--tree DIR] [--runs N]

  (default)      quick mode, about 20 minutes on 2 quiet cores: issue 6's tree at 1/4 scale (one 1 GiB random
                 file + 5,000 small files, ~256 MiB) and 100,000 tiny files
  --full         the issue's sizes: one 3 GiB file + 20,000 small files (~1 GiB), and the 16 GiB sparse file
                 packed encrypted
  --only LIST    run only these cases (plus the references their ratios need): ${CASES.join(', ')}
  --skip LIST    leave these cases out
  --files N      files in the tiny-files tree of the many* and shards cases (default 100,000; --full 1,000,000;
                 --tiny 2,000); made once under /tmp/packer-bench-many-N and reused, as is the one of N/10
  --shards K,…   shard counts of the shards case, each planned, packed at once and joined (default 2)
  --tree DIR     the real tree of the real-tree case (default /usr/share: pack and restore by packer, rclone
                 crypt, restic and borg, interleaved) and of the compress case (default /usr/share/{doc,vim,perl},
                 162 MiB here; --full: /usr/share)
  --runs N       rounds of the real-tree, s3 and remote-mount cases (default 3; medians reported)
  --tiny         smoke test of the script itself: 64 MiB + 200 small files (figures meaningless)
  --work DIR     where data and outputs go (default bench/work/); big files are removed at the end
  --keep         keep the generated tree (reused by the next run with the same sizes) and the outputs
  --profile      also run one encrypted pack under node --cpu-prof and print the top functions
  --no-wait      do not wait, before each timed command, for the machine to be quiet (other processes under
                 10 % of the cores for 2 s; at most --max-wait seconds, default 60)
  --no-install   do not apt-get install missing peers (restic, borgbackup, rclone, time)
  --markdown     also print the table as Markdown
  --json FILE    where to write the results (default bench/results.json)
`

export function parseArgs (argv, benchDir) {
  const o = {
    full: false,
    tiny: false,
    only: null,
    skip: new Set(),
    work: path.join(benchDir, 'work'),
    keep: false,
    profile: false,
    install: true,
    wait: true,
    maxWait: 60,
    markdown: false,
    files: null,
    shards: [2],
    runs: 3,
    json: path.join(benchDir, 'results.json'),
    tree: null,
  }
  const list = (s) => {
    const names = String(s ?? '').split(',').map((x) => x.trim()).filter(Boolean)
    for (const n of names) if (!CASES.includes(n)) throw new Error(`unknown case ${n} (cases: ${CASES.join(', ')})`)
    return names
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--full') o.full = true
    else if (a === '--tiny') o.tiny = true
    else if (a === '--only') o.only = new Set(list(val()))
    else if (a === '--skip') for (const n of list(val())) o.skip.add(n)
    else if (a === '--work') o.work = path.resolve(val())
    else if (a === '--keep') o.keep = true
    else if (a === '--profile') o.profile = true
    else if (a === '--no-install') o.install = false
    else if (a === '--no-wait') o.wait = false
    else if (a === '--max-wait') o.maxWait = Number(val())
    else if (a === '--markdown') o.markdown = true
    else if (a === '--files') o.files = Number(val())
    else if (a === '--shards') o.shards = val().split(',').map(Number)
    else if (a === '--tree') o.tree = path.resolve(val())
    else if (a === '--runs') o.runs = Number(val())
    else if (a === '--json') o.json = path.resolve(val())
    else if (a === '-h' || a === '--help') o.help = true
    else throw new Error(`unknown option ${a}\n${USAGE}`)
  }
  let selected
  if (o.only) {
    selected = new Set(o.only)
    for (let n = 0; n !== selected.size;) {
      n = selected.size
      for (const c of [...selected]) for (const d of NEEDS[c] ?? []) selected.add(d)
    }
    if (selected.has('profile')) o.profile = true
  } else {
    selected = new Set(CASES.filter((c) => c !== 'profile'))
    if (o.profile) selected.add('profile')
  }
  for (const s of o.skip) selected.delete(s)
  if (o.full && o.tiny) throw new Error('--full and --tiny exclude each other')
  if (!o.full) selected.delete('sparse')
  o.files ??= o.full ? 1e6 : o.tiny ? 2000 : 1e5
  if (!(Number.isInteger(o.files) && o.files >= 10)) throw new Error('--files needs a whole number ≥ 10')
  if (!(Number.isInteger(o.runs) && o.runs >= 1)) throw new Error('--runs needs a whole number ≥ 1')
  if (!o.shards.every((k) => Number.isInteger(k) && k >= 1)) throw new Error('--shards needs whole numbers ≥ 1')
  o.cases = selected
  return o
}
