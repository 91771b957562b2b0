#!/usr/bin/env bash
# Issue 5 throughput: is rampart's initiator the bottleneck? One LUN (a tmpfs file served
# by `rampart target serve`), read in the same run by
#   A. libiscsi's iscsi-perf straight from the target (128 KiB reads, 32 in flight),
#   B. fio's nbd engine through `rampart attach --nbd` (1 MiB sequential, 8 in flight),
#      over TCP (as the issue measures) and over a Unix socket,
#   C. fio (psync, direct I/O) on the FUSE file of `rampart attach --fuse` (root only),
# and sequential writes through B and C; prints MiB/s and the ratios to iscsi-perf.
# usage: bench/attach-bench.sh [SIZE_MIB=1024] [SECONDS=10]
# The iscsi-perf and NBD-over-TCP reads alternate ROUNDS times (default 3); their rows
# are medians (each round goes to stderr). The other rows are single runs.
# RAMPART_BIN picks the binary (default bin/rampart, built when missing), e.g. to
# compare two builds in one sitting. The machine is shared, so it also prints the CPU
# time each process spent per GiB moved (target, `rampart attach`, the client), which
# contention disturbs far less than MiB/s; ISCSI_PORT and NBD_PORT move the ports (default
# 3262, 10898) so that two runs do not collide; FUSE=0 skips the FUSE rows.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
size=${1:-1024}; secs=${2:-10}
bin=${RAMPART_BIN:-bin/rampart}
[ -x "$bin" ] || go build -o "$bin" ./cmd/rampart
work=$(mktemp -d /dev/shm/rampart-attach.XXXXXX)
iqn=iqn.2026-11.org.rampart:bench; port=${ISCSI_PORT:-3262}; nport=${NBD_PORT:-10898}
pids=()
cleanup() { umount -l "$work/fuse" 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s ${size}M "$work/lun.img"
dd if=/dev/urandom of="$work/lun.img" bs=1M count=$size conv=notrunc status=none
"$bin" target serve --listen 127.0.0.1:$port --iqn $iqn --backstore "$work/lun.img" --state-dir "$work/st" 2>"$work/t.log" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
url=iscsi://127.0.0.1:$port/$iqn/0
tpid=${pids[0]}
ticks() { awk '{print $14+$15}' /proc/$1/stat; } # user+system CPU, 1/100 s
hz=$(getconf CLK_TCK)
# perfrun: iscsi-perf's MiB/s, then CPU s per GiB of the target, "-" and iscsi-perf
perfrun() {
  local t0 t1 iops mib
  t0=$(ticks $tpid)
  iops=$(/usr/bin/time -f "cpu %U %S" -o "$work/perf.cpu" timeout $((secs + 20)) iscsi-perf -m 32 -b 256 -t "$secs" "$url" 2>&1 | tr '\r' '\n' | sed -n 's/.*iops average \([0-9]*\).*/\1/p' | tail -1)
  t1=$(ticks $tpid)
  mib=$(awk -v i="$iops" 'BEGIN{printf "%.1f", i*128/1024}')
  awk -v t="$(( t1 - t0 ))" -v hz=$hz -v mib="$mib" -v s=$secs '/^cpu/{c=$2+$3} END{g=mib*s/1024; if (g>0) printf "%s %.2f - %.2f", mib, t/hz/g, c/g; else printf "%s - - -", mib}' "$work/perf.cpu"
}
"$bin" attach --nbd 127.0.0.1:$nport --name lun --status-dir "$work/status" "$url" 2>"$work/a.log" & pids+=($!)
apid=$!
for _ in $(seq 50); do nbdinfo nbd://127.0.0.1:$nport/lun >/dev/null 2>&1 && break; sleep 0.1; done
fiobw() { fio --name=b --size=${size}M --runtime="$secs" --time_based --output-format=json "$@" 2>/dev/null |
  python3 -c 'import json,sys; s=sys.stdin.read(); j=json.loads(s[s.index("{"):])["jobs"][0]; print("%.1f %d %.3f" % ((j["read"]["bw"]+j["write"]["bw"])/1024, j["read"]["io_bytes"]+j["write"]["io_bytes"], (j["usr_cpu"]+j["sys_cpu"])/100*j["job_runtime"]/1000))'; }
# nbdrun ARGS: MiB/s, and CPU s per GiB of the target, attach and fio
nbdrun() {
  local a0 t0 a1 t1 out
  a0=$(ticks $apid); t0=$(ticks $tpid)
  out=$(fiobw --ioengine=nbd --uri=nbd://127.0.0.1:$nport/lun "$@")
  a1=$(ticks $apid); t1=$(ticks $tpid)
  awk -v o="$out" -v t=$(( t1 - t0 )) -v a=$(( a1 - a0 )) -v hz=$hz 'BEGIN{split(o,f," "); g=f[2]/1073741824;
    if (g>0) printf "%s %.2f %.2f %.2f", f[1], t/hz/g, a/hz/g, f[3]/g; else printf "%s - - -", f[1]}'
}
# The issue's figure, NBD read over TCP against iscsi-perf, is measured in ROUNDS
# alternations (default 3) and reported as medians: the machine is shared, and one
# pair of runs can differ by 30% from the next.
rounds=${ROUNDS:-3}; perf_all=(); nbd_all=()
for r in $(seq "$rounds"); do
  pc=$(perfrun); nc=$(nbdrun --rw=read --bs=1M --iodepth=8)
  perf_all+=("$pc"); nbd_all+=("$nc")
  echo "round $r: iscsi-perf ${pc%% *} MiB/s, nbd read ${nc%% *} MiB/s, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pick() { # the run (of the list) whose MiB/s is the median
  local m=$1; shift
  for x in "$@"; do [ "${x%% *}" = "$m" ] && { echo "$x"; return; }; done; echo "$1"
}
perf_mib=$(median $(for x in "${perf_all[@]}"; do echo "${x%% *}"; done))
nbd_r=$(median $(for x in "${nbd_all[@]}"; do echo "${x%% *}"; done))
perf_cpu=$(pick "$perf_mib" "${perf_all[@]}"); perf_cpu=${perf_cpu#* }
nbd_rc=$(pick "$nbd_r" "${nbd_all[@]}")
nbd_wc=$(nbdrun --rw=write --bs=1M --iodepth=8); nbd_w=${nbd_wc%% *}
kill $apid; wait $apid 2>/dev/null || true
# The same export on a Unix socket (a client on the same host needs no TCP).
"$bin" attach --nbd "unix:$work/nbd.sock" --name lun --status-dir "$work/status-u" "$url" 2>"$work/au.log" & pids+=($!)
apid=$!
for _ in $(seq 50); do nbdinfo "nbd+unix:///lun?socket=$work/nbd.sock" >/dev/null 2>&1 && break; sleep 0.1; done
nbdurun() { # like nbdrun, over the socket
  local a0 t0 a1 t1 out
  a0=$(ticks $apid); t0=$(ticks $tpid)
  out=$(fiobw --ioengine=nbd --uri="nbd+unix:///lun?socket=$work/nbd.sock" "$@")
  a1=$(ticks $apid); t1=$(ticks $tpid)
  awk -v o="$out" -v t=$(( t1 - t0 )) -v a=$(( a1 - a0 )) -v hz=$hz 'BEGIN{split(o,f," "); g=f[2]/1073741824;
    if (g>0) printf "%s %.2f %.2f %.2f", f[1], t/hz/g, a/hz/g, f[3]/g; else printf "%s - - -", f[1]}'
}
nbdu_rc=$(nbdurun --rw=read --bs=1M --iodepth=8); nbdu_r=${nbdu_rc%% *}
nbdu_wc=$(nbdurun --rw=write --bs=1M --iodepth=8); nbdu_w=${nbdu_wc%% *}
fuse_r=-; fuse_w=-
if [ "$(id -u)" = 0 ] && [ "${FUSE:-1}" != 0 ]; then
  mkdir -p "$work/fuse"
  "$bin" attach --fuse "$work/fuse" --name lun --status-dir "$work/status2" "$url" 2>"$work/f.log" & pids+=($!)
  for _ in $(seq 50); do [ -e "$work/fuse/lun" ] && break; sleep 0.1; done
  fuse_r=$(fiobw --filename="$work/fuse/lun" --ioengine=psync --direct=1 --rw=read --bs=1M --numjobs=1); fuse_r=${fuse_r%% *}
  fuse_w=$(fiobw --filename="$work/fuse/lun" --ioengine=psync --direct=1 --rw=write --bs=1M --numjobs=1); fuse_w=${fuse_w%% *}
fi
printf "%-34s %10s %s\n" path "MiB/s" "ratio to iscsi-perf read"
printf "%-34s %10s %s\n" "iscsi-perf read 128K qd32" "$perf_mib" "1.00"
printf "%-34s %10s %s\n" "nbd read / iscsi-perf, per round" "" "$(for i in "${!perf_all[@]}"; do awk -v a="${nbd_all[$i]%% *}" -v b="${perf_all[$i]%% *}" 'BEGIN{printf "%.2f ", (b>0?a/b:0)}'; done)"
for row in "nbd read 1M qd8:$nbd_r" "nbd write 1M qd8:$nbd_w" "nbd unix read 1M qd8:$nbdu_r" "nbd unix write 1M qd8:$nbdu_w" "fuse read 1M psync:$fuse_r" "fuse write 1M psync:$fuse_w"; do
  name=${row%%:*}; v=${row##*:}
  printf "%-34s %10s %s\n" "$name" "$v" "$(awk -v a="$v" -v b="$perf_mib" 'BEGIN{ if (a=="-") print "-"; else printf "%.2f", a/b}')"
done
echo
printf "%-34s %8s %8s %8s   (CPU seconds per GiB moved)\n" path target attach client
printf "%-34s %8s %8s %8s\n" "iscsi-perf read 128K qd32" $perf_cpu
for row in "nbd read 1M qd8:$nbd_rc" "nbd write 1M qd8:$nbd_wc" "nbd unix read 1M qd8:$nbdu_rc" "nbd unix write 1M qd8:$nbdu_wc"; do
  name=${row%%:*}; set -- ${row##*:}
  printf "%-34s %8s %8s %8s\n" "$name" "$2" "$3" "$4"
done
