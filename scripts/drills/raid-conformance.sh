#!/usr/bin/env bash
# iSCSI conformance of a RAID-5 LUN, as issue 3 measures it: a RAID-5 of three tmpfs
# files exported with `rampart target serve --backstore raid:...` passes libiscsi's
# iscsi-test-cu Read*, Write* (WriteSame* among them), Verify*, Unmap and
# CompareAndWrite suites, healthy and with one member missing. Each run uses a fresh
# array (CompareAndWrite first, on the fresh LUN: see scripts/conformance.sh).
# usage: raid-conformance.sh RAMPART_BINARY   (env: PORT=32661, MEMBER_SIZE=136M;
#        needs iscsi-test-cu from Debian's libiscsi-bin; no root)
set -uo pipefail
bin=$(realpath "$1"); here=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-32661}; size=${MEMBER_SIZE:-136M}
iqn=iqn.2026-11.org.rampart:raid-conformance
work=$(mktemp -d /dev/shm/rampart-raid-conf.XXXXXX)
export RAMPART_RUN_DIR=$work/run
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap 'stop; rm -rf "$work"' EXIT
serve() { # backstore member...
  local spec=$1; shift
  "$bin" target serve --listen 127.0.0.1:$port --iqn $iqn --backstore "$spec" \
    --state-dir "$work/state" >>"$work/target.log" 2>&1 &
  pid=$!
  # Ready when this process serves the array and the portal answers (another
  # listener on the port would not do).
  for _ in $(seq 1 100); do
    if "$bin" raid status --json "$@" 2>/dev/null | grep -q "\"served_by\": $pid" &&
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      return 0
    fi
    kill -0 $pid 2>/dev/null || break; sleep 0.1
  done
  echo "raid-conformance: target did not start"; cat "$work/target.log"; return 1
}
suites="ALL.CompareAndWrite $(iscsi-test-cu -l | awk -F. 'NF==2 && $1=="ALL" && ($2 ~ /^(Read|Write|Verify)/ || $2 == "Unmap") {print $0}')"
rc=0
for run in healthy degraded; do
  m="$work/$run"; mkdir -p "$m"
  "$bin" raid create --level 5 --size "$size" "$m/d1" "$m/d2" "$m/d3" >/dev/null || exit 1
  spec="raid:$m/d1,$m/d2,$m/d3"
  [ $run = degraded ] && spec="raid:$m/d1,missing,$m/d3"
  serve "$spec" "$m/d1" "$m/d2" "$m/d3" || exit 1
  "$bin" raid status "$m/d1" "$m/d2" "$m/d3" | head -2
  out=$(SUITES="$suites" LABEL="raid5-$run" "$here/bench/iscsi-conformance.sh" "iscsi://127.0.0.1:$port/$iqn/0" 2>&1)
  echo "$out" | grep -E 'failed=|hung' 
  line=$(echo "$out" | tail -1)
  f=$(echo "$line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p'); h=$(echo "$line" | sed -n 's/.*hung_suites=\([0-9]*\).*/\1/p')
  if [ "${f:-1}" != 0 ] || [ "${h:-1}" != 0 ]; then
    echo "raid-conformance: FAIL ($run): want 0 failed, 0 hung"; rc=1
  fi
  stop
done
[ $rc = 0 ] && echo "raid-conformance: ok"
exit $rc
