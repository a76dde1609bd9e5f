#!/usr/bin/env bash
# The protocol lab: real VPN, proxy, call and SSH clients across the live
# bridge, each classified and passed under a policy of `log` rules, then
# blocked by its rule; HTTPS, DNS and HTTP pass both times and are never
# classified; then two-stage blocking (`learn`) live.
#
#   P-client                    P-censor                        P-server
#   c0 198.18.12.1/24 ─ c1 [chokepoint run] s1 ─ s0 198.18.12.2/24
#   tunnels inside: WireGuard 198.18.13.1 ↔ .2, OpenVPN UDP .5 ↔ .6, TCP .9 ↔ .10, UDP with --tls-auth .13 ↔ .14
#
#   tests/lab/protocols.sh test    up, the three phases, down (what the test suite runs)
#   tests/lab/protocols.sh up      topology, keys, servers (no bridge)
#   tests/lab/protocols.sh down    tear everything down
#
# Clients and servers (Debian packages): wireguard-go + wireguard-tools,
# openvpn (UDP and TCP, p2p TLS with --tls-crypt; UDP with --tls-auth), shadowsocks-libev
# (ss-local/ss-server), coturn (turnserver, turnutils_stunclient,
# turnutils_uclient, turnutils_peer), openssh (ssh, sshd); curl, dig,
# dnsmasq, python3, openssl. WireGuard runs in user space (wireguard-go):
# the kernel module is not needed. OpenVPN and wireguard-go need
# /dev/net/tun.
#
# Output: `PASS`/`FAIL` lines and `protocols: N passed, M failed`.
# Needs root. Only the namespaces it creates (prefix $PR_PREFIX, default
# cp12), only 198.18.12.0/24 and 198.18.13.0/24; every process runs under
# `timeout` and is stopped by the PID recorded; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${LAB_DIR:-/tmp/chokepoint-protocols}
CP=${CHOKEPOINT:-target/debug/chokepoint}
P=${PR_PREFIX:-cp12}
case $P in cp12*) ;; *) echo "PR_PREFIX must start with cp12" >&2; exit 2;; esac
C=$P-client; K=$P-censor; S=$P-server
CLIENT=198.18.12.1; SERVER=198.18.12.2
PASS=0; FAIL=0

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ok() { echo "PASS  $1"; PASS=$((PASS+1)); }
bad() { echo "FAIL  $1: $2"; FAIL=$((FAIL+1)); }

start() { # name ns timeout cmd...: in the background under a timeout, PID recorded
  local name=$1 ns=$2 t=$3; shift 3
  ip netns exec "$ns" timeout "$t" "$@" > "$LAB/$name.log" 2>&1 &
  echo $! > "$LAB/$name.pid"
}

stop() { # name: stop what `start` started under that name, by its PID
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
  for ns in $C $K $S; do ip netns del "$ns" 2>/dev/null || true; done
}

wait_for() { # tries command...: run until it succeeds, at most `tries` × 0.2 s
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

topology() {
  down
  mkdir -p "$LAB"
  for ns in $C $K $S; do ip netns add "$ns"; nsx "$ns" ip link set lo up; done
  ip link add c0 netns $C type veth peer name c1 netns $K
  ip link add s0 netns $S type veth peer name s1 netns $K
  nsx $C ip addr add $CLIENT/24 dev c0
  nsx $S ip addr add $SERVER/24 dev s0
  for x in "$C c0" "$K c1" "$K s1" "$S s0"; do
    set -- $x
    nsx "$1" ip link set "$2" up
    # Whole frames through the bridge: no offloads.
    nsx "$1" ethtool -K "$2" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  done
}

keys() {
  local n
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$LAB/ca.key" \
    -out "$LAB/ca.crt" -days 2 -subj /CN=lab-ca >/dev/null 2>&1
  for n in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$LAB/$n.key" \
      -out "$LAB/$n.csr" -subj "/CN=$n" >/dev/null 2>&1
    echo "extendedKeyUsage=$([ $n = server ] && echo serverAuth || echo clientAuth)" > "$LAB/$n.ext"
    openssl x509 -req -in "$LAB/$n.csr" -CA "$LAB/ca.crt" -CAkey "$LAB/ca.key" -CAcreateserial \
      -out "$LAB/$n.crt" -days 2 -extfile "$LAB/$n.ext" >/dev/null 2>&1
  done
  openvpn --genkey secret "$LAB/ta.key" >/dev/null 2>&1
  (umask 077; wg genkey > "$LAB/wg-server.key"; wg genkey > "$LAB/wg-client.key")
  wg pubkey < "$LAB/wg-server.key" > "$LAB/wg-server.pub"
  wg pubkey < "$LAB/wg-client.key" > "$LAB/wg-client.pub"
  ssh-keygen -q -t ed25519 -N '' -f "$LAB/ssh-host" <<<y >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$LAB/ssh-user" <<<y >/dev/null
  cp "$LAB/ssh-user.pub" "$LAB/authorized_keys"
}

servers() {
  mkdir -p "$LAB/www"; echo ok > "$LAB/www/index.html"
  start http $S 600 python3 -m http.server 80 --bind $SERVER --directory "$LAB/www"
  # The tunnels' far ends: one server on every tunnel address.
  start tunnel-http $S 600 python3 -m http.server 8080 --bind 0.0.0.0 --directory "$LAB/www"
  start https $S 600 python3 -c 'import http.server, ssl, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = http.server.ThreadingHTTPServer((sys.argv[3], 443), lambda *a: H(*a, directory=sys.argv[4]))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()' "$LAB/server.crt" "$LAB/server.key" $SERVER "$LAB/www"
  start dns $S 600 dnsmasq --no-daemon --keep-in-foreground --port 53 --listen-address $SERVER \
    --bind-interfaces --no-resolv --no-hosts --address=/allowed.example/$SERVER --pid-file=
  start ss-server $S 600 ss-server -s $SERVER -p 8388 -k lab-secret -m chacha20-ietf-poly1305
  start ss-local $C 600 ss-local -s $SERVER -p 8388 -l 1080 -b 127.0.0.1 -k lab-secret -m chacha20-ietf-poly1305
  start turnserver $S 600 turnserver -n -L $SERVER --listening-port 3478 -E $SERVER --relay-ip $SERVER \
    --min-port 49160 --max-port 49200 --no-tls --no-dtls --lt-cred-mech --user lab:secret \
    --realm lab.example --no-cli --userdb "$LAB/turndb" --log-file stdout
  start turn-peer $S 600 turnutils_peer -L $SERVER -p 3480
  cat > "$LAB/sshd_config" <<EOF
ListenAddress $SERVER:22
HostKey $LAB/ssh-host
AuthorizedKeysFile $LAB/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
EOF
  # sshd's privilege separation directory; systemd makes it on a booted box.
  [ -d /run/sshd ] || mkdir -p /run/sshd
  start sshd $S 600 /usr/sbin/sshd -D -e -f "$LAB/sshd_config"
  wireguard
  wait_for 50 nsx $S bash -c "</dev/tcp/$SERVER/80" && wait_for 50 nsx $S bash -c "</dev/tcp/$SERVER/22" \
    || { echo "protocols: servers did not come up"; tail -3 "$LAB"/*.log; return 1; }
}

# wireguard-go on both ends (user space: no kernel module needed); the
# client's peer is configured per check, so each check starts with a
# fresh handshake.
wireguard() {
  start wg-server $S 600 env WG_PROCESS_FOREGROUND=1 wireguard-go wg12s
  start wg-client $C 600 env WG_PROCESS_FOREGROUND=1 wireguard-go wg12c
  wait_for 25 nsx $S ip link show wg12s && wait_for 25 nsx $C ip link show wg12c
  nsx $S wg set wg12s listen-port 51820 private-key "$LAB/wg-server.key" \
    peer "$(cat "$LAB/wg-client.pub")" allowed-ips 198.18.13.1/32
  nsx $S ip addr add 198.18.13.2/30 dev wg12s; nsx $S ip link set wg12s up
  nsx $C wg set wg12c private-key "$LAB/wg-client.key"
  nsx $C ip addr add 198.18.13.1/30 dev wg12c; nsx $C ip link set wg12c up
}

wg_fresh_peer() { # (re)configure the client's peer: its next packet is a handshake
  nsx $C wg set wg12c peer "$(cat "$LAB/wg-server.pub")" remove 2>/dev/null || true
  nsx $C wg set wg12c peer "$(cat "$LAB/wg-server.pub")" allowed-ips 198.18.13.2/32 endpoint $SERVER:51820
}

bridge() { # policy-file: (re)start the bridge with that policy
  stop chokepoint
  rm -f "$LAB/events.jsonl"
  start chokepoint $K 600 "$CP" run --inside c1 --outside s1 --policy "$1" --events "$LAB/events.jsonl" \
    --metrics 127.0.0.1:9912
  wait_for 50 nsx $C bash -c "</dev/tcp/$SERVER/80" \
    || { echo "protocols: bridge did not come up"; cat "$LAB/chokepoint.log"; return 1; }
}

# Did the bridge report PROTOCOL for a flow to PORT (the deciding packet's
# destination)?
# (The bridge's events writer flushes every 200 ms: an event is given up
# to a second to come.)
classified() {
  local i
  for i in 1 2 3 4 5; do
    grep -F "\"protocol\":\"$1\"" "$LAB/events.jsonl" 2>/dev/null | grep -qF "\"dport\":$2" && return 0
    sleep 0.2
  done
  return 1
}

# Each client, once: 0 when it got through. Each is bounded in time.
try_wireguard() {
  wg_fresh_peer
  nsx $C curl -s -m 4 -o /dev/null -w '%{http_code}' http://198.18.13.2:8080/ | grep -q 200
}

try_openvpn() { # udp|tcp port local remote [tls-crypt|tls-auth]
  local proto=$1 port=$2 lo=$3 re=$4 wrap=${5:-tls-crypt} ps=$1 pc=$1 rc=1
  local name=ovpn-$1-$wrap dev=ov${port: -2}${proto:0:1}
  [ "$proto" = tcp ] && { ps=tcp-server; pc=tcp-client; }
  # --tls-auth takes a key direction (0 server, 1 client); --tls-crypt none.
  local ws=(--tls-crypt "$LAB/ta.key") wc=(--tls-crypt "$LAB/ta.key")
  [ "$wrap" = tls-auth ] && { ws=(--tls-auth "$LAB/ta.key" 0); wc=(--tls-auth "$LAB/ta.key" 1); }
  start "$name-s" $S 30 openvpn --tls-server --proto "$ps" --local $SERVER --lport "$port" --dev-type tun \
    --dev "${dev}s" --ifconfig "$re" "$lo" --ca "$LAB/ca.crt" --cert "$LAB/server.crt" \
    --key "$LAB/server.key" --dh none "${ws[@]}" --verb 3
  wait_for 25 grep -q "link local\|Listening for incoming TCP" "$LAB/$name-s.log" || true
  start "$name-c" $C 30 openvpn --tls-client --proto "$pc" --remote $SERVER "$port" --nobind --dev-type tun \
    --dev "${dev}c" --ifconfig "$lo" "$re" --ca "$LAB/ca.crt" --cert "$LAB/client.crt" \
    --key "$LAB/client.key" "${wc[@]}" --connect-retry 1 --verb 3
  if wait_for 30 grep -q "Initialization Sequence Completed" "$LAB/$name-c.log"; then
    nsx $C curl -s -m 3 -o /dev/null -w '%{http_code}' "http://$re:8080/" | grep -q 200 && rc=0
  fi
  stop "$name-c"; stop "$name-s"
  return $rc
}

try_shadowsocks() {
  nsx $C curl -s -m 3 -o /dev/null -w '%{http_code}' --socks5-hostname 127.0.0.1:1080 "http://$SERVER/" | grep -q 200
}

try_stun() { nsx $C timeout 4 turnutils_stunclient -p 3478 $SERVER 2>&1 | grep -q "reflexive addr"; }

try_turn() {
  nsx $C timeout 8 turnutils_uclient -u lab -w secret -n 5 -m 1 -l 100 -c -e $SERVER -r 3480 -p 3478 $SERVER \
    > "$LAB/uclient.log" 2>&1 && grep -q "Total lost packets 0 " "$LAB/uclient.log"
}

try_ssh() {
  nsx $C timeout 8 ssh -F none -i "$LAB/ssh-user" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=4 -o ServerAliveInterval=2 -o ServerAliveCountMax=2 \
    root@$SERVER echo ssh-ok 2>/dev/null | grep -q ssh-ok
}

# The clients, in parallel; RESULT[name] is 0 when it got through.
CLIENTS=(wireguard:wireguard:51820 openvpn-udp:openvpn:1194 openvpn-tcp:openvpn:1194
  openvpn-tls-auth:openvpn:1195 shadowsocks:fully_encrypted:8388 stun:stun:3478 turn:stun:3478 ssh:ssh:22)
declare -A RESULT
run_clients() {
  local entry name pids=() i=0
  for entry in "${CLIENTS[@]}"; do
    name=${entry%%:*}
    case $name in
      wireguard) try_wireguard;;
      openvpn-udp) try_openvpn udp 1194 198.18.13.5 198.18.13.6;;
      openvpn-tcp) try_openvpn tcp 1194 198.18.13.9 198.18.13.10;;
      # The control channel in the clear, an HMAC on each packet.
      openvpn-tls-auth) try_openvpn udp 1195 198.18.13.13 198.18.13.14 tls-auth;;
      # The GFW's exemptions let ~0.3% of random first packets go: two
      # connections, so that one lucky salt does not decide the check.
      shadowsocks) try_shadowsocks && try_shadowsocks;;
      stun) try_stun;;
      turn) try_turn;;
      ssh) try_ssh;;
    esac > "$LAB/result-$name" 2>&1 &
    pids[i]=$!; i=$((i+1))
  done
  i=0
  for entry in "${CLIENTS[@]}"; do
    name=${entry%%:*}
    if wait "${pids[i]}"; then RESULT[$name]=0; else RESULT[$name]=1; fi
    i=$((i+1))
  done
}

controls() { # phase: HTTPS, DNS and plain HTTP get through, and none is classified
  local out
  out=$(nsx $C curl -sk -m 4 -o /dev/null -w '%{http_code}' --resolve allowed.example:443:$SERVER https://allowed.example/ || true)
  [ "$out" = 200 ] && ok "$1: HTTPS with curl passes" || bad "$1: HTTPS" "got '$out'"
  out=$(nsx $C dig +short +time=2 +tries=1 @$SERVER allowed.example A || true)
  [ "$out" = $SERVER ] && ok "$1: DNS with dig passes" || bad "$1: DNS" "got '$out'"
  out=$(nsx $C curl -s -m 4 -o /dev/null -w '%{http_code}' http://$SERVER/ || true)
  [ "$out" = 200 ] && ok "$1: plain HTTP passes" || bad "$1: HTTP" "got '$out'"
  # Let the events writer flush (every 200 ms) before looking for none.
  sleep 0.5
  if grep -E '"dport":(443|53|80)[,}]' "$LAB/events.jsonl" 2>/dev/null | grep -q '"protocol"'; then
    bad "$1: controls" "classified: $(grep -E '"dport":(443|53|80)[,}]' "$LAB/events.jsonl" | grep '"protocol"' | head -2)"
  else
    ok "$1: HTTPS, DNS and HTTP are classified as no VPN"
  fi
}

policy_with() { # action: one rule per protocol the clients use, all with that action
  printf 'version: 1\nrules:\n'
  for p in wireguard openvpn fully_encrypted stun ssh; do
    printf '  - {name: %s, match: {protocols: [%s]}, action: %s}\n' "$p" "$p" "$1"
  done
}

phase_observe() {
  policy_with log > "$LAB/observe.yaml"
  bridge "$LAB/observe.yaml"
  run_clients
  local entry name proto port
  for entry in "${CLIENTS[@]}"; do
    IFS=: read -r name proto port <<<"$entry"
    if [ "${RESULT[$name]}" = 0 ] && classified "$proto" "$port"; then
      ok "observe: $name gets through, classified $proto"
    else
      bad "observe: $name" "client result ${RESULT[$name]}, classified $proto: $(classified "$proto" "$port" && echo yes || echo no); $(tail -2 "$LAB/result-$name" 2>/dev/null)"
    fi
  done
  controls observe
}

phase_block() {
  { policy_with drop | sed 's/name: ssh, \(.*\)action: drop/name: ssh, \1action: reset/'; } > "$LAB/block.yaml"
  bridge "$LAB/block.yaml"
  run_clients
  local entry name proto port
  for entry in "${CLIENTS[@]}"; do
    IFS=: read -r name proto port <<<"$entry"
    if [ "${RESULT[$name]}" != 0 ] && classified "$proto" "$port"; then
      ok "block: $name is blocked by its $proto rule"
    else
      bad "block: $name" "client result ${RESULT[$name]}, classified $proto: $(classified "$proto" "$port" && echo yes || echo no)"
    fi
  done
  controls block
}

metric() { nsx $K curl -s -m 3 http://127.0.0.1:9912/metrics | awk -v m="$1" '$1 == m { print $2 }'; }

# Two-stage blocking: the handshake passes and teaches the list; DELAY
# seconds later the server:port is dropped for everyone, the tunnel too.
DELAY=3
phase_learn() {
  cat > "$LAB/learn.yaml" <<EOF
version: 1
lists:
  vpn-servers: {format: dynamic}
rules:
  - {name: vpn-servers, match: {list: vpn-servers, on: [ip]}, action: drop}
  - name: detect-wireguard
    match: {protocols: [wireguard]}
    action: {learn: {list: vpn-servers, key: server_port, ttl: 120, delay: $DELAY}}
EOF
  bridge "$LAB/learn.yaml"
  local t0 plain
  t0=$(date +%s)
  try_wireguard && ok "learn: the WireGuard handshake passes and the tunnel works" \
    || bad "learn: tunnel" "no answer over the tunnel before the delay"
  plain() { nsx $C python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", int(sys.argv[2])))
s.sendto(b"plain", (sys.argv[1], 51820))' $SERVER "$1"; }
  plain 41000
  # Bounded: the delay plus a second.
  while [ $(( $(date +%s) - t0 )) -le $DELAY ]; do sleep 0.2; done
  plain 41001
  sleep 0.5
  if ! grep -F '"sport":41000' "$LAB/events.jsonl" | grep -qF '"verdict":"drop"' \
    && grep -F '"sport":41001' "$LAB/events.jsonl" | grep -F '"list":"vpn-servers"' | grep -qF '"verdict":"drop"'; then
    ok "learn: a plain UDP packet to the server's port passes before the delay, is dropped after it"
  else
    bad "learn: plain packet" "$(grep -E '"sport":4100[01]' "$LAB/events.jsonl" | head -3)"
  fi
  if nsx $C curl -s -m 3 -o /dev/null http://198.18.13.2:8080/; then
    bad "learn: tunnel after the delay" "still answers"
  else
    ok "learn: the tunnel itself is cut once the entry blocks"
  fi
  local learned blocked
  learned=$(metric 'chokepoint_learned_total{outcome="learned"}')
  blocked=$(metric 'chokepoint_learned_total{outcome="blocked"}')
  { [ "${learned:-0}" -ge 1 ] && [ "${blocked:-0}" -ge 2 ]; } \
    && ok "learn: metrics: ${learned} learnt, ${blocked} flows blocked by the list" \
    || bad "learn: metrics" "learned '${learned:-}', blocked '${blocked:-}'"
}

case "${1:-}" in
  up) topology; keys; servers;;
  down) down;;
  test)
    trap down EXIT
    topology
    keys
    servers
    phase_observe
    phase_block
    phase_learn
    echo "protocols: $PASS passed, $FAIL failed"
    [ $FAIL = 0 ]
    ;;
  *) echo "usage: $0 test|up|down" >&2; exit 2;;
esac
