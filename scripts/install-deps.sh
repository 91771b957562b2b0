#!/usr/bin/env bash
# Installs what building, running and testing rampart need on Debian 12, as root:
# a Go toolchain (the one in go.mod, fetched through the Go module proxy by the go
# command when the local one is older), FUSE, and the tools the tests run against
# (libiscsi-bin's iscsi-test-cu, tgt, fio, libnbd-bin, xfsprogs), and nginx, which serves
# the demo's site from the file system as in the seed lab.
# Idempotent: installs only what is missing. Without root it only checks.
set -euo pipefail
pkgs=(libiscsi-bin tgt fio libnbd-bin xfsprogs fuse3 iproute2 util-linux bc python3 ca-certificates git curl nginx-light)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then missing+=(golang-go); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# tgt's package starts a tgtd on 3260 at install; rampart's tests want that port.
if command -v systemctl >/dev/null && systemctl is-active --quiet tgt 2>/dev/null; then
  systemctl stop tgt || true
fi
pkill -x tgtd 2>/dev/null || true
# nginx's package starts a server on :80 of this machine; the demo runs its own in the
# web host's namespace, so the package's one only gets in the way.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
