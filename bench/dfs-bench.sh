#!/bin/sh
# dfs-bench.sh: start a single-machine rampart DFS (master + 3 chunkservers,
# goal 2), mount it with FUSE and run ../shared/bench/fsbench.py against it;
# with MOOSEFS=1, then the same against MooseFS 3 (../shared/peers/moosefs.sh,
# master + 3 chunkservers, goal 2) in the same run, and print rampart/MooseFS
# ratios. Needs root and /dev/fuse. Usage: bench/dfs-bench.sh [BIG_MIB] [FILES]
set -eu
BIG=${1:-256}
FILES=${2:-1000}
BIN=${RAMPART:-./rampart}
FSBENCH=${FSBENCH:-/work/shared/bench/fsbench.py}
MFS=${MFS_PEER:-/work/shared/peers/moosefs.sh}
WORK=$(mktemp -d)
PORT=${PORT:-19421}
cleanup() {
	fusermount -u "$WORK/mnt" 2>/dev/null || true
	[ -n "${MPID:-}" ] && kill "$MPID" 2>/dev/null || true
	[ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
	[ -n "${MFS_UP:-}" ] && "$MFS" down "$WORK/mfs" "$WORK/mfsmnt" >/dev/null 2>&1 || true
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
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$FSBENCH" "$WORK/mnt" --big-mib "$BIG" --files "$FILES" --label rampart | tee "$WORK/rampart.txt"
"$BIN" info --master "127.0.0.1:$PORT"
fusermount -u "$WORK/mnt" 2>/dev/null || true
kill "$MPID" "$SPID" 2>/dev/null || true
MPID="" SPID=""
[ "${MOOSEFS:-0}" = 1 ] || exit 0
MFS_UP=1
"$MFS" up "$WORK/mfs" "$WORK/mfsmnt" >"$WORK/mfs.log" 2>&1 || { cat "$WORK/mfs.log"; exit 1; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$FSBENCH" "$WORK/mfsmnt" --big-mib "$BIG" --files "$FILES" --label moosefs | tee "$WORK/moosefs.txt"
echo "rampart / MooseFS:"
awk -F'\t' 'NR == FNR { m[$2] = $3; next } { printf "  %-22s %10s %10s %-8s x%.2f\n", $2, $3, m[$2], $4, (m[$2] > 0 ? $3 / m[$2] : 0) }' \
	"$WORK/moosefs.txt" "$WORK/rampart.txt"
