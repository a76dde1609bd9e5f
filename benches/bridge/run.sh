#!/usr/bin/env bash
# The live bridge against a plain kernel bridge, in the namespace lab's
# topology (tests/lab/lab.sh): TCP throughput and small-packet rate with
# iperf3, round-trip latency with ping. Needs root; installs iperf3 and
# iputils-ping when missing.
#
#   benches/bridge/run.sh            # release build, 1 worker
#   WORKERS=2 benches/bridge/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -q -p chokepoint-cli
export CHOKEPOINT=target/release/chokepoint LAB_DIR=${LAB_DIR:-/tmp/chokepoint-bridge-bench}
trap 'tests/lab/lab.sh down' EXIT

measure() {
  local label=$1
  ip netns exec cp-server timeout 60 iperf3 -s -B 198.18.0.2 -D --logfile "$LAB_DIR/iperf3.log"
  sleep 0.5
  local tcp udp rtt
  tcp=$(ip netns exec cp-client timeout 20 iperf3 -c 198.18.0.2 -t 5 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
  udp=$(ip netns exec cp-client timeout 20 iperf3 -c 198.18.0.2 -u -b 0 -l 18 -t 5 -J | python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print("%.0f %.1f" % ((s["packets"]-s["lost_packets"])/s["seconds"], s["lost_percent"]))')
  rtt=$(ip netns exec cp-client ping -c 200 -i 0.005 -q 198.18.0.2 | awk -F'= ' '/^rtt/ {split($2, a, "/"); print a[2] " / " a[3]}')
  pkill -f "iperf3 -s -B 198.18.0.2" || true
  printf "%-22s %10s %18s %12s\n" "$label" "$tcp" "$udp" "$rtt"
}

printf "%-22s %10s %18s %12s\n" bridge "TCP Gbit/s" "64B UDP pps (loss%)" "rtt avg/max ms"
tests/lab/lab.sh up-kernel >/dev/null
measure "kernel bridge"
tests/lab/lab.sh up tests/lab/policy.yaml >/dev/null
measure "chokepoint run"
