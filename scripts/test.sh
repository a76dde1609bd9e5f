#!/usr/bin/env bash
# Run every test of chokepoint, as CI does, on a fresh Debian machine.
#
# 1. installs the Debian packages the tests need (when run as root);
# 2. checks formatting (cargo fmt --check);
# 3. lints (cargo clippy --workspace --all-targets -D warnings);
# 4. checks dependency licences and bans (cargo deny check licenses bans;
#    cargo-deny is installed with `cargo install --locked` when missing);
# 5. runs every test of the workspace.
#
# Test data: ../shared/testdata beside the checkout, or $CHOKEPOINT_TESTDATA.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses. Empty lines are fine.
PACKAGES=(
  ca-certificates
  make          # builds ByeDPI for the evasion lab (tests/lab/evasion.sh)
  gcc
  libc6-dev
  tshark        # the generator's oracle
  iproute2      # the namespace labs (tests/lab/*.sh, chokepoint lab)
  iputils-ping  # chokepoint lab test: the router decrements the TTL
  ethtool
  curl
  openssl
  dnsutils
  dnsmasq-base
  python3
  python3-venv  # the venv below (community-id and JSON Schema oracles)
  prometheus    # promtool check metrics; a real Prometheus for the dashboard lab (tests/lab/grafana.sh)
  wireguard-go  # the protocol lab (tests/lab/protocols.sh): real clients
  wireguard-tools
  openvpn
  shadowsocks-libev
  coturn
  openssh-server
  openssh-client
  nftables      # the nftables export loaded in a namespace (tests/lab/ops.sh nft)
  systemd       # systemd-analyze verify deploy/systemd/chokepoint.service
  logrotate     # logrotate --debug deploy/logrotate/chokepoint
  util-linux    # setpriv: the distribution lab runs the bridge as nobody with CAP_NET_RAW
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# PyPI packages the tests use as oracles, in a venv of their own:
# communityid (the reference Community ID) and jsonschema (the events' schemas).
if [ ! -x target/pyenv/bin/python ]; then
  mkdir -p target
  python3 -m venv target/pyenv
fi
target/pyenv/bin/pip install -q --disable-pip-version-check communityid==1.5.0 jsonschema==4.26.0

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo deny check licenses bans"
if ! cargo deny --version >/dev/null 2>&1; then
  echo "==> installing cargo-deny (cargo install --locked cargo-deny)"
  cargo install --locked cargo-deny
fi
cargo deny check licenses bans
echo "==> cargo test"
cargo test --workspace
