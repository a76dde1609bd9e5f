# Helpers the namespace lab scripts share (sourced, not run). The script
# sets LAB (its state directory) and C, K and S (its client, censor and
# server namespaces), and counts PASS and FAIL.

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ok() { echo "PASS  $1"; PASS=$((PASS+1)); }
bad() { echo "FAIL  $1: $2"; FAIL=$((FAIL+1)); }

start() { # name ns timeout cmd...: run in background under a timeout, record the PID
  local name=$1 ns=$2 t=$3; shift 3
  ip netns exec "$ns" timeout "$t" "$@" > "$LAB/$name.log" 2>&1 &
  echo $! > "$LAB/$name.pid"
}

down() { # stop every recorded process (by its PID), delete the namespaces
  for f in "$LAB"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  for ns in $C $K $S; do ip netns del "$ns" 2>/dev/null || true; done
}

wait_for() { # tries cmd...: try every 0.2 s, at most `tries` times
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

link_three() { # the namespaces, joined: c0 (C) ── c1 (K), s1 (K) ── s0 (S); up, no offloads
  for ns in $C $K $S; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done
  ip link add c0 netns $C type veth peer name c1 netns $K
  ip link add s0 netns $S type veth peer name s1 netns $K
  for x in "$C c0" "$K c1" "$K s1" "$S s0"; do
    set -- $x
    nsx "$1" ip link set "$2" up
    # The bridge reads and writes whole frames: no offloads (a TSO'd or
    # checksum-less frame would be forwarded as such and refused).
    nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  done
}
