#!/usr/bin/env bash
# Drill (issue 6): `rampart demo`, `rampart demo drill`, `rampart demo down` end to end,
# then check that nothing is left behind. Exits 0 only if the lab came up and served its
# site, every invariant of the drill held (no failed request, no checksum mismatch, paths
# and goal restored), and down removed every namespace, mount, loop device and process.
# usage: demo.sh RAMPART_BINARY [DEMO_DIR]     (as root)
set -uo pipefail
bin=$(realpath "$1"); dir=${2:-/var/lib/rampart/demo}
log=$(mktemp /tmp/rampart-demo-drill.XXXXXX)
fail=0
note() { echo "DEMO DRILL: $*"; }
bad() { echo "DEMO DRILL FAIL: $*"; fail=1; }
# Whatever happens, leave nothing behind (down is idempotent).
trap '"$bin" demo down --dir "$dir" --purge >/dev/null 2>&1; rm -f "$log"' EXIT

start=$(date +%s.%N)
if ! "$bin" demo --dir "$dir" 2>&1 | tee "$log"; then
  bad "rampart demo failed"; exit 1
fi
note "rampart demo took $(echo "$(date +%s.%N) - $start" | bc) s (the demo reports: $(grep -o 'up in [0-9.]* s' "$log"))"
# Each chunk host has two LUNs (mpatha, mpathb), each with a loop device and an XFS.
nloops=$(losetup -a | grep -cF "$dir" || true)
[ "$nloops" -eq 6 ] || bad "want 6 loop devices (2 LUNs on each of 3 chunk hosts), found $nloops"
nxfs=$(awk -v d="$dir" 'index($5, d) == 1 && $5 ~ /\/mnt\/data_chunk[12]$/ {n++} END {print n+0}' /proc/self/mountinfo)
[ "$nxfs" -eq 6 ] || bad "want 6 XFS data folders (data_chunk1 and data_chunk2 on 3 chunk hosts), found $nxfs"
curl -fsS --max-time 10 http://10.3.250.80/ | grep -q 'highly-available' || bad "the site does not answer from this machine"
# The master's web console and metrics (MooseFS's CGI server on 9425 in the seed).
curl -fsS --max-time 10 http://10.3.250.1:9425/ >/dev/null || bad "the master's web console does not answer on 10.3.250.1:9425"
# Chunkservers register with the master on their own schedule after `demo up`:
# give them 30 s before calling a missing one a failure.
up3=
for _ in $(seq 30); do
	if curl -fsS --max-time 10 http://10.3.250.1:9425/metrics | grep -q '^rampart_dfs_chunkservers{state="up"} 3$'; then
		up3=1
		break
	fi
	sleep 1
done
[ -n "$up3" ] || bad "the master's /metrics does not count 3 chunkservers up (30 s after demo up)"

"$bin" demo drill --dir "$dir" 2>&1 | tee "$log" || bad "rampart demo drill: an invariant did not hold"
grep -q 'skipped' "$log" && bad "a drill step was skipped: $(grep -A1 '== step' "$log" | grep -B1 skipped | head -2 | tr '\n' ' ')"

"$bin" demo down --dir "$dir" --purge || bad "rampart demo down reported leftovers"

# Nothing left behind, checked with the system's own tools.
ns=$(ip netns list | grep -o '^rampart-[a-z0-9]*' || true)
[ -z "$ns" ] || bad "namespaces left: $ns"
mnts=$(awk -v d="$dir" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo)
[ -z "$mnts" ] || bad "mounts left: $mnts"
loops=$(losetup -a | grep -F "$dir" || true)
[ -z "$loops" ] || bad "loop devices left: $loops"
# A loop device over a LUN whose attach mount was lazily unmounted shows its backing
# file as just "/mpatha": the path under $dir is gone, the leak is not.
orphans=$(losetup -a | grep -E '\(/mpath[a-z]+\)$' || true)
[ -z "$orphans" ] || bad "loop devices left over detached LUNs: $orphans"
procs=$(pgrep -af -- "$dir" | grep -v -e "demo.sh" -e pgrep || true)
[ -z "$procs" ] || bad "processes left: $procs"
! ip link show rampart0 >/dev/null 2>&1 || bad "link rampart0 left"

[ $fail -eq 0 ] && echo "DEMO DRILL OK" || echo "DEMO DRILL FAILED"
exit $fail
