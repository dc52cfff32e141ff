#!/usr/bin/env bash
# The main job, end to end: install what is missing, build, start a local
# registry on 127.0.0.1 with the test images, start berthd with its defaults,
# pull berth/busybox, run a pod with a hostPort (host 127.0.0.1:PORT → pod
# :8080) and a container serving /var/www with busybox httpd, fetch the page
# from the host through the hostPort, show the container's logs, then remove
# the pod, stop everything and clean up — also when a step fails.
#
# berthd uses the default dirs (/var/lib/berth, /run/berth) and the built-in
# network (bridge berth0, 10.88.0.0/16) when they are free and we are root;
# otherwise private temp dirs and a network of its own. What the demo created
# (dirs, bridge, iptables rules and chains, cgroups) goes at the end; what
# existed before stays.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh

work=$(mktemp -d -t berth-demo.XXXXXX)
registry_pid=""
berthd_pid=""
image=""
sock=""
pod_id=""
bridge=berth0
chains=BERTH
cgroup_prefix=berth
created_dirs=()
created_cgroups=()
created_bridge=""
created_chains=""

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

# Deletes the iptables rules (nat, filter) whose comment contains $1.
delete_rules() {
    local needle=$1 table line
    for table in nat filter; do
        iptables-save -t "$table" 2>/dev/null | grep -F -- "$needle" | grep '^-A ' | while read -r line; do
            eval "iptables -w -t $table -D ${line#-A }" 2>/dev/null || true
        done
    done
}

# Unmounts everything at or below $1, deepest first.
unmount_under() {
    local m
    findmnt -rn -o TARGET | grep -E "^$1(/|$)" | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    set +e
    trap - INT TERM
    if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
        if [ -n "$pod_id" ]; then
            echo ">> removing the pod"
            ctl rmp --force "$pod_id" >/dev/null || echo "!! could not remove pod $pod_id" >&2
        fi
        [ -n "$image" ] && ctl rmi "$image" >/dev/null 2>&1
    fi
    stop_pid "$berthd_pid" berthd
    stop_pid "$registry_pid" registry
    if [ -n "$created_bridge" ]; then
        ip link del "$created_bridge" 2>/dev/null
        delete_rules "berth:$created_bridge:"
    fi
    if [ -n "$created_chains" ]; then
        delete_rules "berth:$created_chains:jump"
        local t c
        for t in nat:HOSTPORTS nat:POSTROUTING filter:FORWARD; do
            c="$created_chains-${t#*:}"
            iptables -w -t "${t%%:*}" -F "$c" 2>/dev/null
            iptables -w -t "${t%%:*}" -X "$c" 2>/dev/null
        done
    fi
    local d
    for d in "${created_cgroups[@]}"; do
        rmdir "$d/pods" "$d" 2>/dev/null
    done
    unmount_under "$work"
    rm -rf "$work"
    # Default dirs this demo created (and nothing else) go too.
    for d in "${created_dirs[@]}"; do
        unmount_under "$d"
        rm -rf "$d"
    done
    if [ "$status" -ne 0 ]; then
        echo "!! demo failed (exit $status)" >&2
        [ -s "$work/berthd.log" ] && tail -n 30 "$work/berthd.log" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() { target/debug/berthctl --endpoint "unix://$sock" "$@"; }

berth_install_packages
echo ">> building"
cargo build -p berth-cri-server -p berth-runtime -p berth-monitor -p berth-hack

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
if [ "$(id -u)" -eq 0 ] && [ ! -e /run/berth/berth.sock ] && [ ! -e /var/lib/berth/metadata.redb ] \
    && ! ip link show berth0 >/dev/null 2>&1; then
    sock=/run/berth/berth.sock
    for d in /var/lib/berth /run/berth; do
        [ -e "$d" ] || created_dirs+=("$d")
    done
    echo ">> starting berthd with the default dirs (/var/lib/berth, /run/berth) and network (berth0)"
else
    # Someone else's berthd (or network) is here: a private one beside it.
    sock="$work/state/berth.sock"
    bridge="berthdemo$$"
    bridge=${bridge:0:15}
    chains=BDEMO
    cgroup_prefix="berth-demo-$$"
    mkdir -p "$work/cni"
    cat >"$work/berth.toml" <<EOF
[network]
bridge = "$bridge"
subnet = "10.89.0.0/24"
chain_prefix = "$chains"

[cni]
conf_dir = "$work/cni"

[runtime]
cgroup_prefix = "/$cgroup_prefix"
EOF
    args=(--config "$work/berth.toml" --root "$work/root" --state "$work/state" --socket "$sock")
    echo ">> default dirs or network in use (or not root): starting berthd on $work, bridge $bridge"
fi
ip link show "$bridge" >/dev/null 2>&1 || created_bridge=$bridge
iptables -w -t nat -S "$chains-HOSTPORTS" >/dev/null 2>&1 || created_chains=$chains
for d in /sys/fs/cgroup/*/; do
    [ -e "$d$cgroup_prefix" ] || created_cgroups+=("$d$cgroup_prefix")
done

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

echo ">> berthctl version"
ctl version
echo ">> berthctl pull $image"
ctl pull "$image"

# A free host port for the pod's web server.
host_port=18080
while ss -Htln "sport = :$host_port" | grep -q .; do
    host_port=$((host_port + 1))
done

mkdir -p "$work/logs"
cat >"$work/pod.json" <<EOF
{
  "metadata": {"name": "berth-demo", "namespace": "default", "uid": "berth-demo-$$", "attempt": 0},
  "hostname": "berth-demo",
  "log_directory": "$work/logs",
  "port_mappings": [{"protocol": "TCP", "container_port": 8080, "host_port": $host_port}],
  "linux": {}
}
EOF
cat >"$work/web.json" <<EOF
{
  "metadata": {"name": "web"},
  "image": {"image": "$image"},
  "command": ["httpd", "-f", "-vv", "-p", "8080", "-h", "/var/www"],
  "log_path": "web.log",
  "linux": {}
}
EOF
echo ">> berthctl runp (hostPort 127.0.0.1:$host_port → pod :8080)"
pod_id=$(ctl runp "$work/pod.json")
echo "pod $pod_id"
echo ">> berthctl create + start (httpd -f -vv -p 8080 -h /var/www)"
ctr_id=$(ctl create "$pod_id" "$work/web.json" "$work/pod.json")
ctl start "$ctr_id"
echo ">> berthctl pods / ps"
ctl pods
ctl ps

echo ">> GET http://127.0.0.1:$host_port/ from the host"
fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 3 "http://127.0.0.1:$host_port/"
    else
        # busybox 1.35's wget -T crashes; timeout(1) bounds it instead.
        timeout 3 busybox wget -q -O- "http://127.0.0.1:$host_port/"
    fi
}
page=""
for _ in $(seq 100); do
    if page=$(fetch 2>/dev/null); then
        break
    fi
    page=""
    sleep 0.1
done
[ -n "$page" ] || { echo "no answer on 127.0.0.1:$host_port" >&2; exit 1; }
printf '%s\n' "$page"

echo ">> berthctl logs web"
ctl logs "$ctr_id"
echo ">> done; removing the pod, stopping berthd and the registry"
