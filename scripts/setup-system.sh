#!/usr/bin/env bash
# Installs the Debian packages packer's tests and mount need, where missing: fuse (fusermount), libfuse2
# (libfuse.so.2 for fuse-native), age (interop tests), openssl and openssh-client (key interop tests).
# Runs as root on CI and fresh machines; elsewhere it only says what is missing.
set -euo pipefail
need=()
command -v fusermount >/dev/null 2>&1 || need+=(fuse)
ldconfig -p 2>/dev/null | grep -q 'libfuse.so.2' || need+=(libfuse2)
command -v age >/dev/null 2>&1 || need+=(age)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "packer: missing Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "packer: installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
