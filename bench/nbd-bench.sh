#!/usr/bin/env bash
# Throughput of rampart's NBD export against the same file read and written directly,
# with fio (its nbd engine through libnbd, and psync on the file), in the same run.
# 1 MiB sequential write and read, 4 KiB random read with 32 in flight.
# usage: bench/nbd-bench.sh [SIZE_MIB=1024] [SECONDS=10]   (builds bin/rampart if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
size=${1:-1024}; secs=${2:-10}; port=10899
[ -x bin/rampart ] || go build -o bin/rampart ./cmd/rampart
work=$(mktemp -d /dev/shm/rampart-nbd.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
truncate -s ${size}M "$work/disk.img"
bin/rampart nbd serve --listen 127.0.0.1:$port --export disk="$work/disk.img" 2>"$work/nbd.log" &
pid=$!
for _ in $(seq 50); do nbdinfo nbd://127.0.0.1:$port/disk >/dev/null 2>&1 && break; sleep 0.1; done
fiojob() { # name rw bs iodepth engine-args...
  local name=$1 rw=$2 bs=$3 qd=$4; shift 4
  fio --name="$name" --rw="$rw" --bs="$bs" --iodepth="$qd" --size=${size}M --runtime="$secs" \
    --time_based --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; r=j["read"]["bw"]+j["write"]["bw"]; i=j["read"]["iops"]+j["write"]["iops"]; print("%.1f %.0f" % (r/1024, i))'
}
printf "%-12s %14s %14s %8s\n" workload "nbd MiB/s" "file MiB/s" ratio
for w in "seqwrite write 1M 8" "seqread read 1M 8" "randread4k randread 4k 32"; do
  set -- $w
  n=$(fiojob "$1" "$2" "$3" "$4" --ioengine=nbd --uri=nbd://127.0.0.1:$port/disk)
  f=$(fiojob "$1" "$2" "$3" "$4" --ioengine=libaio --direct=0 --filename="$work/disk.img")
  awk -v w="$1" -v n="$n" -v f="$f" 'BEGIN{split(n,a," "); split(f,b," ");
    printf "%-12s %8.1f (%6d IOPS) %8.1f (%6d IOPS) %5.2f\n", w, a[1], a[2], b[1], b[2], (b[1]>0?a[1]/b[1]:0)}'
done
