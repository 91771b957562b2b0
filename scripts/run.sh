#!/usr/bin/env bash
# rampart's main job on its embedded default: the single-machine cluster. Builds
# bin/rampart, starts a master and three chunkservers in one process (data under
# $RAMPART_DIR, default /var/lib/rampart/single), mounts the replicated file system at
# $RAMPART_MNT (default /mnt/rampart; goal 2: every file kept in two copies), writes a
# first file, shows `rampart info`, and keeps running until Ctrl-C, when it unmounts
# and stops. Needs root for the FUSE mount (and to install packages); without root it
# runs the cluster and tells you how to mount it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install-deps.sh
go build -o bin/rampart ./cmd/rampart
dir=${RAMPART_DIR:-/var/lib/rampart/single}; mnt=${RAMPART_MNT:-/mnt/rampart}
[ "$(id -u)" = 0 ] || dir=${RAMPART_DIR:-$HOME/.rampart/single}
mkdir -p "$dir"
pids=()
stop() {
  trap - EXIT INT TERM
  echo; echo "stopping"
  mountpoint -q "$mnt" 2>/dev/null && { umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || true; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM
bin/rampart server --dir "$dir" --listen 127.0.0.1:9421 2>"$dir/server.log" & pids+=($!)
for _ in $(seq 100); do bin/rampart info --master 127.0.0.1:9421 >/dev/null 2>&1 && break; sleep 0.1; done
bin/rampart info --master 127.0.0.1:9421 >/dev/null || { cat "$dir/server.log"; exit 1; }
if [ "$(id -u)" = 0 ] && [ -e /dev/fuse ]; then
  mkdir -p "$mnt"
  mountpoint -q "$mnt" && umount "$mnt"
  bin/rampart mount "$mnt" --master 127.0.0.1:9421 2>"$dir/mount.log" & pids+=($!)
  for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
  mountpoint -q "$mnt" || { cat "$dir/mount.log"; exit 1; }
  [ -f "$mnt/index.html" ] || echo "<h1>Well that's a highly-available little storage setup!</h1>" >"$mnt/index.html"
  echo "rampart file system mounted at $mnt (every file in 2 copies on 3 chunkservers)"
  ls -l "$mnt"
else
  echo "not root: the cluster runs; mount it as root with: bin/rampart mount $mnt --master 127.0.0.1:9421"
fi
echo
bin/rampart info --master 127.0.0.1:9421
echo
echo "data in $dir; logs: $dir/server.log. Try: bin/rampart fs fileinfo /index.html --master 127.0.0.1:9421"
echo "Ctrl-C stops the cluster."
wait "${pids[0]}"
