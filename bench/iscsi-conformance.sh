#!/usr/bin/env bash
# Runs libiscsi's iscsi-test-cu suite by suite (each under a time limit, so one hang
# cannot stop the run) against a LUN URL, and prints per-suite and total counts.
# usage: iscsi-conformance.sh URL [SECOND_PATH_URL]   (env: SUITE_TIMEOUT=120, LABEL=name,
#        SUITES="ALL.Inquiry ALL.Read10 ..." to run only those; default every ALL.* suite)
set -u
url=$1; url2=${2:-}; to=${SUITE_TIMEOUT:-120}; label=${LABEL:-target}
out=$(mktemp -d)
suites=${SUITES:-$(iscsi-test-cu -l | awk -F. 'NF==2 && $1=="ALL"{print $0}')}
tp=0; tf=0; ts=0; hung=0; hung_list=""
for s in $suites; do
  log=$out/$s.log
  timeout -k 5 "$to" iscsi-test-cu -d -t "$s" $url $url2 >"$log" 2>&1
  rc=$?
  line=$(grep -E '^ +tests ' "$log" | tail -1)
  if [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ -z "$line" ]; then
    hung=$((hung+1)); hung_list="$hung_list $s"
    n=$(grep -c '^  Test: ' "$log"); tf=$((tf+n)); continue
  fi
  p=$(echo "$line" | awk '{print $4}'); f=$(echo "$line" | awk '{print $5}')
  sk=$(grep -c 'SKIPPED' "$log")
  tp=$((tp+p)); tf=$((tf+f)); ts=$((ts+sk))
  [ "$f" != 0 ] && echo "$label $s failed=$f" >&2
done
echo "$label hung/crashed suites:${hung_list:- none}" >&2
echo "$label passed=$tp failed=$tf skipped=$ts hung_suites=$hung"
rm -rf "$out"
