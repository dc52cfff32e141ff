#!/usr/bin/env bash
# Run every berth test: installs what is missing, then formatting, lints,
# build, the pinned Kubernetes tools (hack/tools.sh: crictl, critest), the
# programs of critest's stand-in images (hack/standins.sh), unit tests and
# the root integration tests (tests/), which start their own registries and
# berthd instances on 127.0.0.1 and private dirs — among them the real
# critest, every spec, against a berthd (tests/tests/critest.rs).
#
#   hack/test.sh                  everything
#   hack/test.sh -p berth-tests   extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

marker=$(mktemp -t berth-test-run.XXXXXX)
report_leftovers() {
    local status=$?
    # The tests remove what they create; say so loudly if one did not.
    local left
    left=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -newer "$marker" \
        \( -name 'berth-test-*' -o -name 'berth-registry-*' -o -name 'berth-token-*' \) 2>/dev/null || true)
    if [ -n "$left" ]; then
        echo "!! temp dirs left behind by the tests:" >&2
        echo "$left" >&2
    fi
    rm -f "$marker"
    exit "$status"
}
trap report_leftovers EXIT

berth_install_packages
berth_install_rust_components
berth_install_python_packages
# Rust builds are cached outside the checkout, so a fresh clone (CI) reuses
# the dependencies built by the last run on this machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/berth/target}"
mkdir -p "$CARGO_TARGET_DIR"

if [ "$(id -u)" -ne 0 ]; then
    echo "!! not root: integration tests will skip themselves (run as root for the full suite)" >&2
fi

echo ">> cargo fmt --check"
cargo fmt --all --check
echo ">> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo ">> cargo build"
cargo build --workspace
# The real crictl and critest (pinned in hack/tools/go.mod, cached outside
# the checkout): tests that drive berthd with them find them through
# BERTH_TOOLS_BIN and skip with a note without it.
# The streaming and crictl tests are how berth meets its real clients: a
# failed tools build fails the run rather than skipping them.
if [ -z "${BERTH_TOOLS_BIN:-}" ]; then
    echo ">> hack/tools.sh (crictl, critest)"
    BERTH_TOOLS_BIN=$(hack/tools.sh)
    export BERTH_TOOLS_BIN
fi
# The programs berth's stand-ins for critest's images are made of (BusyBox
# from Debian's source package, small static helpers; cached outside the
# checkout): tests/tests/critest.rs finds them through BERTH_STANDINS.
if [ -z "${BERTH_STANDINS:-}" ]; then
    echo ">> hack/standins.sh (programs of critest's stand-in images)"
    BERTH_STANDINS=$(hack/standins.sh)
    export BERTH_STANDINS
fi
echo ">> cargo test"
cargo test --workspace --no-fail-fast "$@"
# The monitor ships as a static no-libc executable built only in release
# (own _start, panic=abort; runtime/monitor/build.rs): run the engine's
# monitor and lifecycle tests once more with that binary.
echo ">> monitor tests with the static release berth-monitor"
cargo build --release -p berth-monitor
BERTH_MONITOR_BINARY="${CARGO_TARGET_DIR:-$PWD/target}/release/berth-monitor" \
    cargo test -p berth-runtime --test monitor --test monitor_death --test lifecycle --test engine_ops --test terminal
