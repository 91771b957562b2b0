#!/usr/bin/env bash
# dfs-fault.sh BIN: the DFS fault drill of issue 4, for CI. Needs root and /dev/fuse.
#
# A master, three chunkserver processes and a FUSE mount, goal 2 (the default).
#  1. kill -9 one chunkserver in the middle of writing 1 GiB (DFS_DRILL_MIB):
#     the write completes without error, the data read back has the same
#     checksum, and `rampart info --json` reports 0 under-goal and 0 missing
#     chunks within 60 s of the end of the write (the time is printed).
#  2. kill -9 the master during a metadata-heavy run (create+write, rename,
#     unlink in a loop, each successful operation logged) and start it again:
#     no operation fails (no EIO: the mount retries across the restart), and
#     the namespace holds exactly what the logged operations left.
# Prints one line per invariant ("ok ..." or "FAIL ..."); exits 0 only if all hold.
set -uo pipefail
BIN=$(realpath "${1:?usage: dfs-fault.sh BIN}")
MIB=${DFS_DRILL_MIB:-1024}
P=${DFS_DRILL_PORT:-19721}  # master client port; chunkservers use P-1 (master) and P+1..P+3
if [ "$(id -u)" != 0 ] || [ ! -e /dev/fuse ]; then
	echo "dfs-fault: needs root and /dev/fuse"; exit 2
fi
W=$(mktemp -d /var/tmp/rampart-dfs-fault.XXXXXX)
MNT=$W/mnt
MASTER_PID="" MOUNT_PID="" CS_PIDS=()
failed=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failed=1; }
cleanup() {
	[ -n "${LOOP_PID:-}" ] && kill "$LOOP_PID" 2>/dev/null
	fusermount3 -u "$MNT" 2>/dev/null || fusermount -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	for p in $MOUNT_PID "${CS_PIDS[@]}" $MASTER_PID; do kill "$p" 2>/dev/null; done
	sleep 0.5
	for p in $MOUNT_PID "${CS_PIDS[@]}" $MASTER_PID; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$failed" != 0 ] && [ -z "${DFS_DRILL_KEEP:-}" ]; then
		for f in "$W"/*.log; do echo "--- $f (tail)"; tail -15 "$f"; done
	fi
	[ -n "${DFS_DRILL_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

start_master() {
	"$BIN" master --dir "$W/master" --listen "127.0.0.1:$P" --cs-listen "127.0.0.1:$((P - 1))" >>"$W/master.log" 2>&1 &
	MASTER_PID=$!
}
info_json() { timeout 10 "$BIN" info --master "127.0.0.1:$P" --json 2>/dev/null; }
chunk_counts() { # prints "undergoal missing total" or nothing
	info_json | python3 -c 'import json,sys; c=json.load(sys.stdin)["chunks"]; print(c["undergoal"], c["missing"], c["total"])' 2>/dev/null
}

mkdir -p "$MNT"
start_master
for i in 1 2 3; do
	"$BIN" chunkserver --data "$W/cs$i" --master "127.0.0.1:$((P - 1))" --listen "127.0.0.1:$((P + i))" >"$W/cs$i.log" 2>&1 &
	CS_PIDS+=($!)
done
for _ in $(seq 100); do
	[ "$(info_json | python3 -c 'import json,sys; print(sum(s["live"] for s in json.load(sys.stdin)["servers"]))' 2>/dev/null)" = 3 ] && break
	sleep 0.1
done
"$BIN" mount "$MNT" --master "127.0.0.1:$P" >"$W/mount.log" 2>&1 &
MOUNT_PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { bad "mount: $MNT not mounted"; exit 1; }

# --- 1. a chunkserver lost in the middle of a 1 GiB write
head -c "$((MIB << 20))" /dev/urandom >"$W/src"
want=$(sha256sum <"$W/src" | cut -d' ' -f1)
dd if="$W/src" of="$MNT/big" bs=1M conv=fsync status=none 2>"$W/dd.log" &
DD=$!
# Kill when about a third is written.
for _ in $(seq 600); do
	sz=$(stat -c %s "$MNT/big" 2>/dev/null || echo 0)
	[ "$sz" -ge $(((MIB << 20) / 3)) ] && break
	kill -0 $DD 2>/dev/null || break
	sleep 0.05
done
kill -9 "${CS_PIDS[0]}"
killed_at=$(date +%s.%N)
echo "killed chunkserver 1 (pid ${CS_PIDS[0]}) with $((sz >> 20)) MiB of $MIB MiB written"
if wait $DD; then
	ok "1 GiB write completed without error while a chunkserver died"
else
	bad "the write returned an error: $(cat "$W/dd.log")"
fi
write_end=$(date +%s.%N)
# Watch the chunk counts from the end of the write, while the data is read back.
(
	deadline=$(echo "$write_end + 60" | bc)
	while :; do
		set -- $(chunk_counts)
		if [ $# = 3 ] && [ "$1" = 0 ] && [ "$2" = 0 ]; then
			echo "ok $(date +%s.%N) $3" >"$W/goal"; exit 0
		fi
		if [ "$(echo "$(date +%s.%N) > $deadline" | bc)" = 1 ]; then
			echo "fail $(date +%s.%N) under-goal, missing, total = ${*:-no answer}" >"$W/goal"; exit 1
		fi
		sleep 0.2
	done
) &
WATCH=$!
echo 3 >/proc/sys/vm/drop_caches
got=$(sha256sum <"$MNT/big" | cut -d' ' -f1)
if [ "$got" = "$want" ]; then ok "checksum of the data read back matches ($got)"; else bad "checksum $got, want $want"; fi
rm -f "$W/src"
wait $WATCH
read -r state at rest <"$W/goal"
if [ "$state" = ok ]; then
	ok "0 under-goal, 0 missing of $rest chunks $(printf %.1f "$(echo "$at - $write_end" | bc)") s after the write ended ($(printf %.1f "$(echo "$at - $killed_at" | bc)") s after the kill)"
else
	bad "60 s after the write: $rest"
fi
"$BIN" info --master "127.0.0.1:$P" | sed 's/^/    /'

# --- 2. the master lost during a metadata-heavy run
mkdir "$MNT/meta"
cat >"$W/loop.py" <<'EOF'
import errno, os, sys, time
d, log, stop = sys.argv[1], open(sys.argv[2], "w", buffering=1), sys.argv[3]
i = 0
while not os.path.exists(stop):
    a, b = "f%d" % i, "g%d" % i
    try:
        fd = os.open(os.path.join(d, a), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b"file %d\n" % i)
        os.close(fd)
        log.write("create %s\n" % a)
        os.rename(os.path.join(d, a), os.path.join(d, b))
        log.write("rename %s %s\n" % (a, b))
        if i % 3 == 0:
            os.unlink(os.path.join(d, b))
            log.write("unlink %s\n" % b)
    except OSError as e:
        log.write("error %s %s\n" % (errno.errorcode.get(e.errno, e.errno), e))
    i += 1
EOF
python3 "$W/loop.py" "$MNT/meta" "$W/ops.log" "$W/stop" &
LOOP_PID=$!
sleep 2
before=$(grep -c . "$W/ops.log")
kill -9 "$MASTER_PID"
wait "$MASTER_PID" 2>/dev/null
echo "killed the master (pid $MASTER_PID) after $before successful operations"
sleep 1
start_master
sleep 4
touch "$W/stop"
wait "$LOOP_PID"
LOOP_PID=""
after=$(grep -c . "$W/ops.log")
errors=$(grep -c '^error' "$W/ops.log")
if [ "$errors" = 0 ]; then
	ok "metadata loop: $after operations, none failed across the master restart (no EIO)"
else
	bad "metadata loop: $errors of $after operations failed: $(grep '^error' "$W/ops.log" | head -3 | tr '\n' ';')"
fi
if [ "$after" -gt "$before" ]; then
	ok "operations continued after the restart ($((after - before)) more)"
else
	bad "no operation succeeded after the master restart"
fi
python3 - "$W/ops.log" "$MNT/meta" >"$W/verify.log" 2>&1 <<'EOF'
import os, sys
want = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "create":
        want[f[1]] = b"file %s\n" % f[1][1:].encode()
    elif f[0] == "rename":
        want[f[2]] = want.pop(f[1])
    elif f[0] == "unlink":
        del want[f[1]]
got = set(os.listdir(sys.argv[2]))
missing = sorted(set(want) - got)
extra = sorted(got - set(want))
wrong = [n for n in sorted(set(want) & got) if open(os.path.join(sys.argv[2], n), "rb").read() != want[n]]
print("entries %d, want %d; missing %s; extra %s; wrong content %s" % (len(got), len(want), missing[:5], extra[:5], wrong[:5]))
sys.exit(1 if missing or extra or wrong else 0)
EOF
if [ $? = 0 ]; then
	ok "every successful operation is there after the restart: $(cat "$W/verify.log")"
else
	bad "namespace differs from the successful operations: $(cat "$W/verify.log")"
fi
got=$(sha256sum <"$MNT/big" | cut -d' ' -f1)
if [ "$got" = "$want" ]; then ok "the 1 GiB file still reads back intact after the master restart"; else bad "1 GiB file checksum $got after the master restart, want $want"; fi

if [ "$failed" = 0 ]; then echo "dfs fault drill: PASS"; else echo "dfs fault drill: FAIL"; fi
exit "$failed"
