#!/usr/bin/env bash
# The dashboard lab: every query of deploy/grafana/chokepoint.json, asked of
# a real Prometheus (Debian's `prometheus`) that scrapes a real bridge.
#
#   client ns (cpmet-client)       censor ns (cpmet-censor)               server ns (cpmet-server)
#   c0 198.18.28.1/24 ── veth ── c1 [chokepoint run] s1 ── veth ──     s0 198.18.28.2/24
#                                 metrics 127.0.0.1:9900
#                                 prometheus 127.0.0.1:9090 (scrapes it every 1 s)
#
#   tests/lab/grafana.sh test     up, traffic (allowed and blocked TLS, a
#                                 blocked DNS name, HTTP), a reload that
#                                 reorders the rules, every panel's every
#                                 query through /api/v1/query, the live
#                                 EVE events file, down
#   tests/lab/grafana.sh down     tear everything down
#
# A query passes when Prometheus answers `success` with a non-empty result.
# `$__rate_interval`, `$__interval` and `$__range` become 30s, `$instance`
# becomes `.*` (the dashboard's "All"). Needs root (ip netns), iproute2,
# ethtool, curl, openssl, dnsutils, python3, prometheus. Only the addresses
# above are used; every server runs under a timeout and is stopped by its
# recorded PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${LAB_DIR:-/tmp/chokepoint-grafana}
CP=${CHOKEPOINT:-target/debug/chokepoint}
DASHBOARD=deploy/grafana/chokepoint.json
C=cpmet-client; K=cpmet-censor; S=cpmet-server
PASS=0; FAIL=0

. tests/lab/lib.sh

policy() { # the rules, in the order given (a reload that reorders them)
  {
    echo "version: 1"
    echo "lists:"
    echo "  tls-names: {format: domains, entries: [blocked.example]}"
    echo "  dns-names: {format: domains, entries: [blocked-dns.example]}"
    echo "rules:"
    for r in "$@"; do
      case $r in
        reset) echo "  - {name: reset-sni, match: {list: tls-names, on: [tls_sni]}, action: reset}";;
        dns) echo "  - {name: nxdomain, match: {list: dns-names, on: [dns_qname]}, action: {dns: {answer: nxdomain}}}";;
      esac
    done
  } > "$LAB/policy.yaml.tmp"
  mv "$LAB/policy.yaml.tmp" "$LAB/policy.yaml"
}

up() {
  down
  mkdir -p "$LAB"
  rm -rf "$LAB/tsdb" "$LAB/events.jsonl"
  link_three
  nsx $C ip addr add 198.18.28.1/24 dev c0
  nsx $S ip addr add 198.18.28.2/24 dev s0
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$LAB/key.pem" -out "$LAB/cert.pem" -days 2 -subj "/CN=lab.example" >/dev/null 2>&1
  echo hello > "$LAB/index.html"
  start tls $S 300 openssl s_server -accept 198.18.28.2:443 -cert "$LAB/cert.pem" -key "$LAB/key.pem" -www -quiet
  start http $S 300 python3 -m http.server 80 --bind 198.18.28.2 --directory "$LAB"
  policy reset dns
  start chokepoint $K 300 "$CP" run --inside c1 --outside s1 --policy "$LAB/policy.yaml" \
    --events "$LAB/events.jsonl" --events-format eve --metrics 127.0.0.1:9900 --workers 2
  wait_for 50 nsx $C timeout 1 bash -c '</dev/tcp/198.18.28.2/80' \
    || { echo "grafana: bridge did not come up"; cat "$LAB/chokepoint.log"; return 1; }
  cat > "$LAB/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: chokepoint
    static_configs: [{targets: ["127.0.0.1:9900"]}]
EOF
  start prometheus $K 300 prometheus --config.file="$LAB/prometheus.yml" --storage.tsdb.path="$LAB/tsdb" \
    --web.listen-address=127.0.0.1:9090 --log.level=warn
  # Up when Prometheus answers and its target is scraped.
  wait_for 100 scraped \
    || { echo "grafana: prometheus never scraped the bridge"; tail -20 "$LAB/prometheus.log"; return 1; }
}

scraped() { nsx $K curl -sf -m 2 'http://127.0.0.1:9090/api/v1/query?query=up' | grep -q '"value":\[[0-9.]*,"1"\]'; }

traffic() {
  local i
  for i in 1 2 3; do
    nsx $C curl -sk -m 5 -o /dev/null --resolve allowed.example:443:198.18.28.2 https://allowed.example/ || true
    nsx $C curl -sk -m 5 -o /dev/null --resolve blocked.example:443:198.18.28.2 https://blocked.example/ || true
    nsx $C curl -s -m 5 -o /dev/null http://198.18.28.2/index.html || true
    nsx $C dig +time=1 +tries=1 @198.18.28.2 blocked-dns.example A > /dev/null || true
  done
}

check() {
  local rc n
  traffic
  rc=0; nsx $C curl -sk -m 5 --resolve blocked.example:443:198.18.28.2 https://blocked.example/ >/dev/null 2>&1 || rc=$?
  { [ $rc = 35 ] || [ $rc = 56 ]; } && ok "the bridge resets the blocked name (curl exit $rc)" || bad "reset" "curl exit $rc"
  # A reload that reorders the rules: counts stay on their rule.
  n=$(nsx $K curl -s -m 2 http://127.0.0.1:9900/metrics | awk '$1 ~ /^chokepoint_decisions_total\{.*rule="reset-sni"/ { s += $2 } END { print s + 0 }')
  policy dns reset
  wait_for 50 reloaded || bad "reload" "no reload counted"
  local after
  after=$(nsx $K curl -s -m 2 http://127.0.0.1:9900/metrics | awk '$1 ~ /^chokepoint_decisions_total\{.*rule="reset-sni"/ { s += $2 } END { print s + 0 }')
  [ "$n" -ge 1 ] && [ "$after" = "$n" ] && ok "a reload that reorders rules leaves reset-sni's $n decisions on it" \
    || bad "decisions by rule name" "reset-sni: $n before the reload, $after after"
  traffic
  # Prometheus needs two scrapes in the window for rate(): give it a few.
  sleep 4
  nsx $K python3 - "$DASHBOARD" <<'EOF' > "$LAB/queries.txt" 2>&1 || true
import json, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
passed = failed = 0
for p in panels(dash["panels"]):
    for t in p.get("targets", []):
        expr = t["expr"]
        q = expr
        for var in ("$__rate_interval", "$__interval", "$__range"):
            q = q.replace(var, "30s")
        q = q.replace("$instance", ".*")
        url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            r = json.load(urllib.request.urlopen(url, timeout=5))
        except Exception as e:
            r = {"status": "error", "error": str(e)}
        result = r.get("data", {}).get("result", [])
        if r.get("status") == "success" and result:
            passed += 1
            print(f"PASS  {p['title']} {t['refId']}: {len(result)} series")
        else:
            failed += 1
            print(f"FAIL  {p['title']} {t['refId']}: {q}: {r.get('status')} {r.get('error', '')} {result}")
print(f"grafana: {passed} queries returned data, {failed} failed")
EOF
  cat "$LAB/queries.txt"
  grep -q ', 0 failed$' "$LAB/queries.txt" && ok "every dashboard query returned data" || bad "dashboard queries" "see above"
  # The live events, in Suricata's EVE format: every line an EVE event of
  # the live bridge, naming the interface it came in on.
  if nsx $K python3 - "$LAB/events.jsonl" <<'EOF' > "$LAB/eve.txt" 2>&1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines, "no events"
ifaces, types, names = set(), set(), set()
for e in lines:
    for k in ("timestamp", "flow_id", "event_type", "src_ip", "dest_ip", "proto", "community_id", "in_iface", "chokepoint"):
        assert k in e, f"{k} missing: {e}"
    assert e["community_id"].startswith("1:"), e
    ifaces.add(e["in_iface"]); types.add(e["event_type"]); names.add(e["chokepoint"].get("name"))
assert ifaces <= {"c1", "s1"} and "c1" in ifaces, ifaces
assert "blocked.example" in names, names
print(f"{len(lines)} EVE events, event types {sorted(types)}, interfaces {sorted(ifaces)}")
EOF
  then ok "live EVE events: $(cat "$LAB/eve.txt")"; else bad "live EVE events" "$(tail -3 "$LAB/eve.txt")"; fi
  # The scrape Prometheus took (OpenMetrics) and the text promtool reads.
  nsx $K curl -s -m 2 http://127.0.0.1:9900/metrics > "$LAB/metrics.txt"
  promtool check metrics < "$LAB/metrics.txt" > "$LAB/promtool.txt" 2>&1 \
    && ok "promtool check metrics" || bad "promtool" "$(head -5 "$LAB/promtool.txt")"
  echo "grafana lab: $PASS passed, $FAIL failed"
  [ $FAIL = 0 ]
}

reloaded() { nsx $K curl -s -m 2 http://127.0.0.1:9900/metrics | grep -qE '^chokepoint_reloads_total\{result="ok"\} [1-9]'; }

case "${1:-}" in
  down) down;;
  test)
    trap down EXIT
    up
    check
    ;;
  *) echo "usage: $0 test | down" >&2; exit 2;;
esac
