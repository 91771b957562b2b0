#!/bin/sh
# raid-bench.sh: RAID-5 of 3 members and RAID-6 of 4 members on tmpfs files against a
# single tmpfs file in the same run: 1 MiB sequential write and read, 4 KiB random
# read; prints MiB/s, IOPS and the ratios to the single file. The issue asks that
# full-stripe writes reach at least 0.5 of the single file's write throughput.
#
# Usage: bench/raid-bench.sh [-dir /dev/shm] [-size-mib 256] [-chunk-kib 64] [-seconds 3] [-rounds 3]
# Runs with each RAID-5/6 write-hole policy: cow (full stripes copy-on-write, partial
# ones journaled), full (journal every update; the default of `rampart raid create`)
# and none (hole open).
set -eu
cd "$(dirname "$0")/.."
dir=/dev/shm
if ! df -t tmpfs "$dir" >/dev/null 2>&1; then
	echo "raid-bench: $dir is not tmpfs; pass --dir DIR on a tmpfs" >&2
fi
bin=$(mktemp -d)/raidbench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/raidbench
for j in cow full none; do
	echo "== write hole: $j =="
	"$bin" -dir "$dir" -journal "$j" "$@"
done
