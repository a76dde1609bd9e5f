#!/usr/bin/env bash
# The evasion lab: ByeDPI (../shared/tools/byedpi, built into a temporary
# directory) as a SOCKS proxy in the client namespace, curl through it, the
# chokepoint bridge under each censor preset, a router that decrements the
# TTL (so TTL-1 fakes die one hop past the censor, as on the Internet), and
# real HTTPS and HTTP servers behind it.
#
#   ev-client           ev-censor                 ev-router                 ev-server
#   e0 198.18.4.1 ─ e1 [chokepoint run] e2 ─ r0 198.18.4.254  r1 198.18.5.254 ─ v0 198.18.5.2
#
#   tests/lab/evasion.sh test      build ByeDPI, run the matrix, print it, tear down
#   tests/lab/evasion.sh cell PRESET STRATEGY
#                                  one cell, its traffic captured at the censor
#                                  into $LAB/PRESET-STRATEGY.pcapng (replay it
#                                  with `chokepoint replay --events -`)
#   tests/lab/evasion.sh down      tear everything down
#
# Each cell is what curl got fetching a blocked name through ByeDPI with one
# strategy: `evaded` (HTTP 200) or `blocked` (reset or timeout). Before the
# matrix, each strategy fetches an allowed name (it must work end to end)
# and the blocked name without a proxy is blocked under every preset.
# Output: one line per cell, `CELL preset strategy result curl-exit`, then
# the matrix, then `evasion: N passed, M failed` for the assertions (the
# hardened preset blocks every strategy; the naive one is evaded by the
# splits).
#
# Needs root, iproute2, ethtool, curl, openssl, python3, make and a C
# compiler. Only the addresses above; every server and wait has a timeout;
# processes are stopped by the PID recorded.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${LAB_DIR:-/tmp/chokepoint-evasion}
CP=${CHOKEPOINT:-target/debug/chokepoint}
BYEDPI_SRC=${BYEDPI_SRC:-../shared/tools/byedpi}
P=${EV_PREFIX:-ev}
C=$P-client; K=$P-censor; R=$P-router; S=$P-server
SERVER=198.18.5.2
PRESETS=(naive tspu-2022 tspu-2025 gfw-2025 hardened)
# name|protocol|ByeDPI arguments (its README: offsets `N+s` count from the
# SNI, `+h` from the Host value, `+m` is the middle of it).
STRATEGIES=(
  "split-1|tls|--split 1"
  "split-sni|tls|--split 0+sm"
  "split-6|tls|--split 1 --split 0+s --split 3+s --split 6+s --split 9+s"
  "disorder-1|tls|--disorder 1"
  "fake-ttl1|tls|--fake -1 --ttl 1"
  "fake-first|tls|--fake 0+sm --ttl 1"
  "tlsrec-sni|tls|--tlsrec 0+sm"
  "oob-1|tls|--oob 1"
  "disoob-1|tls|--disoob 1"
  "http-case|http|--mod-http hcsmix,dcsmix"
  "http-split|http|--split 2+h"
)
PASS=0; FAIL=0

# nsx, ok, bad, start, wait_for; `down` below is this lab's own (four namespaces).
. tests/lab/lib.sh

stop() { # name: stop the process started under that name, by its PID
  local f="$LAB/$1.pid" pid
  [ -e "$f" ] || return 0
  pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  for f in "$LAB"/*.pid; do
    [ -e "$f" ] || continue
    stop "$(basename "$f" .pid)"
  done
  for ns in $C $K $R $S; do ip netns del "$ns" 2>/dev/null || true; done
}

build_byedpi() {
  # A copy, so the shared source tree stays as it is.
  rm -rf "$LAB/byedpi"; cp -r "$BYEDPI_SRC" "$LAB/byedpi"
  make -s -C "$LAB/byedpi" >"$LAB/byedpi-build.log" 2>&1 || { cat "$LAB/byedpi-build.log"; return 1; }
  [ -x "$LAB/byedpi/ciadpi" ]
}

topology() {
  down
  mkdir -p "$LAB"
  for ns in $C $K $R $S; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done
  ip link add e0 netns $C type veth peer name e1 netns $K
  ip link add e2 netns $K type veth peer name r0 netns $R
  ip link add r1 netns $R type veth peer name v0 netns $S
  nsx $C ip addr add 198.18.4.1/24 dev e0
  nsx $R ip addr add 198.18.4.254/24 dev r0
  nsx $R ip addr add 198.18.5.254/24 dev r1
  nsx $S ip addr add $SERVER/24 dev v0
  for x in "$C e0" "$K e1" "$K e2" "$R r0" "$R r1" "$S v0"; do
    set -- $x
    nsx "$1" ip link set "$2" up
    # Whole frames with real checksums: the hardened preset verifies them.
    nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  done
  nsx $C ip route add default via 198.18.4.254
  nsx $S ip route add default via 198.18.5.254
  nsx $R sysctl -qw net.ipv4.ip_forward=1
}

start_servers() {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$LAB/key.pem" -out "$LAB/cert.pem" -days 2 -subj "/CN=lab.example" >/dev/null 2>&1
  echo ok > "$LAB/index.html"
  # A threaded HTTPS server whose handshakes run in the handler threads: a
  # connection the censor cut halfway holds up no other.
  start https $S 900 python3 -c 'import http.server, ssl, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = http.server.ThreadingHTTPServer((sys.argv[3], 443), lambda *a: H(*a, directory=sys.argv[4]))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
srv.serve_forever()' "$LAB/cert.pem" "$LAB/key.pem" $SERVER "$LAB"
  start http $S 900 python3 -m http.server 80 --bind $SERVER --directory "$LAB"
  for _ in $(seq 1 50); do
    # From the router: no bridge runs yet.
    nsx $R timeout 1 bash -c "</dev/tcp/$SERVER/443" 2>/dev/null \
      && nsx $R timeout 1 bash -c "</dev/tcp/$SERVER/80" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "evasion: servers did not come up"; return 1
}

bridge() { # preset: (re)start the bridge under a policy with that preset
  stop chokepoint
  sed "s/PRESET/$1/" tests/lab/evasion.yaml > "$LAB/policy.yaml"
  start chokepoint $K 900 "$CP" run --inside e1 --outside e2 --policy "$LAB/policy.yaml" --events "$LAB/events-$1.jsonl"
  for _ in $(seq 1 50); do
    # The bridge carries traffic once a TCP connection gets through it.
    nsx $C timeout 1 bash -c "</dev/tcp/$SERVER/80" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "evasion: bridge did not come up"; cat "$LAB/chokepoint.log"; return 1
}

proxy() { # arguments...: (re)start ByeDPI on 127.0.0.1:1080 in the client namespace
  stop byedpi
  # shellcheck disable=SC2086
  start byedpi $C 900 "$LAB/byedpi/ciadpi" -i 127.0.0.1 -p 1080 "$@"
  for _ in $(seq 1 50); do
    nsx $C timeout 1 bash -c '</dev/tcp/127.0.0.1/1080' 2>/dev/null && return 0
    sleep 0.1
  done
  echo "evasion: ByeDPI did not come up"; cat "$LAB/byedpi.log"; return 1
}

fetch() { # proto name [proxy]: curl's HTTP code, then its exit status
  local proto=$1 name=$2 via=${3:-} port=443 url code rc=0
  [ "$proto" = http ] && port=80
  url="$proto://$name/"
  code=$(nsx $C curl -sk -m 4 -o /dev/null -w '%{http_code}' ${via:+--socks5 "$via"} \
    --resolve "$name:$port:$SERVER" "$url" 2>/dev/null) || rc=$?
  echo "${code:-000} $rc"
}

matrix() {
  local preset entry name proto args code rc result
  declare -gA CELL=()
  for preset in "${PRESETS[@]}"; do
    bridge "$preset"
    for proto in tls http; do
      read -r code rc < <(fetch "${proto/tls/https}" blocked.example)
      [ "$code" != 200 ] && ok "$preset: blocked.example over $proto without a proxy is blocked (curl exit $rc)" \
        || bad "$preset: no proxy" "blocked.example over $proto got HTTP 200"
    done
    for entry in "${STRATEGIES[@]}"; do
      IFS='|' read -r name proto args <<<"$entry"
      # shellcheck disable=SC2086
      proxy $args
      read -r code rc < <(fetch "${proto/tls/https}" allowed.example 127.0.0.1:1080)
      [ "$code" = 200 ] || bad "$preset/$name" "the strategy does not fetch an allowed name (HTTP $code, curl exit $rc)"
      read -r code rc < <(fetch "${proto/tls/https}" blocked.example 127.0.0.1:1080)
      result=blocked; [ "$code" = 200 ] && result=evaded
      CELL[$preset/$name]=$result
      echo "CELL $preset $name $result $rc"
    done
  done
  stop byedpi
}

print_matrix() {
  local entry name preset line
  line="| strategy |"; for preset in "${PRESETS[@]}"; do line+=" $preset |"; done; echo "$line"
  line="|---|"; for _ in "${PRESETS[@]}"; do line+="---|"; done; echo "$line"
  for entry in "${STRATEGIES[@]}"; do
    name=${entry%%|*}; line="| $name |"
    for preset in "${PRESETS[@]}"; do line+=" ${CELL[$preset/$name]} |"; done
    echo "$line"
  done
}

assertions() {
  local entry name
  for entry in "${STRATEGIES[@]}"; do
    name=${entry%%|*}
    [ "${CELL[hardened/$name]}" = blocked ] && ok "hardened blocks $name" || bad "hardened" "$name evaded it"
    case $name in split-*|http-split)
      [ "${CELL[naive/$name]}" = evaded ] && ok "naive is evaded by $name" || bad "naive" "$name was blocked";;
    esac
  done
}

cell() { # preset strategy: one cell, captured
  local preset=$1 want=$2 entry name proto args code rc pcap
  for entry in "${STRATEGIES[@]}"; do
    IFS='|' read -r name proto args <<<"$entry"
    [ "$name" = "$want" ] && break
  done
  [ "$name" = "$want" ] || { echo "unknown strategy $want" >&2; return 2; }
  bridge "$preset"
  pcap="$LAB/$preset-$name.pcapng"; rm -f "$pcap"
  start dumpcap $K 60 dumpcap -q -i e1 -w "$pcap"
  sleep 1
  # shellcheck disable=SC2086
  proxy $args
  for n in allowed.example blocked.example; do
    read -r code rc < <(fetch "${proto/tls/https}" $n 127.0.0.1:1080)
    echo "$preset $name $n: HTTP $code, curl exit $rc"
  done
  sleep 1; stop dumpcap; stop byedpi
  cp "$LAB/policy.yaml" "$LAB/$preset.yaml"
  echo "capture: $pcap (replay: chokepoint replay --policy $LAB/$preset.yaml $pcap --events -)"
}

case "${1:-}" in
  down) down;;
  cell)
    trap down EXIT
    topology; build_byedpi; start_servers
    cell "${2:?preset}" "${3:?strategy}"
    ;;
  test)
    trap down EXIT
    topology
    build_byedpi
    start_servers
    matrix
    print_matrix
    assertions
    echo "evasion: $PASS passed, $FAIL failed"
    [ $FAIL = 0 ]
    ;;
  *) echo "usage: $0 test | down" >&2; exit 2;;
esac
