#!/bin/sh
# dfs-bench.sh: start a single-machine rampart DFS (master + 3 chunkservers,
# goal 2), mount it with FUSE and run ../shared/bench/fsbench.py against it.
# Needs root and /dev/fuse. Usage: bench/dfs-bench.sh [BIG_MIB] [FILES]
set -eu
BIG=${1:-256}
FILES=${2:-1000}
BIN=${RAMPART:-./rampart}
FSBENCH=${FSBENCH:-/work/shared/bench/fsbench.py}
WORK=$(mktemp -d)
PORT=${PORT:-19421}
cleanup() {
	fusermount -u "$WORK/mnt" 2>/dev/null || true
	[ -n "${MPID:-}" ] && kill "$MPID" 2>/dev/null || true
	[ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/mnt"
"$BIN" server --dir "$WORK/data" --listen "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SPID=$!
sleep 1
"$BIN" mount "$WORK/mnt" --master "127.0.0.1:$PORT" 2>"$WORK/mount.log" &
MPID=$!
for i in 1 2 3 4 5 6 7 8 9 10; do
	mountpoint -q "$WORK/mnt" && break
	sleep 0.5
done
python3 "$FSBENCH" "$WORK/mnt" --big-mib "$BIG" --files "$FILES" --label rampart
"$BIN" info --master "127.0.0.1:$PORT"
