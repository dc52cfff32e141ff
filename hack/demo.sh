#!/usr/bin/env bash
# The main job, end to end: install what is missing, build, start a local
# registry on 127.0.0.1 with the test images, start berthd, pull
# 127.0.0.1:PORT/berth/busybox:latest over CRI with berthctl, list it, then
# stop everything and clean up.
#
# berthd uses the default dirs (/var/lib/berth, /run/berth) when they are
# free and we are root; otherwise a private temp root/state.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

work=$(mktemp -d -t berth-demo.XXXXXX)
registry_pid=""
berthd_pid=""
image=""
sock=""
created_dirs=()

stop_pid() { # pid name
    local pid=$1 name=$2 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "!! $name did not stop on SIGTERM, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    set +e
    if [ -n "$berthd_pid" ] && [ -n "$image" ] && kill -0 "$berthd_pid" 2>/dev/null; then
        target/debug/berthctl --endpoint "unix://$sock" rmi "$image" >/dev/null 2>&1
    fi
    stop_pid "$berthd_pid" berthd
    stop_pid "$registry_pid" registry
    rm -rf "$work"
    # Default dirs this demo created (and nothing else) go too.
    local d
    for d in "${created_dirs[@]}"; do
        rm -rf "$d"
    done
    if [ "$status" -ne 0 ]; then
        echo "!! demo failed (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

berth_install_packages
echo ">> building"
cargo build -p berth-cri-server -p berth-hack

echo ">> starting a registry on 127.0.0.1 with the test images"
target/debug/berth-hack serve-images --images "$work/images" --port-file "$work/port" \
    --only berth/busybox:latest >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 600); do
    [ -s "$work/port" ] && break
    if ! kill -0 "$registry_pid" 2>/dev/null; then
        cat "$work/registry.log" >&2
        exit 1
    fi
    sleep 0.1
done
[ -s "$work/port" ] || { echo "registry did not come up" >&2; cat "$work/registry.log" >&2; exit 1; }
port=$(cat "$work/port")
image="127.0.0.1:$port/berth/busybox:latest"

args=()
if [ "$(id -u)" -eq 0 ] && [ ! -e /run/berth/berth.sock ] && [ ! -e /var/lib/berth/metadata.redb ]; then
    sock=/run/berth/berth.sock
    for d in /var/lib/berth /run/berth; do
        [ -e "$d" ] || created_dirs+=("$d")
    done
    echo ">> starting berthd with the default dirs (/var/lib/berth, /run/berth)"
else
    sock="$work/state/berth.sock"
    : >"$work/berth.toml"
    args=(--config "$work/berth.toml" --root "$work/root" --state "$work/state" --socket "$sock")
    echo ">> default dirs in use (or not root): starting berthd on $work"
fi
target/debug/berthd "${args[@]}" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 300); do
    [ -S "$sock" ] && break
    if ! kill -0 "$berthd_pid" 2>/dev/null; then
        cat "$work/berthd.log" >&2
        exit 1
    fi
    sleep 0.1
done
[ -S "$sock" ] || { echo "berthd did not create $sock" >&2; cat "$work/berthd.log" >&2; exit 1; }

ctl() { target/debug/berthctl --endpoint "unix://$sock" "$@"; }
echo ">> berthctl version"
ctl version
echo ">> berthctl pull $image"
ctl pull "$image"
echo ">> berthctl images"
ctl images
echo ">> done; stopping berthd and the registry"
