#!/usr/bin/env bash
# Where a chokepoint bridge's CPU goes: the bench's topology (cprate-c,
# cprate-k, cprate-s; 198.18.24.0/24), one bridge, one iperf3 flood through
# it, and `perf record -g` of the bridge process for 4 seconds of it. Needs
# root and perf.
#
#   benches/bridge/profile.sh [ring|ring-v3|socket] [WORKERS] [udp|tcp]
#   perf report -i target/bridge-bench/perf-ring-udp.data --no-children --sort dso,sym
set -euo pipefail
cd "$(dirname "$0")/../.."
CAP=${1:-ring}; W=${2:-1}; TRAFFIC=${3:-udp}
OUT=${OUT:-target/bridge-bench}; mkdir -p "$OUT"
CP=${CHOKEPOINT:-target/release/chokepoint}
[ -x "$CP" ] || cargo build --release -q -p chokepoint-cli
C=cprate-c; K=cprate-k; S=cprate-s
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
PIDS=()
down() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in $C $K $S; do ip netns del "$ns" 2>/dev/null || true; done
}
trap down EXIT
down
for ns in $C $K $S; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done
ip link add c0 netns $C type veth peer name c1 netns $K
ip link add s0 netns $S type veth peer name s1 netns $K
nsx $C ip addr add 198.18.24.1/24 dev c0
nsx $S ip addr add 198.18.24.2/24 dev s0
for x in "$C c0" "$K c1" "$K s1" "$S s0"; do
  set -- $x
  nsx "$1" ip link set "$2" up
  nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
done
nsx $K timeout 60 "$CP" run --inside c1 --outside s1 --policy tests/lab/policy.yaml --workers "$W" --capture "$CAP" > "$OUT/profile-bridge.log" 2>&1 &
PIDS+=($!)
nsx $S timeout 60 iperf3 -s -B 198.18.24.2 > /dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do nsx $C ping -c 1 -W 1 -q 198.18.24.2 >/dev/null 2>&1 && break; sleep 0.2; done
# The bridge itself: the child of the `timeout` that `ip netns exec` runs.
T=$(pgrep -P "${PIDS[0]}" | head -1); BP=$(pgrep -P "$T" | head -1)
case "$TRAFFIC" in
  udp) args=(-u -b 0 -l 18 -t 8) ;;
  *) args=(-t 8) ;;
esac
nsx $C timeout 30 iperf3 -c 198.18.24.2 "${args[@]}" > "$OUT/profile-iperf3.txt" 2>&1 &
PIDS+=($!)
sleep 2
perf record -g -p "$BP" -o "$OUT/perf-$CAP-$TRAFFIC.data" -- sleep 4 2>&1 | tail -1
wait "${PIDS[2]}" || true
tail -4 "$OUT/profile-iperf3.txt"
perf report -i "$OUT/perf-$CAP-$TRAFFIC.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -5
perf report -i "$OUT/perf-$CAP-$TRAFFIC.data" --children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
