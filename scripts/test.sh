#!/usr/bin/env bash
# Runs every test of rampart, in tiers (see docs/testing.md):
#   1. go vet and unit tests (`go test ./...`, no root needed)
#   2. root-only integration tests (FUSE, namespaces), when run as root
#   3. conformance of the iSCSI target with libiscsi's iscsi-test-cu
# and ends with one line "N passed, N failed". Exit status 0 only if nothing failed.
# Logs go to $RAMPART_TEST_LOGS (default: a fresh temp dir), printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
logs=${RAMPART_TEST_LOGS:-$(mktemp -d /tmp/rampart-test.XXXXXX)}
mkdir -p "$logs"
passed=0; failed=0
tally() { # name logfile: counts --- PASS / --- FAIL lines of go test -v output
  local p f
  p=$(grep -cE '^\s*--- PASS' "$2" || true); f=$(grep -cE '^\s*--- FAIL|^FAIL\s|^panic:' "$2" || true)
  passed=$((passed + p)); failed=$((failed + f))
  echo "$1: $p passed, $f failed (log: $2)"
  [ "$f" = 0 ] || grep -E '^\s*--- FAIL|^FAIL|^panic:|_test.go:[0-9]+:' "$2" | head -40
}

scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }

echo "== tier 1: vet and unit tests"
if ! go vet ./... >"$logs/vet.log" 2>&1; then
  cat "$logs/vet.log"; failed=$((failed + 1))
fi
go build -o bin/rampart ./cmd/rampart 2>"$logs/build.log" || { cat "$logs/build.log"; failed=$((failed + 1)); }
go test -count=1 -v -timeout 20m ./... >"$logs/unit.log" 2>&1
tally unit "$logs/unit.log"

if [ "$(id -u)" = 0 ]; then
  echo "== tier 2: root integration tests"
  # Packages with root-gated tests run again with the gate open: those whose tests
  # name the gate, and those whose tests import a helper that applies it
  # (internal/testutil's RequireRoot, or a *test package such as localtest that calls it).
  gated=$(grep -rl --include='*.go' -e RAMPART_ROOT_TESTS -e 'testutil.RequireRoot' internal cmd 2>/dev/null |
    xargs -r -n1 dirname | sort -u | sed 's|^|github.com/rampart-storage/rampart/|')
  pkgs=$(go list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
    awk -v g="$gated" 'BEGIN { n = split(g, a, "\n"); for (i = 1; i <= n; i++) gate[a[i]] = 1 }
      { for (i = 1; i <= NF; i++) if ($i in gate) { print $1; break } }' |
    sed 's|^github.com/rampart-storage/rampart/|./|' | sort -u)
  if [ -n "$pkgs" ]; then
    RAMPART_ROOT_TESTS=1 go test -count=1 -v -timeout 20m $pkgs >"$logs/root.log" 2>&1
    tally root "$logs/root.log"
    if ! grep -h 'POSIX conformance:' "$logs/root.log"; then
      failed=$((failed + 1)); echo "root: the DFS POSIX suite did not run (no 'POSIX conformance:' line)"
    fi
  else
    echo "root: no root-gated tests"
  fi
  echo "== tier 2: drills (network namespaces)"
  for kind in rampart tgt; do
    if [ -x bin/rampart ] && timeout 300 scripts/drills/multipath-cut.sh bin/rampart $kind >"$logs/drill-multipath-$kind.log" 2>&1; then
      passed=$((passed + 1)); echo "multipath cut drill ($kind target): ok"
      grep -E 'writer|faulty [0-9]|failed after|NBD reads' "$logs/drill-multipath-$kind.log"
    else
      failed=$((failed + 1)); echo "multipath cut drill ($kind target): FAILED"; tail -30 "$logs/drill-multipath-$kind.log"
    fi
  done
  echo "== tier 2: DFS fault drill (kill -9 a chunkserver mid-write, kill -9 the master mid-run)"
  if [ -x bin/rampart ] && timeout 900 scripts/drills/dfs-fault.sh bin/rampart >"$logs/drill-dfs-fault.log" 2>&1; then
    passed=$((passed + 1)); echo "dfs fault drill: ok"; grep -E '^(ok|FAIL) ' "$logs/drill-dfs-fault.log"
  else
    failed=$((failed + 1)); echo "dfs fault drill: FAILED"; tail -40 "$logs/drill-dfs-fault.log"
  fi
  echo "== tier 2: the seed lab (rampart demo, demo drill, demo down)"
  if [ -x bin/rampart ] && timeout 600 scripts/drills/demo.sh bin/rampart >"$logs/drill-demo.log" 2>&1; then
    passed=$((passed + 1)); echo "demo drill: ok"
    grep -E 'DEMO DRILL: rampart demo took|^  client:|^drill OK' "$logs/drill-demo.log"
  else
    failed=$((failed + 1)); echo "demo drill: FAILED"; grep -E 'FAIL|failed|mismatch' "$logs/drill-demo.log" | head -30
  fi
else
  echo "== tier 2 skipped: not root"
fi

if [ -x bin/rampart ] && command -v iscsi-test-cu >/dev/null; then
  echo "== tier 3: iSCSI conformance (libiscsi iscsi-test-cu)"
  if scripts/conformance.sh bin/rampart >"$logs/conformance.log" 2>&1; then
    tail -5 "$logs/conformance.log"; passed=$((passed + 1))
  else
    cat "$logs/conformance.log" | tail -40; failed=$((failed + 1))
  fi
  echo "== tier 3: RAID served live (control socket) and as a LUN (iscsi-test-cu, healthy and degraded)"
  if scripts/drills/raid-live.sh bin/rampart >"$logs/drill-raid-live.log" 2>&1; then
    passed=$((passed + 1)); echo "raid live management drill: ok"
  else
    failed=$((failed + 1)); echo "raid live management drill: FAILED"; tail -30 "$logs/drill-raid-live.log"
  fi
  if scripts/drills/raid-conformance.sh bin/rampart >"$logs/raid-conformance.log" 2>&1; then
    passed=$((passed + 1)); grep 'passed=' "$logs/raid-conformance.log"
  else
    failed=$((failed + 1)); echo "raid conformance: FAILED"; tail -30 "$logs/raid-conformance.log"
  fi
else
  echo "== tier 3 skipped: no rampart binary or no iscsi-test-cu"; failed=$((failed + 1))
fi

echo "logs: $logs"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
