#!/usr/bin/env bash
# Conformance of rampart's iSCSI target with libiscsi's iscsi-test-cu (Debian
# libiscsi-bin), as the issue measures it:
#   1. every suite, write tests enabled, against a file-backed LUN served on two portals
#      (127.0.0.1 and 127.0.0.2, one target port group each), the second portal given as
#      the multipath URL: 0 failed, 0 hung, at least $MIN_PASSED passed;
#   2. with one-way CHAP configured: the iSCSI and Inquiry suites pass with the right
#      secret, and a login with a wrong secret is refused.
# usage: conformance.sh RAMPART_BINARY     (env: MIN_PASSED=230, PORT=3260)
set -uo pipefail
bin=$(realpath "$1"); here=$(cd "$(dirname "$0")/.." && pwd)
min=${MIN_PASSED:-230}; port=${PORT:-3260}
iqn=iqn.2026-11.org.rampart:conformance
work=$(mktemp -d /tmp/rampart-conf.XXXXXX)
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap 'stop; rm -rf "$work"' EXIT
serve() { # extra args...
  truncate -s 256M "$work/lun0.img"
  "$bin" target serve --listen 127.0.0.1:$port,127.0.0.2:$port --iqn $iqn \
    --backstore "$work/lun0.img" --state-dir "$work/state" "$@" >>"$work/target.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
    kill -0 $pid 2>/dev/null || break; sleep 0.1
  done
  echo "conformance: target did not start"; cat "$work/target.log"; return 1
}
rc=0

serve || exit 1
# MultipathIO runs first, on the fresh LUN: Debian's libiscsi 1.19 CompareAndWrite test
# compares LBAs 0..256 but initialises only 0..255 (fixed upstream, n = 255), so it
# passes only while LBA 256 still holds zeroes, as it does on any fresh LUN.
suites="ALL.MultipathIO $(iscsi-test-cu -l | awk -F. 'NF==2 && $1=="ALL" && $2!="MultipathIO"{print $0}')"
out=$(SUITES="$suites" LABEL=rampart "$here/bench/iscsi-conformance.sh" "iscsi://127.0.0.1:$port/$iqn/0" "iscsi://127.0.0.2:$port/$iqn/0" 2>&1)
echo "$out"
line=$(echo "$out" | tail -1)
p=$(echo "$line" | sed -n 's/.*passed=\([0-9]*\).*/\1/p'); f=$(echo "$line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')
h=$(echo "$line" | sed -n 's/.*hung_suites=\([0-9]*\).*/\1/p')
if [ "${f:-1}" != 0 ] || [ "${h:-1}" != 0 ] || [ "${p:-0}" -lt "$min" ]; then
  echo "conformance: FAIL: want 0 failed, 0 hung, >= $min passed"; rc=1
else
  echo "conformance: ok ($p passed, >= $min)"
fi
stop

serve --chap conformance-user:conformance-secret1 || exit 1
good="iscsi://conformance-user%conformance-secret1@127.0.0.1:$port/$iqn/0"
bad="iscsi://conformance-user%wrong-secret-123@127.0.0.1:$port/$iqn/0"
out=$(SUITES="ALL.Inquiry ALL.Read10 ALL.Write10 ALL.iSCSIcmdsn ALL.iSCSIResiduals" LABEL=rampart-chap "$here/bench/iscsi-conformance.sh" "$good" 2>&1 | tail -1)
echo "with CHAP: $out"
case "$out" in *" failed=0 "*"hung_suites=0") ;; *) echo "conformance: FAIL with CHAP"; rc=1 ;; esac
if timeout 20 iscsi-inq "$bad" >"$work/bad.log" 2>&1; then
  echo "conformance: FAIL: a wrong CHAP secret was accepted"; rc=1
else
  echo "wrong CHAP secret refused: $(grep -io 'auth[a-z ]*' "$work/bad.log" | head -1)"
fi
if timeout 20 iscsi-inq "iscsi://127.0.0.1:$port/$iqn/0" >"$work/none.log" 2>&1; then
  echo "conformance: FAIL: a login without CHAP was accepted"; rc=1
else
  echo "login without CHAP refused"
fi
stop
exit $rc
