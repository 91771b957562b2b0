#!/bin/sh
# dfs-faultdrill.sh: goal 2, a master and three chunkserver processes, a FUSE
# mount; kill -9 one chunkserver in the middle of writing SIZE_MIB (1024), then
# check the write succeeded, the data reads back with the same checksum and
# `rampart info` reports 0 under-goal chunks within 60 s. Needs root.
set -eu
SIZE=${1:-1024}
BIN=${RAMPART:-./rampart}
W=$(mktemp -d)
P=${PORT:-19521}
cleanup() {
	fusermount -u "$W/mnt" 2>/dev/null || true
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
PIDS=""
trap cleanup EXIT INT TERM
mkdir -p "$W/mnt"
"$BIN" master --dir "$W/master" --listen "127.0.0.1:$P" --cs-listen "127.0.0.1:$((P-1))" 2>"$W/master.log" &
PIDS="$PIDS $!"
for i in 1 2 3; do
	"$BIN" chunkserver --data "$W/cs$i" --master "127.0.0.1:$((P-1))" --listen "127.0.0.1:$((P+i))" 2>"$W/cs$i.log" &
	eval "CS$i=$!"
	PIDS="$PIDS $!"
done
sleep 1
"$BIN" mount "$W/mnt" --master "127.0.0.1:$P" 2>"$W/mount.log" &
PIDS="$PIDS $!"
sleep 1
head -c "$((SIZE << 20))" /dev/urandom >"$W/src"
want=$(sha256sum <"$W/src" | cut -d' ' -f1)
dd if="$W/src" of="$W/mnt/big" bs=1M conv=fsync status=none &
DD=$!
sleep 3
kill -9 "$CS1"
echo "killed chunkserver 1 during the write"
if ! wait "$DD"; then echo "FAIL: the write returned an error"; exit 1; fi
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
got=$(sha256sum <"$W/mnt/big" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "FAIL: checksum $got, want $want"; exit 1; }
echo "checksum ok"
start=$(date +%s)
while :; do
	ug=$("$BIN" info --master "127.0.0.1:$P" --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["chunks"]; print(c["undergoal"]+c["missing"])')
	[ "$ug" = 0 ] && break
	[ $(( $(date +%s) - start )) -gt 60 ] && { echo "FAIL: $ug chunks under goal after 60 s"; exit 1; }
	sleep 1
done
echo "0 under-goal chunks after $(( $(date +%s) - start )) s"
"$BIN" info --master "127.0.0.1:$P"
echo PASS
