#!/usr/bin/env bash
# Issue 5 throughput: is rampart's initiator the bottleneck? One LUN (a tmpfs file served
# by `rampart target serve`), read in the same run by
#   A. libiscsi's iscsi-perf straight from the target (128 KiB reads, 32 in flight),
#   B. fio's nbd engine through `rampart attach --nbd` (1 MiB sequential, 8 in flight),
#   C. fio (psync, direct I/O) on the FUSE file of `rampart attach --fuse` (root only),
# and sequential writes through B and C; prints MiB/s and the ratios to iscsi-perf.
# usage: bench/attach-bench.sh [SIZE_MIB=1024] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
size=${1:-1024}; secs=${2:-10}
[ -x bin/rampart ] || go build -o bin/rampart ./cmd/rampart
work=$(mktemp -d /dev/shm/rampart-attach.XXXXXX)
iqn=iqn.2026-11.org.rampart:bench; port=3262; nport=10898
pids=()
cleanup() { umount -l "$work/fuse" 2>/dev/null; for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s ${size}M "$work/lun.img"
dd if=/dev/urandom of="$work/lun.img" bs=1M count=$size conv=notrunc status=none
bin/rampart target serve --listen 127.0.0.1:$port --iqn $iqn --backstore "$work/lun.img" --state-dir "$work/st" 2>"$work/t.log" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
url=iscsi://127.0.0.1:$port/$iqn/0
perf=$(timeout $((secs + 20)) iscsi-perf -m 32 -b 256 -t "$secs" "$url" 2>&1 | tr '\r' '\n' | sed -n 's/.*iops average \([0-9]*\).*/\1/p' | tail -1)
perf_mib=$(awk -v i="$perf" 'BEGIN{printf "%.1f", i*128/1024}')
bin/rampart attach --nbd 127.0.0.1:$nport --name lun --status-dir "$work/status" "$url" 2>"$work/a.log" & pids+=($!)
for _ in $(seq 50); do nbdinfo nbd://127.0.0.1:$nport/lun >/dev/null 2>&1 && break; sleep 0.1; done
fiobw() { fio --name=b --size=${size}M --runtime="$secs" --time_based --output-format=json "$@" 2>/dev/null |
  python3 -c 'import json,sys; s=sys.stdin.read(); j=json.loads(s[s.index("{"):])["jobs"][0]; print("%.1f" % ((j["read"]["bw"]+j["write"]["bw"])/1024))'; }
nbd_r=$(fiobw --ioengine=nbd --uri=nbd://127.0.0.1:$nport/lun --rw=read --bs=1M --iodepth=8)
nbd_w=$(fiobw --ioengine=nbd --uri=nbd://127.0.0.1:$nport/lun --rw=write --bs=1M --iodepth=8)
fuse_r=-; fuse_w=-
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$work/fuse"
  bin/rampart attach --fuse "$work/fuse" --name lun --status-dir "$work/status2" "$url" 2>"$work/f.log" & pids+=($!)
  for _ in $(seq 50); do [ -e "$work/fuse/lun" ] && break; sleep 0.1; done
  fuse_r=$(fiobw --filename="$work/fuse/lun" --ioengine=psync --direct=1 --rw=read --bs=1M --numjobs=1)
  fuse_w=$(fiobw --filename="$work/fuse/lun" --ioengine=psync --direct=1 --rw=write --bs=1M --numjobs=1)
fi
printf "%-34s %10s %s\n" path "MiB/s" "ratio to iscsi-perf read"
printf "%-34s %10s %s\n" "iscsi-perf read 128K qd32" "$perf_mib" "1.00"
for row in "nbd read 1M qd8:$nbd_r" "nbd write 1M qd8:$nbd_w" "fuse read 1M psync:$fuse_r" "fuse write 1M psync:$fuse_w"; do
  name=${row%%:*}; v=${row##*:}
  printf "%-34s %10s %s\n" "$name" "$v" "$(awk -v a="$v" -v b="$perf_mib" 'BEGIN{ if (a=="-") print "-"; else printf "%.2f", a/b}')"
done
