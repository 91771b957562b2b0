#!/usr/bin/env bash
# Drill (issue 5): a storage host and a chunk host in network namespaces, joined by two
# storage networks (10.3.1.0/24 and 10.3.2.0/24, as in the seed lab). The storage host
# serves one LUN on both networks; the chunk host attaches it over both paths with
# `rampart attach --fuse`, puts XFS on it through a loop device, and runs a writer that
# checksums every block it writes and reads back. Then:
#   1. network 1 is cut mid-run: zero I/O errors, the path shows faulty, the stall is
#      reported (must be at most 5 s);
#   2. network 1 comes back: the path is active ready again;
#   2b. (rampart target) the target restarts mid-write: the sessions log in again by
#      themselves, I/O resumes with zero errors, both paths active ready;
#   3. both networks are cut for less than the no_path_retry window: I/O waits, resumes;
#   4. both are cut for longer: I/O fails with EIO and nothing hangs;
#   5. both come back; `rampart iscsi logout -p` of network 1's portal (the path in
#      use) while writing: zero I/O errors, that session logs out, the map keeps the
#      path over network 2 and the attach keeps running;
#   6. a second attach exports the LUN over NBD (a Unix socket), whose reads are
#      spliced from the iSCSI socket into the NBD reply: fio's nbd engine verifies a
#      written pattern again and again while network 1 is cut: no error, no mismatch.
# usage: multipath-cut.sh RAMPART_BINARY [rampart|tgt]     (as root)
# POLICY picks the attach's path grouping policy (default failover); with the rampart
# target, ALUA=TAG=STATE sets a portal group's ALUA state, e.g.
#   POLICY=group_by_prio ALUA=2=active-non-optimized multipath-cut.sh bin/rampart rampart
# DRILL_NS prefixes the network namespaces' names (default rpdrill), TGT_CONTROL_PORT is
# tgtd's control port (default 79), so that two drills can run side by side.
set -euo pipefail
bin=$(realpath "$1"); target_kind=${2:-rampart}
policy=${POLICY:-failover}; alua=()
[ -n "${ALUA:-}" ] && alua=(--alua "$ALUA")
iqn=iqn.2024-03.org.clusterlab:storage.md0
work=$(mktemp -d /tmp/rampart-drill.XXXXXX)
S=${DRILL_NS:-rpdrill}-storage; C=${DRILL_NS:-rpdrill}-chunk1; tgt_port=${TGT_CONTROL_PORT:-79}
ns() { nsenter --net=/var/run/netns/$1 "${@:2}"; }
pids=()
cleanup() {
  set +e
  umount "$work/xfs" 2>/dev/null
  [ -n "${loop:-}" ] && losetup -d "$loop" 2>/dev/null
  # nsenter forks: signal each recorded process and its children.
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  sleep 0.5
  umount -l "$work/attach" 2>/dev/null
  for p in "${pids[@]}"; do pkill -KILL -P "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  pkill -KILL -f -- "--control-port $tgt_port\$" 2>/dev/null; pkill -KILL -f -- "$work" 2>/dev/null
  ip netns del $S 2>/dev/null; ip netns del $C 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
fail() { echo "DRILL FAIL: $*"; [ -f "$work/attach.log" ] && tail -20 "$work/attach.log"; exit 1; }

ip netns del $S 2>/dev/null || true; ip netns del $C 2>/dev/null || true
ip netns add $S; ip netns add $C
for n in 1 2; do
  ip link add st$n netns $S type veth peer name ch$n netns $C
  ip -n $S addr add 10.3.$n.1/24 dev st$n; ip -n $C addr add 10.3.$n.11/24 dev ch$n
  ip -n $S link set st$n up; ip -n $C link set ch$n up
done
ip -n $S link set lo up; ip -n $C link set lo up

truncate -s 512M "$work/md0.img"
case $target_kind in
rampart)
  serve() {
    ns $S "$bin" target serve --listen 10.3.1.1:3260,10.3.2.1:3260 --iqn $iqn --backstore "$work/md0.img" \
      --state-dir "$work/state" "${alua[@]}" >>"$work/target.log" 2>&1 &
    target_pid=$!; pids+=($target_pid)
  }
  serve; lun=0 ;;
tgt)
  ns $S tgtd -f --iscsi portal=10.3.1.1:3260 --control-port "$tgt_port" >"$work/target.log" 2>&1 &
  pids+=($!); sleep 0.5
  tgtadm -C "$tgt_port" --lld iscsi --op new --mode portal --param portal=10.3.2.1:3260
  tgtadm -C "$tgt_port" --lld iscsi --op new --mode target --tid 1 -T $iqn
  tgtadm -C "$tgt_port" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$work/md0.img"
  tgtadm -C "$tgt_port" --lld iscsi --op bind --mode target --tid 1 -I ALL
  lun=1 ;;
*) echo "usage: $0 BINARY [rampart|tgt]"; exit 2 ;;
esac
for _ in $(seq 50); do ns $C bash -c "exec 3<>/dev/tcp/10.3.2.1/3260" 2>/dev/null && break; sleep 0.1; done

mkdir -p "$work/attach" "$work/xfs"
ns $C "$bin" attach --fuse "$work/attach" --name mpatha --policy "$policy" --polling-interval 2s \
  --no-path-retry 3 --status-dir "$work/status" \
  iscsi://10.3.1.1:3260/$iqn/$lun iscsi://10.3.2.1:3260/$iqn/$lun >"$work/attach.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -e "$work/attach/mpatha" ] && break; sleep 0.1; done
[ -e "$work/attach/mpatha" ] || fail "attach did not show the LUN"
loop=$(losetup -f --show "$work/attach/mpatha")
mkfs.xfs -q -f "$loop"; mount "$loop" "$work/xfs"
echo "attached: $("$bin" multipath status --status-dir "$work/status" | head -1)"

# The writer: 4 KiB records with their checksum, each written with O_DSYNC and read
# back; it prints the longest single operation and exits non-zero on any error.
cat >"$work/writer.py" <<'PY'
import hashlib, os, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_DSYNC, 0o644)
end = time.monotonic() + secs; worst = 0.0; n = 0; errors = 0
while time.monotonic() < end:
    body = os.urandom(4064); rec = hashlib.sha256(body).digest() + body
    t = time.monotonic()
    try:
        os.pwrite(fd, rec, (n % 4096) * 4096)
        got = os.pread(fd, 4096, (n % 4096) * 4096)
        if hashlib.sha256(got[32:]).digest() != got[:32]:
            print("checksum mismatch at record", n); errors += 1
    except OSError as e:
        print("I/O error:", e); errors += 1; break
    worst = max(worst, time.monotonic() - t); n += 1
print(f"records={n} errors={errors} worst_stall={worst:.2f}s", flush=True)
sys.exit(1 if errors else 0)
PY
status() { "$bin" multipath status --status-dir "$work/status"; }
# has PATTERN: whether the status shows PATTERN. Not `status | grep -q`: grep exiting
# at the first match can kill the writer with SIGPIPE, which pipefail reports as a miss.
has() { grep -q "$1" <<<"$(status)"; }

echo "== 1. cut storage network 1 while writing"
python3 "$work/writer.py" "$work/xfs/data" 12 >"$work/w1.log" 2>&1 & w=$!
sleep 3; ip -n $S link set st1 down; cut_at=$(date +%s.%N)
faulty=""
for _ in $(seq 80); do has '10.3.1.1.* faulty' && { faulty=$(date +%s.%N); break; }; sleep 0.1; done
wait $w || fail "writer saw errors: $(cat "$work/w1.log")"
echo "writer: $(cat "$work/w1.log")"
[ -n "$faulty" ] || fail "path over network 1 never shown faulty"
echo "path shown faulty $(echo "$faulty - $cut_at" | bc) s after the cut"
status
stall=$(sed -n 's/.*worst_stall=\([0-9.]*\)s.*/\1/p' "$work/w1.log")
awk -v s="$stall" 'BEGIN{exit !(s <= 5.0)}' || fail "I/O stalled ${stall}s, more than 5 s"

echo "== 2. restore network 1"
ip -n $S link set st1 up
for _ in $(seq 100); do has '10.3.1.1.* active ready' && break; sleep 0.1; done
has '10.3.1.1.* active ready' || { status; fail "path over network 1 not active ready again"; }
status

if [ "$target_kind" = rampart ]; then
  echo "== 2b. restart the target while writing: every session logs in again by itself"
  python3 "$work/writer.py" "$work/xfs/data" 8 >"$work/w2.log" 2>&1 & w=$!
  sleep 2
  before=$(grep -c 'session reconnected' "$work/attach.log" || true)
  pkill -TERM -P "$target_pid" 2>/dev/null || true; kill -TERM "$target_pid" 2>/dev/null || true
  wait "$target_pid" 2>/dev/null || true
  serve
  wait $w || fail "writer saw errors across a target restart: $(cat "$work/w2.log")"
  echo "writer: $(cat "$work/w2.log")"
  for _ in $(seq 100); do [ "$(grep -c ' active ready' <<<"$(status)")" = 2 ] && break; sleep 0.1; done
  [ "$(grep -c ' active ready' <<<"$(status)")" = 2 ] || { status; fail "paths not active ready after the target restart"; }
  again=$(( $(grep -c 'session reconnected' "$work/attach.log" || true) - before ))
  [ "$again" -ge 2 ] || fail "the attach logged $again reconnections after the target restart, want 2 (one per path)"
  echo "both paths active ready again: $again sessions logged in again without restarting attach"
fi

echo "== 3. cut both networks for 3 s (no_path_retry window 6 s)"
python3 "$work/writer.py" "$work/xfs/data" 8 >"$work/w3.log" 2>&1 & w=$!
sleep 1; ip -n $S link set st1 down; ip -n $S link set st2 down
sleep 3; ip -n $S link set st1 up; ip -n $S link set st2 up
wait $w || fail "I/O failed during a short outage: $(cat "$work/w3.log")"
echo "writer: $(cat "$work/w3.log")"

echo "== 4. cut both networks for good: I/O on the attached LUN must fail, not hang"
# Measured on the attached device itself: a file system above may retry metadata
# writeback by its own policy (XFS retries EIO on metadata forever by default).
umount "$work/xfs"; losetup -d "$loop"; loop=
ip -n $S link set st1 down; ip -n $S link set st2 down
start=$(date +%s)
if timeout 60 dd if=/dev/urandom of="$work/attach/mpatha" bs=64k count=1 oflag=direct,dsync conv=notrunc >"$work/w4.log" 2>&1; then
  fail "a write succeeded with no path"
fi
took=$(( $(date +%s) - start ))
[ $took -lt 60 ] || fail "I/O hung with no path"
echo "I/O failed after ${took}s with no path (no_path_retry 3 x 2 s): $(grep -o 'Input/output error' "$work/w4.log" | head -1)"

echo "== 5. restore both networks, then log out of network 1's portal while writing"
ip -n $S link set st1 up; ip -n $S link set st2 up
for _ in $(seq 150); do [ "$(grep -c ' active ready' <<<"$(status)")" = 2 ] && break; sleep 0.1; done
[ "$(grep -c ' active ready' <<<"$(status)")" = 2 ] || { status; fail "paths not active ready after both networks came back"; }
python3 "$work/writer.py" "$work/attach/mpatha" 6 >"$work/w5.log" 2>&1 & w=$!
sleep 2
"$bin" iscsi logout -T $iqn -p 10.3.1.1:3260 --status-dir "$work/status" || fail "iscsi logout -p 10.3.1.1 failed"
wait $w || fail "writer saw errors across the logout of one portal: $(cat "$work/w5.log")"
echo "writer: $(cat "$work/w5.log")"
attach_pid=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' "$work/status/mpatha.json")
[ -n "$attach_pid" ] && kill -0 "$attach_pid" 2>/dev/null || fail "the attach ended with the logout of one portal"
! has '10.3.1.1' || { status; fail "the map still shows the path over network 1 after its logout"; }
has '10.3.2.1.* active ready' || { status; fail "the path over network 2 is not active ready after the logout of network 1"; }
grep -q 'logging out path.*10.3.1.1' "$work/attach.log" || fail "the attach did not log out the path over network 1"
status
"$bin" iscsi session --status-dir "$work/status"

echo "== 6. NBD export: reads verified while network 1 is cut"
ip -n $S link set st1 up
ns $C "$bin" attach --nbd "unix:$work/nbd.sock" --name nbdlun --policy "$policy" --polling-interval 2s \
  --no-path-retry 3 --status-dir "$work/status-nbd" \
  iscsi://10.3.1.1:3260/$iqn/$lun iscsi://10.3.2.1:3260/$iqn/$lun >"$work/attach-nbd.log" 2>&1 &
pids+=($!)
uri="nbd+unix:///nbdlun?socket=$work/nbd.sock"
for _ in $(seq 100); do nbdinfo "$uri" >/dev/null 2>&1 && break; sleep 0.1; done
nbdinfo "$uri" >/dev/null 2>&1 || fail "the NBD export did not come up: $(tail -5 "$work/attach-nbd.log")"
for _ in $(seq 150); do [ "$(grep -c ' active ready' <<<"$("$bin" multipath status --status-dir "$work/status-nbd")")" = 2 ] && break; sleep 0.1; done
nbdfio() { fio --name=nbdverify --ioengine=nbd --uri="$uri" --size=64M --bs=1M --iodepth=8 \
  --verify=crc32c --verify_fatal=1 --verify_state_save=0 "$@" >>"$work/fio-nbd.log" 2>&1; }
nbdfio --rw=write --do_verify=0 || fail "writing the pattern through NBD failed: $(tail -5 "$work/fio-nbd.log")"
(
  end=$(( $(date +%s) + 10 )); n=0
  while [ "$(date +%s)" -lt $end ]; do
    nbdfio --rw=read --verify_only || { echo "verify pass $n failed"; exit 1; }
    n=$((n + 1))
  done
  echo "verified passes=$n"
) >"$work/w6.log" 2>&1 & w=$!
sleep 3; ip -n $S link set st1 down
wait $w || fail "NBD reads failed or mismatched across the cut: $(cat "$work/w6.log"; tail -20 "$work/fio-nbd.log")"
ip -n $S link set st1 up
grep -q "path failed.*10.3.1.1\|failover" "$work/attach-nbd.log" || fail "the NBD attach never noticed the cut of network 1"
echo "NBD reads across the cut of network 1: $(cat "$work/w6.log") of 64 MiB each, 0 errors, 0 mismatches"
echo "DRILL OK ($target_kind)"
