#!/bin/sh
# dfs-bench.sh: start a single-machine rampart DFS (master + 3 chunkservers,
# goal 2), mount it with FUSE and run ../shared/bench/fsbench.py against it;
# with MOOSEFS=1, also MooseFS 3 (../shared/peers/moosefs.sh, master + 3
# chunkservers, goal 2) in the same run, and print rampart/MooseFS ratios.
#
# The machine is shared and its load changes by the minute, so with MOOSEFS=1
# both systems stay up and fsbench runs ROUNDS times (default 2) alternately
# on each: rampart, MooseFS, rampart, MooseFS. Every run prints the load
# average before and after it and the CPU seconds (user+sys) the system's
# processes used during it; the table gives each figure's median over the
# rounds per side, the ratio of the medians and every round's value. Each
# run waits until both systems' processes are idle (settle, below).
#
# Scheduling priority: MooseFS's daemons and mfsmount raise their own
# priority to nice -19 (their NICE_LEVEL default; `ps -o ni` shows it), which
# on a loaded machine gives them most of the CPU whenever they want it. The
# rampart server and mount therefore run at the same priority, NICE (default
# -19), and every run prints the nice values of both systems' processes; set
# NICE=0 to measure rampart at the default priority. (rampart's DFS commands raise
# themselves to --nice, default -19, as MooseFS's do; a binary that has the flag
# is given --nice NICE as well.)
#
# Needs root and /dev/fuse. Usage: bench/dfs-bench.sh [BIG_MIB] [FILES]
set -eu
BIG=${1:-256}
FILES=${2:-1000}
BIN=${RAMPART:-./rampart}
FSBENCH=${FSBENCH:-/work/shared/bench/fsbench.py}
MFS=${MFS_PEER:-/work/shared/peers/moosefs.sh}
ROUNDS=${ROUNDS:-2}
WORK=$(mktemp -d)
PORT=${PORT:-19421}
NICE=${NICE:--19}
cleanup() {
	fusermount -u "$WORK/mnt" 2>/dev/null || true
	[ -n "${MPID:-}" ] && kill "$MPID" 2>/dev/null || true
	[ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null || true
	[ -n "${MFS_UP:-}" ] && "$MFS" down "$WORK/mfs" "$WORK/mfsmnt" >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# cpu PID...: the user+sys seconds the processes have used so far.
cpu() {
	t=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		# Fields after the command name (which may hold spaces): utime is the
		# 12th, stime the 13th.
		v=$(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')
		t=$((t + v))
	done
	awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# settle PID...: wait (up to SETTLE_MAX seconds, default 120) until the
# processes use less than a tenth of a core over 2 s. Both systems finish
# work in the background after a run (MooseFS deletes the chunks of
# unlinked files at about 30 a second, long after its unlink phase; rampart
# at 128 per second per chunkserver): without this, that work ran during the
# other system's next run and was charged to it. Prints how long it waited.
settle() {
	t=0
	state="still busy after"
	while [ "$t" -lt "${SETTLE_MAX:-120}" ]; do
		a=$(cpu "$@")
		sleep 2
		t=$((t + 2))
		if awk -v a="$a" -v b="$(cpu "$@")" 'BEGIN { exit !(b - a < 0.2) }'; then
			state="idle after"
			break
		fi
	done
	echo "   (both systems $state ${t} s; load $(cut -d' ' -f1 /proc/loadavg))"
}

# run LABEL DIR PID...: one fsbench run on DIR, appended to $WORK/results as
# "label round figure value unit", with the load before it and the CPU
# seconds of the PIDs during it.
run() {
	label=$1 dir=$2
	shift 2
	echo "== $label round $round, load before: $(cut -d' ' -f1-3 /proc/loadavg); nice: $(ps -o ni= -p "$(echo "$@" | tr ' ' ,)" | tr -s ' \n' ' ')"
	c0=$(cpu "$@")
	python3 "$FSBENCH" "$dir" --big-mib "$BIG" --files "$FILES" --label "$label" >"$WORK/run.txt" || {
		echo "fsbench on $label failed" >&2
		cat "$WORK/run.txt" >&2
		exit 1
	}
	c1=$(cpu "$@")
	cat "$WORK/run.txt"
	# The metadata figures come last: the 1-minute load after the run is
	# the load they were measured under.
	echo "$label: $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') CPU seconds (user+sys) in its processes; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
	awk -F'\t' -v r="$round" '{ print $1 "\t" r "\t" $2 "\t" $3 "\t" $4 }' "$WORK/run.txt" >>"$WORK/results"
}

mkdir -p "$WORK/mnt"
: >"$WORK/results"
NICEFLAG=
"$BIN" server --help 2>/dev/null | grep -q -- '--nice' && NICEFLAG="--nice=$NICE"
nice -n "$NICE" "$BIN" server --dir "$WORK/data" --listen "127.0.0.1:$PORT" $NICEFLAG 2>"$WORK/server.log" &
SPID=$!
sleep 1
nice -n "$NICE" "$BIN" mount "$WORK/mnt" --master "127.0.0.1:$PORT" $NICEFLAG 2>"$WORK/mount.log" &
MPID=$!
for i in 1 2 3 4 5 6 7 8 9 10; do
	mountpoint -q "$WORK/mnt" && break
	sleep 0.5
done
mountpoint -q "$WORK/mnt" || { echo "rampart mount failed" >&2; cat "$WORK/mount.log" >&2; exit 1; }

if [ "${MOOSEFS:-0}" != 1 ]; then
	round=1
	run rampart "$WORK/mnt" "$SPID" "$MPID"
	"$BIN" info --master "127.0.0.1:$PORT"
	exit 0
fi

MFS_UP=1
"$MFS" up "$WORK/mfs" "$WORK/mfsmnt" >"$WORK/mfs.log" 2>&1 || { cat "$WORK/mfs.log"; exit 1; }
MFSPIDS=$(pgrep -x mfsmaster; pgrep -x mfschunkserver; pgrep -x mfsmount) || true
round=1
while [ "$round" -le "$ROUNDS" ]; do
	# shellcheck disable=SC2086 # one PID per word
	settle "$SPID" "$MPID" $MFSPIDS
	run rampart "$WORK/mnt" "$SPID" "$MPID"
	# shellcheck disable=SC2086 # one PID per word
	settle "$SPID" "$MPID" $MFSPIDS
	# shellcheck disable=SC2086 # one PID per word
	run moosefs "$WORK/mfsmnt" $MFSPIDS
	round=$((round + 1))
done
"$BIN" info --master "127.0.0.1:$PORT"

echo "rampart / MooseFS (median of $ROUNDS rounds each; every round's value after it):"
awk -F'\t' '
	{ k = $3; v[$1, k, ++n[$1, k]] = $4; unit[k] = $5; if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
	function median(l, k,    i, j, c, t, a) {
		c = n[l, k]
		for (i = 1; i <= c; i++) a[i] = v[l, k, i] + 0
		for (i = 2; i <= c; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		if (c == 0) return 0
		return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
	}
	function rounds(l, k,    i, s) {
		s = ""
		for (i = 1; i <= n[l, k]; i++) s = s (i > 1 ? "," : "") v[l, k, i]
		return s
	}
	END {
		printf "  %-22s %10s %10s %-8s %7s  %s\n", "figure", "rampart", "moosefs", "unit", "ratio", "rounds (rampart | moosefs)"
		for (i = 1; i <= nk; i++) {
			k = order[i]; r = median("rampart", k); m = median("moosefs", k)
			printf "  %-22s %10.1f %10.1f %-8s %7s  %s | %s\n", k, r, m, unit[k],
				(m > 0 ? sprintf("x%.2f", r / m) : "-"), rounds("rampart", k), rounds("moosefs", k)
		}
	}' "$WORK/results"
