#!/usr/bin/env bash
# rampart's main job on its embedded default: the seed lab's whole highly-available
# stack on this machine (`rampart demo`, docs/demo.md). Installs what it needs, builds
# bin/rampart, and builds the lab: as root, a storage host with three RAID-5 arrays
# exported as iSCSI targets on two storage networks, three chunk hosts attaching them
# with multipath (XFS on each, a chunkserver on top), a DFS master, and a web host
# serving a site from the replicated file system; each host is a network namespace.
# Without root, `rampart demo` falls back to the file system alone on loopback and says so.
#
# The lab keeps running after this script returns. Then:
#   bin/rampart demo drill    # cut a network, fail a disk, kill a chunkserver, restart the master
#   bin/rampart demo status   # print the lab again
#   bin/rampart demo down     # remove everything it created
# `scripts/run.sh single` runs the previous default instead: a master and three
# chunkservers in one process, mounted at $RAMPART_MNT (default /mnt/rampart), in the
# foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install-deps.sh
go build -o bin/rampart ./cmd/rampart

if [ "${1:-}" != single ]; then
  exec bin/rampart demo "$@"
fi

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
