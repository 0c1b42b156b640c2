#!/usr/bin/env bash
# Installs the Debian packages packer needs, where missing. Run it BEFORE `npm ci`: fuse-native's install script
# (run by npm versions that run every dependency's scripts, like npm 10) compiles from source, which needs Node's
# headers from the internet, when its prebuilt binary cannot load for want of libfuse.so.2.
#
#   bash scripts/setup-system.sh                   what packer needs: fuse, libfuse2 (mount), libzstd-dev (the addon)
#   bash scripts/setup-system.sh --tests           that, and what only the test suite needs
#   bash scripts/setup-system.sh [--tests] --check install nothing: name what is missing and exit 1 (npm test runs this)
#
# Installs as root (apt-get); otherwise it only says what to install. No installed package may start a service:
# while apt-get runs, a policy-rc.d that answers 101 ("action forbidden") tells invoke-rc.d and deb-systemd-invoke
# to start nothing (Debian's nginx would otherwise start on port 80); it is removed when apt-get is done. A service
# installed here is also disabled at boot (the package enables it for systemd and SysV init alike). Tests start the
# servers they need themselves, on 127.0.0.1, with their own configuration.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin  # ldconfig, for users whose PATH lacks them

# Each entry: "Debian package|shell test that passes when what packer uses from it is present". Testing for the file
# rather than the package leaves an equivalent in place: fuse3's fusermount serves libfuse2 too, and installing
# `fuse` over it would remove fuse3 and whatever depends on it.
user_packages=(
  'fuse|command -v fusermount'
  'libfuse2|ldconfig -p | grep -q "libfuse\.so\.2 "'
  # headers and libraries the native addon (native/) builds against go here too
  'libzstd-dev|test -e /usr/include/zstd.h'  # zstd frames (native/src/zstd.c); its libzstd1 is on every Debian (dpkg needs it)
)
test_packages=(
  'age|command -v age'
  'openssl|command -v openssl'
  'openssh-client|command -v ssh-keygen'
  # the zstd tests decode packer's streams with the reference CLI and check its seek table's checksums with xxhsum
  'zstd|command -v zstd'
  'xxhash|command -v xxhsum'
  # a real single-node Slurm for the job-array tests (test/servers/slurm.ts starts its own daemons on 127.0.0.1)
  'slurm-wlm|command -v slurmctld && command -v slurmd && command -v sbatch'
  'munge|command -v munged'
  # the HTTP tests' web server (test/servers/nginx.ts); its echo module (echo_sleep) gives a response latency
  'nginx-light|command -v nginx'
  'libnginx-mod-http-echo|test -e /usr/lib/nginx/modules/ngx_http_echo_module.so'
  # storage providers fetch pieces with curl -r: the serve and nginx tests use the real client
  'curl|command -v curl'
)

wanted=("${user_packages[@]}") tests_flag='' check_only=false
for arg in "$@"; do
  case "$arg" in
    --tests) wanted+=("${test_packages[@]}") tests_flag=' --tests' ;;
    --check) check_only=true ;;
    *) echo "usage: bash scripts/setup-system.sh [--tests] [--check]" >&2; exit 2 ;;
  esac
done

missing=()
for entry in "${wanted[@]}"; do
  bash -c "${entry#*|}" >/dev/null 2>&1 || missing+=("${entry%%|*}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if $check_only || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "packer: missing Debian packages: ${missing[*]}; install them with: sudo bash scripts/setup-system.sh$tests_flag" >&2
  exit 1
fi

echo "packer: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian 13 and Ubuntu 24.04 renamed libfuse2 (the 64-bit time_t transition).
if [[ " ${missing[*]} " == *" libfuse2 "* ]] && apt-cache show libfuse2t64 >/dev/null 2>&1; then
  missing=("${missing[@]/#libfuse2/libfuse2t64}")
fi

# An administrator's own policy-rc.d is set aside meanwhile and put back after, however this script ends.
policy=/usr/sbin/policy-rc.d saved=/usr/sbin/policy-rc.d.packer-saved
[ -e "$policy" ] && mv "$policy" "$saved"
restore_policy() { rm -f "$policy"; if [ -e "$saved" ]; then mv "$saved" "$policy"; fi; }
trap restore_policy EXIT
trap 'exit 130' INT TERM HUP
printf '#!/bin/sh\n# written by packer scripts/setup-system.sh while it installs packages: start no service\nexit 101\n' >"$policy"
chmod 755 "$policy"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Only services this run installed: those the administrator had are left as they were.
boot_disabled=()
if [[ " ${missing[*]} " == *" munge "* ]]; then boot_disabled+=(munge); fi
if [[ " ${missing[*]} " == *" slurm-wlm "* ]]; then boot_disabled+=(slurmctld slurmd); fi
if [[ " ${missing[*]} " == *" nginx-light "* ]]; then boot_disabled+=(nginx); fi
for service in "${boot_disabled[@]}"; do
  if command -v systemctl >/dev/null; then systemctl disable --quiet "$service.service"; fi  # SysV links too, if any
  update-rc.d "$service" disable >/dev/null 2>&1
done
