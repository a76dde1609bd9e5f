#!/usr/bin/env bash
# Operations labs in network namespaces of their own (prefix cpops-), on
# 198.18.20.0/24 - 198.18.23.0/24 and fd00:198:18::22:0/112 and fd00:198:18::23:0/112 (inside fd00:198:18::/64).
#
# dist: a fleet node taking signed artifacts from a distribution server.
#
#   cpops-client          cpops-censor                          cpops-server
#   c0 198.18.20.1 ── c1 [chokepoint run --artifact-url] s1 ── s0 198.18.20.2 (python http.server :80)
#                         m0 198.18.21.1
#                          │
#   cpops-dist            m1 198.18.21.2: python http.server :8080 serving rules.chk(.sig)
#
#   The server publishes, in turn: policy A signed; B tampered (a byte of the
#   body flipped, B's signature kept); B unsigned; B signed by a key the
#   node does not trust; B signed; A again (older: a rollback). The node must
#   take A, refuse the next three with A still enforcing, take B, refuse the
#   rollback, after a restart with the server gone enforce B from its cache,
#   and, fed the file alone (--artifact --trust), refuse a tampered file put
#   in its place. Enforcement is checked with real traffic (curl through the bridge:
#   a blocked Host gets the 302 stub page), the counters from /metrics.
#
# nft: the nftables export enforced by the kernel.
#
#   cpops-nclient n0 198.18.22.1 ── n1 198.18.22.254 cpops-router (nft) r1 198.18.23.254 ── v0 198.18.23.x cpops-nserver
#
#   The export of tests/lab/ops-nft.yaml is loaded with nft -f in the router;
#   TCP to a blocked prefix (IPv4 and IPv6) times out, a reset prefix is
#   refused at once, a pass rule ahead of a block lets its address through,
#   others pass; the rules' counters say the kernel did it. Then the export
#   of the bundled default policy (16 M addresses) is loaded and timed.
#
#   tests/lab/ops.sh dist | nft   run one lab (up, checks, down)
#   tests/lab/ops.sh down         remove what these labs made
#
# Needs root, iproute2, curl, python3, nftables. Every server runs under
# timeout, every wait is bounded, processes are stopped by recorded PID,
# and only the cpops- namespaces are ever deleted.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${LAB_DIR:-/tmp/chokepoint-ops}
CP=${CHOKEPOINT:-target/debug/chokepoint}
CP=$(realpath "$CP")
DIST_NS="cpops-client cpops-censor cpops-server cpops-dist"
NFT_NS="cpops-nclient cpops-router cpops-nserver"
PASS=0; FAIL=0

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ok() { echo "PASS  $1"; PASS=$((PASS+1)); }
bad() { echo "FAIL  $1: $2"; FAIL=$((FAIL+1)); }

stop() { # name: stop one recorded process
  local f="$LAB/$1.pid" pid
  [ -e "$f" ] || return 0
  pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() { # NAMESPACES...: stop this lab's processes, delete its namespaces
  for f in "$LAB"/*.pid; do
    [ -e "$f" ] || continue
    stop "$(basename "$f" .pid)"
  done
  for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
}

start() { # name ns timeout cmd...: in the background under a timeout, PID recorded
  local name=$1 ns=$2 t=$3; shift 3
  ip netns exec "$ns" timeout "$t" "$@" > "$LAB/$name.log" 2>&1 &
  echo $! > "$LAB/$name.pid"
}

link() { # nsA ifA addrA nsB ifB addrB [v6A v6B]; an address `-` is none
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  [ "$3" = - ] || nsx "$1" ip addr add "$3" dev "$2"
  [ "$6" = - ] || nsx "$4" ip addr add "$6" dev "$5"
  [ -n "${7:-}" ] && nsx "$1" ip addr add "$7" dev "$2" nodad
  [ -n "${8:-}" ] && nsx "$4" ip addr add "$8" dev "$5" nodad
  nsx "$1" ip link set "$2" up
  nsx "$4" ip link set "$5" up
}

mkns() { for ns in "$@"; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done; }

# ---------------------------------------------------------------- dist

metric() { nsx cpops-censor curl -s -m 5 http://127.0.0.1:9900/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
fetches() { metric "chokepoint_artifact_fetches_total{result=\"$1\"}"; }
# wait_more RESULT N: wait (at most 40 s: a loaded CI machine) until
# fetches RESULT exceeds N.
wait_more() {
  for _ in $(seq 1 160); do
    [ "$(fetches "$1" || echo 0)" -gt "$2" ] 2>/dev/null && return 0
    sleep 0.25
  done
  return 1
}
# status NAME: the HTTP status of http://NAME/ through the bridge.
status() { nsx cpops-client curl -s -m 5 -o /dev/null -w '%{http_code}' --resolve "$1:80:198.18.20.2" "http://$1/" || true; }
enforcing() { # WHICH: a.example or b.example is the blocked one
  local a b
  a=$(status a.example); b=$(status b.example)
  case $1 in
    a) [ "$a" = 302 ] && [ "$b" = 200 ];;
    b) [ "$a" = 200 ] && [ "$b" = 302 ];;
  esac
}
traffic() { echo "a.example $(status a.example), b.example $(status b.example)"; }

publish() { # ARTIFACT SIG|none MTIME: what the distribution server serves
  # As an operator publishes: the signature first, then the artifact, each
  # by rename, the artifact's Last-Modified set before it appears.
  if [ "$2" = none ]; then rm -f "$LAB/www/rules.chk.sig"; else
    cp "$2" "$LAB/www/.rules.sig.tmp" && mv "$LAB/www/.rules.sig.tmp" "$LAB/www/rules.chk.sig"; fi
  cp "$1" "$LAB/www/.rules.chk.tmp" && touch -d "@$3" "$LAB/www/.rules.chk.tmp"
  mv "$LAB/www/.rules.chk.tmp" "$LAB/www/rules.chk"
}
# logged PATTERN: how many lines of the node's log match.
logged() { grep -c "$1" "$LAB/node.log" || true; }
# wait_log PATTERN N: wait (at most 40 s) until more than N lines match.
wait_log() {
  for _ in $(seq 1 160); do
    [ "$(logged "$1")" -gt "$2" ] && return 0
    sleep 0.25
  done
  return 1
}

start_node() { # [RUN OPTIONS...]: the rules' options (default: from the distribution server)
  [ $# -gt 0 ] || set -- --artifact-url http://198.18.21.2:8080/rules.chk --poll-interval 1
  # Unprivileged, with CAP_NET_RAW alone, as the systemd unit runs it.
  start node cpops-censor 300 env RUST_LOG=info setpriv --reuid=65534 --regid=65534 --clear-groups \
    --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
    "$LAB/chokepoint" run --inside c1 --outside s1 --trust "$LAB/key.pub" \
    --artifact "$LAB/state/rules.chk" --metrics 127.0.0.1:9900 "$@"
  for _ in $(seq 1 150); do
    nsx cpops-client timeout 1 bash -c '</dev/tcp/198.18.20.2/80' 2>/dev/null && return 0
    sleep 0.2
  done
  echo "ops: the node did not come up"; cat "$LAB/node.log"; return 1
}

dist() {
  down $DIST_NS
  rm -rf "$LAB"; mkdir -p "$LAB/www" "$LAB/state" "$LAB/site"
  # The node runs as nobody: a copy of the binary it can execute wherever
  # the checkout lives, and a state directory of its own.
  cp "$CP" "$LAB/chokepoint"; chmod 755 "$LAB" "$LAB/chokepoint"; chown 65534:65534 "$LAB/state"
  echo hello > "$LAB/site/index.html"
  mkns cpops-client cpops-censor cpops-server cpops-dist
  link cpops-client c0 198.18.20.1/24 cpops-censor c1 -
  link cpops-server s0 198.18.20.2/24 cpops-censor s1 -
  link cpops-censor m0 198.18.21.1/24 cpops-dist m1 198.18.21.2/24
  for x in "cpops-client c0" "cpops-censor c1" "cpops-censor s1" "cpops-server s0"; do
    set -- $x; nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  done
  start web cpops-server 300 python3 -m http.server 80 --bind 198.18.20.2 --directory "$LAB/site"
  start dist cpops-dist 300 python3 -m http.server 8080 --bind 198.18.21.2 --directory "$LAB/www"
  # Both servers listen before the node starts: a node with no cache and
  # no answer exits (systemd restarts it), and python can be slow to start
  # on a loaded CI machine.
  for _ in $(seq 1 150); do
    nsx cpops-censor curl -s -m 1 -o /dev/null http://198.18.21.2:8080/ \
      && nsx cpops-server curl -s -m 1 -o /dev/null http://198.18.20.2/ && break
    sleep 0.2
  done

  # Keys, and the two policies compiled and signed at two times.
  "$CP" keygen "$LAB/key" > /dev/null
  "$CP" keygen "$LAB/other" > /dev/null
  for p in a b; do
    cat > "$LAB/$p.yaml" <<EOF
version: 1
lists:
  blocked: {format: domains, entries: [$p.example]}
rules:
  - {name: block-$p, match: {list: blocked, on: [http_host]}, action: {redirect: {location: "http://stub.example/blocked"}}}
EOF
  done
  SOURCE_DATE_EPOCH=1700000000 "$CP" compile "$LAB/a.yaml" -o "$LAB/a.chk" --sign "$LAB/key.key" > /dev/null
  SOURCE_DATE_EPOCH=1700003600 "$CP" compile "$LAB/b.yaml" -o "$LAB/b.chk" --sign "$LAB/key.key" > /dev/null
  cp "$LAB/b.chk" "$LAB/b-other.chk"
  "$CP" compile "$LAB/b.yaml" -o "$LAB/b-other.chk" --sign "$LAB/other.key" > /dev/null
  # Tampered: one byte of B's body flipped, B's signature kept.
  python3 - "$LAB/b.chk" "$LAB/b-tampered.chk" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[len(b) // 2] ^= 0x01
open(sys.argv[2], 'wb').write(b)
EOF

  local t=1700100000 before seen what art sig reason stage
  publish "$LAB/a.chk" "$LAB/a.chk.sig" $t
  start_node
  if enforcing a && cmp -s "$LAB/state/rules.chk" "$LAB/a.chk"; then
    ok "signed artifact A taken at start, cached: $(traffic)"
  else bad "start" "$(traffic); $(tail -3 "$LAB/node.log")"; fi
  if wait_more not_modified 1 && grep -q '"GET /rules.chk HTTP/1.1" 304' "$LAB/dist.log"; then
    ok "polls are conditional: the server answers 304 ($(grep -c '" 304 ' "$LAB/dist.log") so far)"
  else bad "conditional polls" "not_modified $(fetches not_modified); $(tail -3 "$LAB/dist.log")"; fi

  for stage in "tampered:$LAB/b-tampered.chk:$LAB/b.chk.sig:changed after signing" \
               "unsigned:$LAB/b.chk:none:unsigned" \
               "untrusted key:$LAB/b-other.chk:$LAB/b-other.chk.sig:not one of the trusted keys"; do
    IFS=: read -r what art sig reason <<< "$stage"
    before=$(fetches refused); seen=$(logged "$reason"); t=$((t + 60))
    publish "$art" "$sig" $t
    if wait_log "$reason" "$seen" && [ "$(fetches refused)" -gt "$before" ] && enforcing a \
      && [ "$(metric chokepoint_last_reload_success)" = 0 ]; then
      ok "$what artifact refused ($reason), A still enforcing: $(traffic)"
    else bad "$what artifact" "refused $(fetches refused) (was $before), $(traffic); $(grep -i refus "$LAB/node.log" | tail -2)"; fi
  done

  before=$(fetches updated); t=$((t + 60))
  publish "$LAB/b.chk" "$LAB/b.chk.sig" $t
  if wait_more updated "$before" && enforcing b && [ "$(metric chokepoint_last_reload_success)" = 1 ] \
    && cmp -s "$LAB/state/rules.chk" "$LAB/b.chk"; then
    ok "signed artifact B taken over, cached: $(traffic)"
  else bad "good artifact" "updated $(fetches updated), $(traffic); $(tail -3 "$LAB/node.log")"; fi

  before=$(fetches refused); t=$((t + 60))
  publish "$LAB/a.chk" "$LAB/a.chk.sig" $t
  if wait_log rollback 0 && [ "$(fetches refused)" -gt "$before" ] && enforcing b; then
    ok "older signed artifact refused as a rollback, B still enforcing: $(traffic)"
  else bad "rollback" "$(traffic); $(grep -i rollback "$LAB/node.log" | tail -1)"; fi

  # A restart with the distribution server gone: the cache, verified.
  stop node; stop dist
  start_node
  if enforcing b && grep -q "cached artifact verified" "$LAB/node.log"; then
    ok "restart with the server down: B from the cache: $(traffic)"
  else bad "restart from cache" "$(traffic); $(tail -3 "$LAB/node.log")"; fi

  # No server at all: --artifact FILE --trust KEY checks FILE.sig on every
  # reload; a tampered file put in its place is refused, B keeps enforcing.
  stop node
  start_node --reload-timeout 30
  seen=$(logged "changed after signing")
  cp "$LAB/b-tampered.chk" "$LAB/state/.rules.tmp" && mv "$LAB/state/.rules.tmp" "$LAB/state/rules.chk"
  if wait_log "changed after signing" "$seen" && enforcing b \
    && [ "$(metric 'chokepoint_reloads_total{result="failed"}')" -ge 1 ]; then
    ok "a signed file's reload: a tampered file refused, B still enforcing: $(traffic)"
  else bad "file reload" "$(traffic); $(tail -3 "$LAB/node.log")"; fi
  echo "ops dist: $PASS passed, $FAIL failed"
  [ $FAIL = 0 ]
}

# ---------------------------------------------------------------- nft

# tcp NS ADDR: curl's exit status for http://ADDR/ within 2 s (0 = answered).
tcp() { local rc=0; nsx cpops-nclient curl -s -m 2 -o /dev/null "http://$1/" || rc=$?; echo $rc; }
counter() { # COMMENT VERDICT: packets counted by the first rule with that comment and verdict
  nsx cpops-router nft list chain inet chokepoint filter | grep -F "comment \"chokepoint rule $1\"" \
    | grep -F " $2 " | head -1 | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'
}

nft_lab() {
  down $NFT_NS
  rm -rf "$LAB"; mkdir -p "$LAB/site"; echo hello > "$LAB/site/index.html"
  mkns cpops-nclient cpops-router cpops-nserver
  link cpops-nclient n0 198.18.22.1/24 cpops-router n1 198.18.22.254/24 fd00:198:18::22:1/112 fd00:198:18::22:fe/112
  link cpops-router r1 198.18.23.254/24 cpops-nserver v0 198.18.23.2/24 fd00:198:18::23:fe/112 fd00:198:18::23:2/112
  for a in 198.18.23.3/24 198.18.23.130/24 198.18.23.200/24; do nsx cpops-nserver ip addr add $a dev v0; done
  nsx cpops-nserver ip addr add fd00:198:18::23:200/112 dev v0 nodad
  nsx cpops-nclient ip route add default via 198.18.22.254
  nsx cpops-nclient ip -6 route add default via fd00:198:18::22:fe
  nsx cpops-nserver ip route add default via 198.18.23.254
  nsx cpops-nserver ip -6 route add default via fd00:198:18::23:fe
  nsx cpops-router sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  start web cpops-nserver 300 python3 -m http.server 80 --bind :: --directory "$LAB/site"
  # Both families answer before the table goes in (IPv6 neighbours and
  # the server's listener can take a moment on new links).
  for _ in $(seq 1 50); do [ "$(tcp 198.18.23.2)" = 0 ] && break; sleep 0.2; done
  for _ in $(seq 1 50); do [ "$(tcp '[fd00:198:18::23:2]')" = 0 ] && break; sleep 0.2; done

  "$CP" export nftables tests/lab/ops-nft.yaml -o "$LAB/ops.nft" 2> "$LAB/export.txt"
  if nsx cpops-router nft -f "$LAB/ops.nft" 2> "$LAB/nft.txt"; then
    ok "nft -f loads the export ($(tail -1 "$LAB/export.txt"))"
  else bad "nft -f" "$(head -5 "$LAB/nft.txt")"; fi
  grep -q "rule \`names\` on tls_sni" "$LAB/export.txt" && ok "name rules are reported as not exported" \
    || bad "export warnings" "$(cat "$LAB/export.txt")"

  local rc
  rc=$(tcp 198.18.23.2); [ "$rc" = 0 ] && ok "allowed address: answered" || bad "allowed address" "curl $rc"
  rc=$(tcp '[fd00:198:18::23:2]'); [ "$rc" = 0 ] && ok "allowed IPv6 address: answered" || bad "allowed IPv6" "curl $rc"
  rc=$(tcp 198.18.23.200)
  if [ "$rc" = 28 ] && [ "$(counter block drop)" -gt 0 ]; then
    ok "blocked prefix: dropped by the kernel (timeout, drop counter $(counter block drop))"
  else bad "blocked prefix" "curl $rc, counter '$(counter block drop)'"; fi
  rc=$(tcp '[fd00:198:18::23:200]')
  [ "$rc" = 28 ] && ok "blocked IPv6 prefix: dropped (timeout)" || bad "blocked IPv6" "curl $rc"
  rc=$(tcp 198.18.23.130)
  if [ "$rc" = 0 ] && [ "$(counter pass-one accept)" -gt 0 ]; then
    ok "a pass rule ahead of the block lets its address through (accept counter $(counter pass-one accept))"
  else bad "pass before block" "curl $rc, counter '$(counter pass-one accept)'"; fi
  rc=$(tcp 198.18.23.3)
  if [ "$rc" = 7 ] && [ "$(counter reset-web reject)" -gt 0 ]; then
    ok "reset prefix: refused at once by a kernel TCP reset"
  else bad "reset prefix" "curl $rc, counter '$(counter reset-web reject)'"; fi
  if ! nsx cpops-nclient ping -c 1 -W 1 198.18.23.200 > /dev/null 2>&1 && nsx cpops-nclient ping -c 1 -W 2 198.18.23.2 > /dev/null 2>&1; then
    ok "ping: blocked prefix silent, allowed one answers"
  else bad "ping" "unexpected"; fi
  # The engine agrees with the kernel on each address.
  local want got all=1
  for pair in 198.18.23.2:pass 198.18.23.130:pass 198.18.23.200:drop 198.18.23.3:reset fd00:198:18::23:200:drop; do
    want=${pair##*:}; a=${pair%:*}
    got=$("$CP" explain --policy tests/lab/ops-nft.yaml --json "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["verdict"])')
    case $got in "$want"*) ;; *) all=0; echo "  explain $a: $got, kernel did $want";; esac
  done
  [ $all = 1 ] && ok "chokepoint explain gives the verdict the kernel enforced, for every address" || bad "explain agreement" "see above"

  # The bundled default policy: ~16 M IPv4 addresses of prefixes.
  local s e n a
  "$CP" export nftables -o "$LAB/default.nft" 2> "$LAB/export-default.txt"
  s=$(date +%s.%N)
  if nsx cpops-router nft -f "$LAB/default.nft" 2> "$LAB/nft-default.txt"; then
    e=$(date +%s.%N)
    n=$(nsx cpops-router nft list table inet chokepoint | grep -c '^[[:space:]]*set ')
    ok "the default policy's export loads: nft -f took $(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }') s ($(tail -1 "$LAB/export-default.txt"), $n sets)"
  else bad "default policy export" "$(head -5 "$LAB/nft-default.txt")"; fi
  rc=$(tcp 198.18.23.200); [ "$rc" = 0 ] && ok "the reload replaced the lab table whole (198.18.23.200 answers again)" || bad "table replaced" "curl $rc"
  echo "ops nft: $PASS passed, $FAIL failed"
  [ $FAIL = 0 ]
}

case "${1:-}" in
  dist) trap 'down $DIST_NS' EXIT; dist;;
  nft) trap 'down $NFT_NS' EXIT; nft_lab;;
  down) down $DIST_NS $NFT_NS;;
  *) echo "usage: $0 dist | nft | down" >&2; exit 2;;
esac
