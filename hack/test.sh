#!/usr/bin/env bash
# Install what is missing, then run every check and test berth has:
# rustfmt, clippy, unit tests, and the root integration tests that drive a
# real berthd over its CRI socket against a local registry on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(busybox-static docker-registry skopeo protobuf-compiler containernetworking-plugins iptables openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
