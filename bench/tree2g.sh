#!/bin/bash
# pack and unpack, encrypted and not, of one 2 GiB tree (a 1.5 GiB random file + 2 000 random 256 KiB files), in one
# run with dd writing as many bytes; page cache dropped before and `sync` after each timing (as root). Usage:
#   npm run build && bash bench/tree2g.sh [WORKDIR]        (default /tmp/packer-tree2g; needs ~9 GB free)
set -u
W=${1:-/tmp/packer-tree2g}; mkdir -p "$W"; cd "$W" || exit 1
P="node $(cd "$(dirname "$0")/.." && pwd)/dist/cli/main.js"
if [ ! -f src.done ]; then
  rm -rf src; mkdir -p src/files
  openssl enc -aes-128-ctr -pass pass:tree2g -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c 1610612736 > src/large.bin
  for d in $(seq 0 19); do mkdir -p src/files/d$d; for f in $(seq 0 99); do head -c 262144 /dev/urandom > src/files/d$d/f$f; done; done
  touch src.done
fi
B=$(du -sb src | cut -f1); K=$W/key.txt
[ -f "$K" ] || $P keygen -o "$K" >/dev/null 2>&1
R=$(grep -o 'age1[0-9a-z]*' "$K")
t () {
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
  local s=$(date +%s.%N); /usr/bin/time -f "%M" -o "$W/rss" "$@" >/dev/null 2>&1; local rc=$?; sync; local e=$(date +%s.%N)
  local secs=$(echo "$e - $s" | bc)
  printf "%-26s rc=%d %6.2f s %6.0f MB/s  peak RSS %4d MB\n" "$name" $rc "$secs" "$(echo "$B / $secs / 1000000" | bc -l)" $(( $(cat "$W/rss") / 1024 ))
}
echo "tree: $B bytes; $(uptime)"
rm -f ddout; t "dd conv=fdatasync" dd if=/dev/zero of=ddout bs=1M count=$((B / 1048576)) conv=fdatasync; rm -f ddout
rm -rf enc plain dest1 dest2 st1 st2
t "pack encrypted (-r age1)" $P pack src -o enc -r "$R" -q --state-dir "$W/st1"
t "pack --no-encrypt" $P pack src -o plain --no-encrypt -q --state-dir "$W/st2"
t "unpack encrypted" $P unpack enc -o dest1 -i "$K" -q
t "unpack --no-encrypt set" $P unpack plain -o dest2 -q
diff -r src dest1 >/dev/null && diff -r src dest2 >/dev/null && echo "both restores equal the source (diff -r)"
rm -rf enc plain dest1 dest2
