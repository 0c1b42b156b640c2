#!/usr/bin/env bash
# The Quick start's main job on the small tree in testdata/example: make a key, pack encrypted, list, verify,
# print the deal listing, unpack and compare with the source.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/packer-example.XXXXXX)
packer() { node dist/cli/main.js "$@"; }
echo "== packer keygen -o $work/key.txt"
recipient=$(packer keygen -o "$work/key.txt" 2>/dev/null)
echo "== packer pack testdata/example -o $work/set -r $recipient"
packer pack testdata/example -o "$work/set" -r "$recipient"
echo "== packer ls $work/set -i $work/key.txt --long"
packer ls "$work/set" -i "$work/key.txt" --long
echo "== packer verify $work/set"
packer verify "$work/set"
echo "== packer pieces $work/set"
packer pieces "$work/set"
echo "== packer unpack $work/set -o $work/restored -i $work/key.txt"
packer unpack "$work/set" -o "$work/restored" -i "$work/key.txt"
diff -r testdata/example "$work/restored"
echo "== restored tree is identical to testdata/example (diff -r); everything is in $work"
