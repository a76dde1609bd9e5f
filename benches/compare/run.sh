#!/usr/bin/env bash
# Side-by-side with nDPI 4.2: the same capture and the same domain list
# through `ndpiReader` (Debian libndpi-bin) and `chokepoint replay`, as whole
# processes. Prints both throughputs, the ratio, and whether they flagged the
# same flows, with every disagreement listed and classified.
#
#   benches/compare/run.sh                 # lists of 1k, 100k and 1M domains, ~1M packets
#   SIZES="1000" FLOWS=5000 benches/compare/run.sh
#   WORKERS=1 benches/compare/run.sh       # replay's workers (default: every core)
#   BEFORE=/path/to/older/chokepoint benches/compare/run.sh   # that build's replay too
#
# Installs libndpi-bin and python3 when missing (as root on Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/compare}
SIZES=${SIZES:-"1000 100000 1000000"}
FLOWS=${FLOWS:-60000}
WORKERS=${WORKERS:-}
mkdir -p "$OUT"

need=()
command -v ndpiReader >/dev/null 2>&1 || need+=(libndpi-bin)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "need ${need[*]}: run as root or install them" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
ndpi_version=$(dpkg-query -W -f='${Version}' libndpi-bin 2>/dev/null || echo unknown)

cargo build --release -q -p chokepoint-cli
CP=target/release/chokepoint
MAX=$(echo $SIZES | tr ' ' '\n' | sort -n | tail -1)
# REUSE=1 keeps the list and capture of an earlier run with the same settings.
if [ "${REUSE:-0}" != 1 ] || [ ! -s "$OUT/capture.pcap" ]; then
  $CP gen --domains "$MAX" -o "$OUT/domains-all.txt" >/dev/null
  SMALLEST=$(echo $SIZES | tr ' ' '\n' | sort -n | head -1)
  head -n "$SMALLEST" "$OUT/domains-all.txt" > "$OUT/names-in-capture.txt"
  # One capture for every list size: its listed names come from the smallest
  # list, which is a prefix of every larger one. 2% of names are near misses
  # (`x` + a listed name), nDPI 4.2's classic false positive.
  $CP gen --flows "$FLOWS" --names "$OUT/names-in-capture.txt" --listed-share 0.1 --near-miss-share 0.02 \
    --data-packets 16 --seed 42 -o "$OUT/capture.pcap" >/dev/null
fi

now() { date +%s.%N; }
workers_arg=()
[ -n "$WORKERS" ] && workers_arg=(--workers "$WORKERS")
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); replay workers: ${WORKERS:-every core}"

printf "%-9s %-10s %10s %12s %12s %8s %10s %10s %s\n" list tool seconds packets packets/s ratio flagged agree notes
for N in $SIZES; do
  head -n "$N" "$OUT/domains-all.txt" > "$OUT/list-$N.txt"
  awk '{print "host:\"" $1 "\"@Blocked"}' "$OUT/list-$N.txt" > "$OUT/list-$N.protos"
  printf 'version: 1\nlists:\n  l: {format: domains, path: list-%s.txt}\nrules:\n  - {name: blocked, match: {list: l}, action: drop}\n' "$N" > "$OUT/policy-$N.yaml"

  t0=$(now)
  /usr/bin/time -f "%e %U %S" -o "$OUT/time-ndpi-$N" ndpiReader -i "$OUT/capture.pcap" -p "$OUT/list-$N.protos" -v 2 > "$OUT/ndpi-$N.txt" 2>&1
  t1=$(now)
  /usr/bin/time -f "%e %U %S" -o "$OUT/time-chokepoint-$N" $CP replay "$OUT/capture.pcap" --policy "$OUT/policy-$N.yaml" --events "$OUT/chokepoint-$N.jsonl" "${workers_arg[@]}" > "$OUT/chokepoint-$N.txt"
  t2=$(now)
  if [ -n "${BEFORE:-}" ]; then
    tb=$(now)
    /usr/bin/time -f "%e %U %S" -o "$OUT/time-before-$N" "$BEFORE" replay "$OUT/capture.pcap" --policy "$OUT/policy-$N.yaml" --events "$OUT/before-$N.jsonl" > "$OUT/before-$N.txt"
    te=$(now)
    cmp -s "$OUT/before-$N.jsonl" "$OUT/chokepoint-$N.jsonl" && same=identical || same=DIFFERENT
    printf "%-9s %-10s %10.2f   (the older build; CPU %s s; events %s)\n" "$N" before "$(awk -v a="$tb" -v b="$te" 'BEGIN { print b - a }')" \
      "$(awk '{ print $2 + $3 }' "$OUT/time-before-$N")" "$same"
  fi
  python3 - "$OUT" "$N" "$t0" "$t1" "$t2" <<'PY'
import json, re, sys
out, n, t0, t1, t2 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
packets = int(re.search(r"packets\s+(\d+)", open(f"{out}/chokepoint-{n}.txt").read()).group(1))
listed = set(open(f"{out}/list-{n}.txt").read().split())
def key(a, pa, b, pb, proto):
    x, y = (a, int(pa)), (b, int(pb))
    return (proto,) + (x + y if x <= y else y + x)
ndpi = {}
flow = re.compile(r"^\s+\d+\s+(TCP|UDP)\s+(\[[^\]]+\]|[\d.]+):(\d+)\s+<?->\s+(\[[^\]]+\]|[\d.]+):(\d+)\s+\[proto: ([^\]]*)\]")
sni = re.compile(r"\[Hostname/SNI: ([^\]]*)\]")
seen_by_ndpi = {}
for l in open(f"{out}/ndpi-{n}.txt"):
    m = flow.match(l)
    if m:
        proto, a, pa, b, pb, p = m.groups()
        s = sni.search(l)
        k = key(a.strip("[]"), pa, b.strip("[]"), pb, proto)
        seen_by_ndpi[k] = s.group(1) if s else None
        if p.endswith("Blocked"):
            ndpi[k] = s.group(1) if s else ""
ours = {}
for l in open(f"{out}/chokepoint-{n}.jsonl"):
    e = json.loads(l)
    if e["verdict"] != "pass":
        ours[key(e["src"], e["sport"], e["dst"], e["dport"], e["proto"].upper())] = e["name"]
both = set(ndpi) & set(ours)
only_ndpi = sorted(set(ndpi) - set(ours))
only_ours = sorted(set(ours) - set(ndpi))
tn, tc = t1 - t0, t2 - t1
pn, pc = packets / tn, packets / tc
def cpu(tool):
    w, u, s = map(float, open(f"{out}/time-{tool}-{n}").read().split()[-3:])
    return u + s
cn, cc = cpu("ndpi"), cpu("chokepoint")
print(f"{n:<9} {'ndpiReader':<10} {tn:10.2f} {packets:12d} {pn:12.0f} {'':>8} {len(ndpi):10d} {'':>10} CPU {cn:.2f} s")
print(f"{n:<9} {'chokepoint':<10} {tc:10.2f} {packets:12d} {pc:12.0f} {pc/pn:7.1f}x {len(ours):10d} {len(both):10d} CPU {cc:.2f} s ({cn/cc:.1f}x less)")
def why(name, k=None):
    if name[:1] == "x" and name[1:] in listed:
        return "near miss `x` + a listed name: nDPI 4.2 matches host patterns as substrings, not at label boundaries"
    if k is not None and k[0] == "UDP" and seen_by_ndpi.get(k, "") is None:
        return "nDPI saw no SNI: 4.2 reassembles QUIC CRYPTO data only in order, and this hello came over two Initials, second half first"
    if name in listed:
        return "listed name: unexplained"
    return "unexplained"
reasons_n = {}
for k in only_ndpi:
    reasons_n.setdefault(why(ndpi[k]), []).append(k)
for r, ks in reasons_n.items():
    print(f"    only nDPI:       {len(ks)} flows: {r} (e.g. {ks[0]} {ndpi[ks[0]]!r})")
reasons = {}
for k in only_ours:
    reasons.setdefault(why(ours[k], k), []).append(k)
for r, ks in reasons.items():
    print(f"    only chokepoint: {len(ks)} flows: {r} (e.g. {ks[0]} {ours[ks[0]]!r})")
with open(f"{out}/summary-{n}.json", "w") as f:
    json.dump({"list": int(n), "packets": packets, "ndpi_seconds": tn, "chokepoint_seconds": tc,
               "ndpi_cpu_seconds": cn, "chokepoint_cpu_seconds": cc,
               "ndpi_pps": pn, "chokepoint_pps": pc, "ratio": pc / pn, "ndpi_flagged": len(ndpi),
               "chokepoint_flagged": len(ours), "agree": len(both), "only_ndpi": len(only_ndpi),
               "only_chokepoint": len(only_ours),
               "unexplained": sum(1 for k in only_ndpi if "unexplained" in why(ndpi[k])) + sum(1 for k in only_ours if "unexplained" in why(ours[k], k))}, f)
PY
done
echo "ndpiReader $ndpi_version; capture $OUT/capture.pcap ($FLOWS flows); details in $OUT/"
