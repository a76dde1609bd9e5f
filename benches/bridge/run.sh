#!/usr/bin/env bash
# The live bridge against a plain kernel bridge, side by side in one run:
# a client, a censor and a server namespace joined by veth pairs (the
# namespace lab's topology, under names of its own: cprate-c, cprate-k,
# cprate-s; addresses in 198.18.24.0/24), bridged in turn by the kernel and
# by `chokepoint run` with each capture backend and worker count. For each:
# TCP throughput (iperf3, 5 s), 64-byte UDP frames delivered per second
# (iperf3 -u -b 0 -l 18: 18 bytes of payload, 64 bytes on the wire with the
# FCS), and the round trip (ping, 200 x 5 ms). Needs root; installs iperf3
# and iputils-ping when missing.
#
#   benches/bridge/run.sh                       # release build; every setup once
#   ROUNDS=3 benches/bridge/run.sh              # alternate the setups three times
#   SETUPS="kernel ring:1 socket:1" benches/bridge/run.sh
#   BEFORE=/path/to/older/chokepoint benches/bridge/run.sh   # adds "before:1" (its default backend)
#
# Setups: kernel, socket:N, ring:N, ring-v3:N, ring-spin:N (ring with
# --spin-us $SPIN_US, default 50), before:N (N workers). Raw
# figures go to $OUT/bridge.tsv, with the bridge process's CPU time per
# frame it forwarded (user + system, over the whole measurement: the
# bridge's own efficiency, which the machine's other load disturbs less than
# the rates). Every process is started under `timeout` and stopped by its
# recorded PID; namespaces are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/bridge-bench}
ROUNDS=${ROUNDS:-1}
SETUPS=${SETUPS:-"kernel socket:1 ring:1 socket:2 ring:2"}
[ -n "${BEFORE:-}" ] && SETUPS="$SETUPS before:1"
POLICY=${POLICY:-tests/lab/policy.yaml}
C=cprate-c; K=cprate-k; S=cprate-s
CLIENT=198.18.24.1; SERVER=198.18.24.2
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q -p chokepoint-cli
CP=${CHOKEPOINT:-target/release/chokepoint}

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# stop NAME: end the process whose PID was recorded as NAME, and only it.
stop() {
  local f="$OUT/$1.pid" pid
  [ -e "$f" ] || return 0
  pid=$(cat "$f"); rm -f "$f"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# start NAME NS SECONDS CMD...: in the background, under a timeout, PID recorded.
start() {
  local name=$1 ns=$2 t=$3; shift 3
  ip netns exec "$ns" timeout "$t" "$@" > "$OUT/$name.log" 2>&1 &
  echo $! > "$OUT/$name.pid"
}

down() {
  stop iperf3; stop bridge
  for ns in $C $K $S; do ip netns del "$ns" 2>/dev/null || true; done
}
trap down EXIT

topology() {
  down
  for ns in $C $K $S; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done
  ip link add c0 netns $C type veth peer name c1 netns $K
  ip link add s0 netns $S type veth peer name s1 netns $K
  nsx $C ip addr add $CLIENT/24 dev c0
  nsx $S ip addr add $SERVER/24 dev s0
  for x in "$C c0" "$K c1" "$K s1" "$S s0"; do
    set -- $x
    nsx "$1" ip link set "$2" up
    # Whole frames only: no offloads (as in the lab), on every port.
    nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  done
  for ns in $C $K $S; do nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
}

wait_path() {
  for _ in $(seq 1 50); do
    nsx $C ping -c 1 -W 1 -q $SERVER >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bridge did not carry traffic" >&2
  cat "$OUT/bridge.log" >&2 2>/dev/null || true
  return 1
}

bridge_up() { # SETUP
  local kind=${1%%:*} workers=${1#*:}
  case "$kind" in
    kernel)
      nsx $K ip link add br0 type bridge
      nsx $K ip link set c1 master br0
      nsx $K ip link set s1 master br0
      nsx $K ip link set br0 up ;;
    ring-spin)
      start bridge $K 300 "$CP" run --inside c1 --outside s1 --policy "$POLICY" --workers "$workers" --capture ring --spin-us "${SPIN_US:-50}" ;;
    before)
      start bridge $K 300 "$BEFORE" run --inside c1 --outside s1 --policy "$POLICY" --workers "$workers" ;;
    *)
      start bridge $K 300 "$CP" run --inside c1 --outside s1 --policy "$POLICY" --workers "$workers" --capture "$kind" ;;
  esac
  wait_path
}

# The bridge's own PID (the recorded one is its `timeout`), and its CPU
# seconds so far (user + system).
bridge_pid() { local t; t=$(cat "$OUT/bridge.pid" 2>/dev/null) || return 0; pgrep -P "$t" | head -1; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

measure() { # SETUP ROUND
  local tcp udp rtt pid cpu0=0 cpu1=0 fwd us=NA
  pid=$(bridge_pid)
  [ -n "$pid" ] && cpu0=$(cpu_seconds "$pid")
  start iperf3 $S 120 iperf3 -s -B $SERVER
  for _ in $(seq 1 50); do nsx $C bash -c "</dev/tcp/$SERVER/5201" 2>/dev/null && break; sleep 0.1; done
  tcp=$(nsx $C timeout 30 iperf3 -c $SERVER -t 5 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))') || tcp=NA
  udp=$(nsx $C timeout 30 iperf3 -c $SERVER -u -b 0 -l 18 -t 5 -J | python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.0f\t%.0f\t%.1f" % ((s["packets"]-s["lost_packets"])/s["seconds"], s["packets"]/s["seconds"], s["lost_percent"]))') || udp=$'NA\tNA\tNA'
  rtt=$(nsx $C timeout 30 ping -c 200 -i 0.005 -q $SERVER | awk -F'= ' '/^rtt/ {split($2, a, "/"); printf "%.3f\t%.3f\t%.3f", a[1], a[2], a[3]}') || true
  [ -n "$rtt" ] || rtt=$'NA\tNA\tNA'
  stop iperf3
  [ -n "$pid" ] && cpu1=$(cpu_seconds "$pid")
  stop bridge
  # CPU per forwarded frame, from the counters the bridge prints when it stops.
  fwd=$(grep -o 'forwarded [0-9]*' "$OUT/bridge.log" 2>/dev/null | awk '{ print $2 }' | tail -1)
  if [ -n "$pid" ] && [ "${fwd:-0}" -gt 0 ]; then
    us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$fwd" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')
  fi
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$2" "$1" "$tcp" "$udp" "$rtt" "$us" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/bridge.tsv"
  local dl sent loss rmin ravg rmax
  IFS=$'\t' read -r dl sent loss <<< "$udp"
  IFS=$'\t' read -r rmin ravg rmax <<< "$rtt"
  printf "%-5s %-12s %10s %12s %10s %7s %24s %9s\n" "$2" "$1" "$tcp" "$dl" "$sent" "$loss" "$rmin / $ravg / $rmax" "$us"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "round\tsetup\ttcp_gbit\tudp64_delivered_pps\tudp64_sent_pps\tudp_loss_pct\trtt_min_ms\trtt_avg_ms\trtt_max_ms\tbridge_cpu_us_per_frame\tload1\n" > "$OUT/bridge.tsv"
printf "%-5s %-12s %10s %12s %10s %7s %24s %9s\n" round setup "TCP Gbit/s" "UDP64 pps" "sent pps" "loss %" "rtt min/avg/max ms" "CPU us/fr"
for r in $(seq 1 "$ROUNDS"); do
  for setup in $SETUPS; do
    topology
    bridge_up "$setup"
    measure "$setup" "$r"
  done
done
echo "# raw figures: $OUT/bridge.tsv; load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
