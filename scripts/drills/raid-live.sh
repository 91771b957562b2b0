#!/usr/bin/env bash
# RAID live-management drill: a RAID-5 of three tmpfs files served by
# `rampart target serve`; a member is failed and a spare added with the `rampart raid`
# commands, which talk to the serving process over its control socket; status --json
# is polled until the rebuild is done. What must hold: every command exits 0, a second
# fail is refused without --force, an offline assembly meanwhile is refused naming the
# serving pid, the status goes degraded -> rebuilding -> [3/3] [UUU], and `raid check`
# finds no parity mismatch afterwards.
# usage: raid-live.sh RAMPART_BINARY     (env: PORT=32662; needs no root)
set -uo pipefail
bin=$(realpath "$1")
port=${PORT:-32662}
work=$(mktemp -d /dev/shm/rampart-raid-live.XXXXXX)
export RAMPART_RUN_DIR=$work/run
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap 'stop; rm -rf "$work"' EXIT
fail() { echo "raid-live: FAIL: $*"; exit 1; }
cd "$work"
"$bin" raid create --level 5 --size 64M M1 M2 M3 || fail "create"
"$bin" target serve --listen 127.0.0.1:$port --iqn iqn.2026-11.org.rampart:raid-live \
  --backstore "raid:$work/M1,$work/M2,$work/M3" >serve.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  "$bin" raid status --json M1 M2 M3 2>/dev/null | grep -q "\"served_by\": $pid" && break
  kill -0 $pid 2>/dev/null || { cat serve.log; fail "target serve exited"; }
  sleep 0.1
done
"$bin" raid status M1 M2 M3 || fail "status"
"$bin" raid fail --member M1 M1 M2 M3 || fail "fail M1"
"$bin" raid fail --member M2 M1 M2 M3 >/dev/null 2>&1 && fail "a second fail was accepted without --force"
"$bin" raid add --new SPARE --max-speed 32M M1 M2 M3 || fail "add SPARE"
# Offline assembly must be refused while served (the socket hidden to force it).
mv "$RAMPART_RUN_DIR"/raid/*.sock "$work/sock"
out=$("$bin" raid status M2 M3 SPARE 2>&1) && fail "offline status while served: $out"
echo "$out" | grep -q "pid $pid" || fail "offline refusal does not name pid $pid: $out"
echo "offline assembly refused: ${out#rampart: }"
mv "$work/sock" "$RAMPART_RUN_DIR/raid/$(basename "$(ls "$RAMPART_RUN_DIR"/raid/*.lock)" .lock).sock"
saw=0
for _ in $(seq 1 600); do
  js=$("$bin" raid status --json M1 M2 M3) || fail "status --json"
  if echo "$js" | grep -q '"rebuilding": true'; then
    saw=1
    echo "$js" | grep '"progress"' | tr -d ' ,'
  else
    break
  fi
  sleep 0.2
done
[ $saw = 1 ] || fail "never saw the rebuild running"
echo "$js" | grep -q '"degraded": false' || fail "still degraded: $js"
"$bin" raid status M1 M2 M3 | tee status.txt
grep -q '\[3/3\] \[UUU\]' status.txt || fail "not [3/3] [UUU] after the rebuild"
"$bin" raid check SPARE M2 M3 || fail "check after the rebuild"
stop
"$bin" raid status SPARE M2 M3 | grep -q '\[3/3\] \[UUU\]' || fail "offline status after stop"
echo "raid-live: ok"
