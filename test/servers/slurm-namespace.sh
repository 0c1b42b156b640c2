#!/bin/sh
# Runs a Slurm test daemon (its command line: "$@") in the UTS and mount namespaces `unshare` made for it:
# - named localhost: with NoInAddrAny the daemons bind the address of the hostname, which a bare chroot does not
#   resolve and Debian's installer maps to 127.0.1.1;
# - with the machine's cgroup file systems at /sys/fs/cgroup: slurmd (22.05) will not start without them, and a
#   chroot may show /sys without its submounts. They are mounted again here, as /proc/self/cgroup lists them (one v2
#   hierarchy, or v1 controllers beside a v2 one at unified/), /sys made private first so that nothing propagates
#   out (a chroot's / is no mount point, so unshare cannot make everything private itself).
set -e
hostname localhost
if ! mountpoint -q /sys/fs/cgroup; then
  mount --make-rprivate /sys
  if [ "$(wc -l < /proc/self/cgroup)" -eq 1 ]; then
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
  else
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    while IFS=: read -r _ controllers _; do
      case $controllers in
        '') dir=unified; mkdir -p /sys/fs/cgroup/$dir; mount -t cgroup2 cgroup2 /sys/fs/cgroup/$dir; continue ;;
        name=*) dir=${controllers#name=}; options=none,$controllers ;;
        *) dir=$controllers; options=$controllers ;;
      esac
      mkdir -p "/sys/fs/cgroup/$dir"
      mount -t cgroup -o "$options" cgroup "/sys/fs/cgroup/$dir"
    done < /proc/self/cgroup
  fi
fi
exec env "$@"
