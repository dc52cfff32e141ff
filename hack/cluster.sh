#!/usr/bin/env bash
# A one-node Kubernetes cluster whose kubelet runs its pods on berthd:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a
# kubelet (hack/tools.sh k8s builds them at the versions pinned in
# hack/tools/k8s/go.mod), a berthd built from this checkout, and a local
# registry holding the test images (berth-hack serve-images), all on this
# host, with certificates and kubeconfigs made here with openssl.
#
#   hack/cluster.sh up       # build what is missing, start it all, wait for the node to be Ready
#   hack/cluster.sh check    # a Deployment of the test web server: Ready, logs, exec, port-forward
#   hack/cluster.sh env      # prints `export KUBECONFIG=...` and the image to run
#   hack/cluster.sh down     # stop it all and remove what `up` made
#
# Everything lives under $BERTH_CLUSTER_DIR (default /var/lib/berth-cluster)
# and $BERTH_CLUSTER_RUN (default /run/berth-cluster): berthd's root and
# state, the kubelet's root dir and pod logs, etcd's data, the PKI, the
# kubeconfigs and every component's log (logs/). `down` stops the
# processes `up` started (by the pids it recorded), removes the pods from
# berthd, unmounts and deletes those dirs, the cgroups (/berth-cluster in
# every hierarchy), berthd's bridge and iptables chains, the kubelet's
# iptables chains (if they were not there before), the dummy interface
# holding the node IP, /var/log/containers links into the cluster, the
# kubelet's device plugin socket (/var/lib/kubelet/device-plugins, a fixed
# path) and restores the sysctls the kubelet changes.
#
# Addresses: every component listens on 127.0.0.1 except the kubelet, which
# (with the apiserver's advertised address) needs a non-loopback node IP:
# a /32 ($BERTH_CLUSTER_NODE_IP, default 10.213.0.1) on a dummy interface
# made for the purpose (bk8s0) or, when the kernel has no dummy driver, on
# lo; local to this host either way. Pods get addresses on
# berthd's own bridge (bk8sbr0, 10.213.1.0/24); there is no kube-proxy, so
# Service IPs (10.213.2.0/24) do not route.
#
# Ports (all TCP): etcd 12379 (peer 12380), kube-apiserver 16443, kubelet
# 20250 (healthz 20248 on 127.0.0.1), controller-manager 20257, scheduler
# 20259.
#
# BERTH_CLUSTER_BUILD=0 skips `cargo build` (uses target/debug as it is).
#
# Needs root, Go (for hack/tools.sh k8s), cargo, openssl, iptables, ip,
# curl, script (util-linux, for check's terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

dir=${BERTH_CLUSTER_DIR:-/var/lib/berth-cluster}
run=${BERTH_CLUSTER_RUN:-/run/berth-cluster}
node_ip=${BERTH_CLUSTER_NODE_IP:-10.213.0.1}
node_if=bk8s0
node_name=berth-node
bridge=bk8sbr0
pod_subnet=10.213.1.0/24
service_range=10.213.2.0/24
chains=BK8S
cgroup_name=berth-cluster
etcd_port=12379
etcd_peer_port=12380
api_port=16443
kubelet_port=20250
kubelet_healthz_port=20248
kcm_port=20257
sched_port=20259

pki=$dir/pki
logs=$dir/logs
pids=$run/pids
state=$dir/state.env # what `up` created, for `down`
sock=$run/berthd/berth.sock
kubeconfig=$dir/admin.kubeconfig
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { echo ">> $*" >&2; }
die() {
    echo "!! $*" >&2
    exit 1
}

kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
ctl() { "$repo/target/debug/berthctl" --endpoint "unix://$sock" "$@"; }

tools_bin() {
    if [ -z "${bin:-}" ]; then
        log "hack/tools.sh k8s (kubelet, kube-apiserver, ..., etcd; cached after the first build)"
        bin=$(nice -n 19 hack/tools.sh k8s)
    fi
}

# --- certificates -----------------------------------------------------------

# cert NAME CN O SANS(comma list or "") USAGE(server|client|both)
cert() {
    local name=$1 cn=$2 o=$3 sans=$4 usage=$5 subj eku
    subj="/CN=$cn"
    [ -n "$o" ] && subj="/O=$o$subj"
    case "$usage" in
    server) eku=serverAuth ;;
    client) eku=clientAuth ;;
    *) eku=serverAuth,clientAuth ;;
    esac
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -n "$sans" ] && echo "subjectAltName=$sans"
    } >"$pki/$name.ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subj" \
        -out "$pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# kubeconfig FILE CERT-NAME
write_kubeconfig() {
    local file=$1 name=$2
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $pki/$name.crt
    client-key: $pki/$name.key
contexts:
- name: berth
  context: {cluster: berth, user: $name}
current-context: berth
EOF
}

make_pki() {
    mkdir -p "$pki"
    chmod 700 "$pki"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=berth-cluster-ca" \
        -days 30 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$pki/ca.crt" 2>/dev/null
    local svc_ip
    svc_ip=${service_range%.*}.1
    cert apiserver kube-apiserver "" \
        "IP:127.0.0.1,IP:$node_ip,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" server
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
    cert admin berth-cluster-admin system:masters "" client
    cert controller-manager system:kube-controller-manager "" "" client
    cert scheduler system:kube-scheduler "" "" client
    cert kubelet-client "system:node:$node_name" system:nodes "" client
    cert kubelet "$node_name" "" "IP:$node_ip,IP:127.0.0.1,DNS:$node_name" server
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    write_kubeconfig "$dir/admin.kubeconfig" admin
    write_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
    write_kubeconfig "$dir/scheduler.kubeconfig" scheduler
    write_kubeconfig "$dir/kubelet.kubeconfig" kubelet-client
}

# --- processes ----------------------------------------------------------------

# start NAME CMD...: runs it detached (own session), log in logs/NAME.log.
start() {
    local name=$1
    shift
    log "starting $name"
    setsid "$@" </dev/null >"$logs/$name.log" 2>&1 &
    echo $! >"$pids/$name.pid"
}

running() { # NAME
    local p
    [ -f "$pids/$1.pid" ] || return 1
    p=$(cat "$pids/$1.pid")
    kill -0 "$p" 2>/dev/null
}

stop() { # NAME...: SIGTERM to all, then wait (SIGKILL after 15s)
    local name p i alive=()
    for name in "$@"; do
        [ -f "$pids/$name.pid" ] || continue
        p=$(cat "$pids/$name.pid")
        if kill -0 "$p" 2>/dev/null; then
            log "stopping $name ($p)"
            kill -TERM "$p" 2>/dev/null || true
            alive+=("$name:$p")
        fi
    done
    for i in $(seq 150); do
        local left=()
        for name in "${alive[@]}"; do
            # A stopped process the shell is not the parent of can linger as a zombie.
            if kill -0 "${name#*:}" 2>/dev/null && [ "$(ps -o stat= -p "${name#*:}" 2>/dev/null | cut -c1)" != Z ]; then
                left+=("$name")
            fi
        done
        alive=("${left[@]}")
        [ "${#alive[@]}" -eq 0 ] && break
        sleep 0.1
    done
    for name in "${alive[@]}"; do
        echo "!! ${name%%:*} did not stop on SIGTERM, killing it" >&2
        kill -KILL "${name#*:}" 2>/dev/null || true
    done
    for name in "$@"; do
        rm -f "$pids/$name.pid"
    done
    return 0
}

# wait_for WHAT SECONDS NAME CMD...: retries CMD until it succeeds; fails
# early when process NAME has exited.
wait_for() {
    local what=$1 secs=$2 name=$3 i
    shift 3
    for i in $(seq $((secs * 2))); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [ -n "$name" ] && ! running "$name"; then
            tail -n 40 "$logs/$name.log" >&2 || true
            die "$name exited while waiting for $what (log: $logs/$name.log)"
        fi
        sleep 0.5
    done
    [ -n "$name" ] && tail -n 40 "$logs/$name.log" >&2
    die "timed out waiting for $what"
}

record() { echo "$1=$2" >>"$state"; }

# --- up -----------------------------------------------------------------------

up() {
    [ "$(id -u)" -eq 0 ] || die "hack/cluster.sh needs root"
    if [ -f "$state" ]; then
        die "a cluster seems to be up already ($state): hack/cluster.sh down first"
    fi
    for c in openssl iptables ip cargo; do
        command -v "$c" >/dev/null || die "$c not found"
    done
    ! ip link show "$node_if" >/dev/null 2>&1 || die "interface $node_if exists: a cluster is up (or was not taken down)"
    ! ip -4 -o addr show | grep -qF " $node_ip/" || die "address $node_ip is in use: a cluster is up (or was not taken down)"
    ! ip link show "$bridge" >/dev/null 2>&1 || die "bridge $bridge exists: a cluster is up (or was not taken down)"
    local p h
    for h in /sys/fs/cgroup/*/; do
        [ ! -e "$h$cgroup_name" ] || die "cgroup $h$cgroup_name exists: a cluster is up (or was not taken down)"
    done
    for p in $etcd_port $etcd_peer_port $api_port $kubelet_port $kubelet_healthz_port $kcm_port $sched_port; do
        ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use"
    done

    tools_bin
    if [ "${BERTH_CLUSTER_BUILD:-1}" != 0 ]; then
        log "building berthd (cargo build -p berth-cri-server -p berth-runtime -p berth-monitor -p berth-hack)"
        nice -n 19 cargo build -q -p berth-cri-server -p berth-runtime -p berth-monitor -p berth-hack
    fi
    for p in berthd berthctl berth-runtime berth-monitor berth-hack; do
        [ -x "target/debug/$p" ] || die "target/debug/$p missing (BERTH_CLUSTER_BUILD=0 skips the build)"
    done

    mkdir -p "$dir" "$run" "$logs" "$pids"
    : >"$state"
    chmod 700 "$dir"
    # If `up` fails midway, take down what it started.
    trap 'status=$?; if [ $status -ne 0 ]; then echo "!! up failed; taking it down (logs kept in $logs.failed)" >&2; down_all keep-logs; fi' EXIT

    for p in "${sysctls[@]}"; do
        record "sysctl_${p//./_}" "$(sysctl -n "$p")"
    done
    for t in filter nat mangle; do
        iptables -w -t "$t" -S KUBE-KUBELET-CANARY >/dev/null 2>&1 || record "kubelet_chains_v4_$t" created
        if command -v ip6tables >/dev/null; then
            ip6tables -w -t "$t" -S KUBE-KUBELET-CANARY >/dev/null 2>&1 || record "kubelet_chains_v6_$t" created
        fi
    done
    [ -d /var/log/containers ] || record var_log_containers created
    # The kubelet's device plugin socket is at a fixed path, whatever its root dir.
    [ -e /var/lib/kubelet ] || record var_lib_kubelet created

    # A dummy interface when the kernel has them, else an extra address on lo.
    if ip link add "$node_if" type dummy 2>/dev/null; then
        record node_if "$node_if"
        ip link set "$node_if" up
    else
        node_if=lo
    fi
    log "node IP $node_ip/32 on $node_if"
    ip addr add "$node_ip/32" dev "$node_if"
    record node_addr "$node_ip/32 dev $node_if"

    log "certificates and kubeconfigs in $pki"
    make_pki

    # The kubelet's cgroupRoot (it must exist) holding berthd's prefix too.
    local h
    for h in /sys/fs/cgroup/*/; do
        mkdir -p "$h$cgroup_name"
        if [ -f "${h}cpuset.cpus" ]; then
            cat "${h}cpuset.cpus" >"$h$cgroup_name/cpuset.cpus"
            cat "${h}cpuset.mems" >"$h$cgroup_name/cpuset.mems"
        fi
    done

    # A registry on 127.0.0.1 with the test images.
    start registry "$repo/target/debug/berth-hack" serve-images --images "$dir/images" \
        --port-file "$run/registry.port" --only berth/busybox:latest
    wait_for "the registry" 300 registry test -s "$run/registry.port"
    record image "127.0.0.1:$(cat "$run/registry.port")/berth/busybox:latest"

    # berthd: a private root, state, socket, network and cgroup prefix.
    mkdir -p "$dir/cni" "$dir/berthd"
    cat >"$dir/berthd/berth.toml" <<EOF
[network]
bridge = "$bridge"
subnet = "$pod_subnet"
chain_prefix = "$chains"

[cni]
conf_dir = "$dir/cni"

[runtime]
cgroup_prefix = "/$cgroup_name/berthd"
EOF
    record bridge "$bridge"
    record chains "$chains"
    start berthd "$repo/target/debug/berthd" --config "$dir/berthd/berth.toml" \
        --root "$dir/berthd/root" --state "$run/berthd" --socket "$sock"
    wait_for "berthd's socket" 60 berthd test -S "$sock"
    ctl version >&2

    start etcd "$bin/etcd" --name berth --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster "berth=http://127.0.0.1:$etcd_peer_port" --log-level warn
    wait_for etcd 60 etcd curl -fsS "http://127.0.0.1:$etcd_port/health"

    start kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --secure-port "$api_port" --advertise-address "$node_ip" \
        --cert-dir "$dir/apiserver" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$pki/ca.crt" \
        --kubelet-preferred-address-types InternalIP \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-cluster-ip-range "$service_range" \
        --authorization-mode Node,RBAC --allow-privileged=true --profiling=false
    wait_for kube-apiserver 120 kube-apiserver kubectl get --raw /readyz

    start kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig "$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
        --use-service-account-credentials --service-cluster-ip-range "$service_range" \
        --flex-volume-plugin-dir "$dir/kcm-volume-plugins" --profiling=false
    start kube-scheduler "$bin/kube-scheduler" \
        --kubeconfig "$dir/scheduler.kubeconfig" \
        --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
        --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false

    mkdir -p "$dir/kubelet" "$dir/pod-logs"
    cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 (hybrid); 1.35+ refuse it unless told not to.
failCgroupV1: false
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_name
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/volume-plugins
failSwapOn: false
# A shared, busy disk: keep the node from reporting DiskPressure.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
    start kubelet "$bin/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
        --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki" \
        --hostname-override "$node_name" --node-ip "$node_ip" -v 2
    wait_for "node $node_name to register" 120 kubelet kubectl get node "$node_name"
    wait_for "node $node_name to be Ready" 180 kubelet \
        kubectl wait --for=condition=Ready --timeout=2s node "$node_name"
    trap - EXIT
    kubectl get nodes -o wide
    log "up; KUBECONFIG=$kubeconfig (hack/cluster.sh env); logs in $logs"
}

# --- check: a Deployment of the test web server -----------------------------

check() {
    tools_bin
    [ -f "$state" ] || die "no cluster: hack/cluster.sh up first"
    local image ok=0 failed=0 pod out
    image=$(sed -n 's/^image=//p' "$state")
    pass() {
        echo "PASS: $*"
        ok=$((ok + 1))
    }
    fail() {
        echo "FAIL: $*"
        failed=$((failed + 1))
    }
    sed "s|@IMAGE@|$image|" hack/cluster/web.yaml | kubectl apply -f - >&2
    if kubectl rollout status deployment/web --timeout=180s >&2; then
        pass "deployment web Ready"
    else
        fail "deployment web not Ready"
        kubectl describe pods -l app=web >&2 || true
    fi
    pod=$(kubectl get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
    kubectl get pods -o wide >&2

    # httpd -vv logs each request (the readiness probe's among them).
    if out=$(kubectl logs "$pod" 2>&1) && grep -q 'response:200' <<<"$out"; then
        pass "kubectl logs: $(tail -n1 <<<"$out")"
    else
        fail "kubectl logs: $out"
    fi
    if out=$(kubectl exec "$pod" -- cat /var/www/index.html 2>&1) && grep -q 'hello from berth' <<<"$out"; then
        pass "kubectl exec: $out"
    else
        fail "kubectl exec: $out"
    fi
    if out=$(echo stdin-ok | kubectl exec -i "$pod" -- cat 2>&1) && [ "$out" = stdin-ok ]; then
        pass "kubectl exec -i: $out"
    else
        fail "kubectl exec -i: $out"
    fi
    local code=0
    kubectl exec "$pod" -- sh -c 'exit 7' >/dev/null 2>&1 || code=$?
    if [ "$code" = 7 ]; then pass "kubectl exec exit code 7"; else fail "kubectl exec exit code $code, wanted 7"; fi
    # A terminal: script(1) gives kubectl one, 40x100 (script, its stdin
    # not a terminal, may put a NUL on it: the pod's terminal echoes ^@).
    if out=$(script -qec "stty rows 40 cols 100; $bin/kubectl --kubeconfig $kubeconfig exec -it $pod -- sh -c 'tty; stty size'" /dev/null 2>&1) \
        && grep -q '/dev/pts/' <<<"$out" && grep -qE '(^|\^@)40 100' <<<"$out"; then
        pass "kubectl exec -it: $(tr -d '\r' <<<"$out" | tr '\n' ' ')"
    else
        fail "kubectl exec -it: $out"
    fi
    rm -f "$run/index.html"
    if kubectl cp "$pod:/var/www/index.html" "$run/index.html" >/dev/null 2>&1 && grep -q 'hello from berth' "$run/index.html"; then
        pass "kubectl cp (exec tar) from the pod"
    else
        fail "kubectl cp: $(kubectl cp "$pod:/var/www/index.html" "$run/index.html" 2>&1)"
    fi
    # The kubelet's stats of the pod (CRI ListPodSandboxStats / ListContainerStats).
    out=$(kubectl get --raw "/api/v1/nodes/$node_name/proxy/stats/summary" 2>&1)
    if python3 -c 'import json,sys; d=json.load(sys.stdin); p=[p for p in d["pods"] if p["podRef"]["name"]==sys.argv[1]][0]; c=p["containers"][0]; assert c["memory"]["workingSetBytes"]>0, c; print("cpu", c["cpu"].get("usageCoreNanoSeconds"), "memory", c["memory"]["workingSetBytes"])' "$pod" <<<"$out" >"$run/stats.txt" 2>&1; then
        pass "stats summary: $(cat "$run/stats.txt")"
    else
        fail "stats summary: $(tail -n 3 "$run/stats.txt")"
    fi

    local pf_log=$run/port-forward.log pf_pid port=28080
    while ss -Htln "sport = :$port" | grep -q .; do port=$((port + 1)); done
    "$bin/kubectl" --kubeconfig "$kubeconfig" port-forward --address 127.0.0.1 "pod/$pod" "$port:8080" \
        >"$pf_log" 2>&1 &
    pf_pid=$!
    out=""
    for _ in $(seq 40); do
        out=$(curl -fsS --max-time 3 "http://127.0.0.1:$port/" 2>/dev/null) && break
        sleep 0.25
    done
    if grep -q 'hello from berth' <<<"$out"; then
        # A second connection over the same forward.
        if curl -fsS --max-time 3 "http://127.0.0.1:$port/" | grep -q 'hello from berth'; then
            pass "kubectl port-forward: $out (twice)"
        else
            fail "kubectl port-forward: second request failed"
        fi
    else
        fail "kubectl port-forward: got '$out'; $(cat "$pf_log")"
    fi
    kill "$pf_pid" 2>/dev/null || true
    wait "$pf_pid" 2>/dev/null || true

    local pod_ip
    pod_ip=$(kubectl get pod "$pod" -o jsonpath='{.status.podIP}')
    echo "pod IP $pod_ip (berthd's bridge $bridge, $pod_subnet)"

    # A restart replaces the pod: the old one's sandbox is stopped and removed.
    kubectl rollout restart deployment/web >&2
    if kubectl rollout status deployment/web --timeout=180s >&2; then
        pass "rollout restart: new pod Ready"
    else
        fail "rollout restart"
    fi
    kubectl delete deployment web --wait=true >&2
    if kubectl wait --for=delete pod -l app=web --timeout=60s >&2; then
        pass "deployment deleted: its pods are gone"
    else
        fail "pods of the deleted deployment remain: $(kubectl get pods 2>&1)"
    fi
    ctl pods >&2
    echo "$ok passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# --- down ---------------------------------------------------------------------

delete_rules() { # TABLE-TOOL NEEDLE: delete rules (nat, filter) whose text contains it
    local tool=$1 needle=$2 table line
    for table in nat filter mangle; do
        "$tool"-save -t "$table" 2>/dev/null | grep -F -- "$needle" | grep '^-A ' | while read -r line; do
            eval "$tool -w -t $table -D ${line#-A }" 2>/dev/null || true
        done
    done
}

unmount_under() {
    local m
    [ -n "$1" ] || return 0
    findmnt -rn -o TARGET | grep -E "^$1(/|$)" | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

remove_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$cgroup_name" ] || continue
        # Kill what is left, then rmdir deepest first.
        if [ -f "$h$cgroup_name/cgroup.procs" ]; then
            find "$h$cgroup_name" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | while read -r p; do
                kill -KILL "$p" 2>/dev/null || true
            done
        fi
        find "$h$cgroup_name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$h$cgroup_name" ] && echo "!! could not remove cgroup $h$cgroup_name" >&2
    done
    return 0
}

down_all() {
    set +e
    local keep=${1:-}
    val() { sed -n "s/^$1=//p" "$state" 2>/dev/null | tail -n1; }
    stop kubelet
    stop kube-scheduler kube-controller-manager kube-apiserver
    stop etcd
    if running berthd; then
        local ids
        ids=$(ctl pods -q 2>/dev/null)
        if [ -n "$ids" ]; then
            log "removing $(wc -l <<<"$ids") pods from berthd"
            # shellcheck disable=SC2086
            ctl rmp --force $ids >/dev/null || echo "!! could not remove some pods" >&2
        fi
    fi
    stop berthd registry

    # berthd's network: bridge, rules, chains.
    local br ch t c
    br=$(val bridge)
    if [ -n "$br" ]; then
        ip link del "$br" 2>/dev/null
        delete_rules iptables "berth:$br:"
    fi
    ch=$(val chains)
    if [ -n "$ch" ]; then
        delete_rules iptables "berth:$ch:jump"
        for t in nat:HOSTPORTS nat:POSTROUTING filter:FORWARD; do
            c="$ch-${t#*:}"
            iptables -w -t "${t%%:*}" -F "$c" 2>/dev/null
            iptables -w -t "${t%%:*}" -X "$c" 2>/dev/null
        done
    fi
    # The kubelet's chains, when it made them.
    local fam tool
    for fam in v4 v6; do
        tool=iptables
        [ "$fam" = v6 ] && tool=ip6tables
        for t in filter nat mangle; do
            [ "$(val "kubelet_chains_${fam}_$t")" = created ] || continue
            if [ "$t" = filter ]; then
                "$tool" -w -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null
                "$tool" -w -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
                "$tool" -w -t filter -F KUBE-FIREWALL 2>/dev/null
                "$tool" -w -t filter -X KUBE-FIREWALL 2>/dev/null
            fi
            if [ "$t" = mangle ]; then
                "$tool" -w -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null
            fi
            "$tool" -w -t "$t" -F KUBE-KUBELET-CANARY 2>/dev/null
            "$tool" -w -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null
        done
    done
    # shellcheck disable=SC2046
    [ -n "$(val node_addr)" ] && ip addr del $(val node_addr) 2>/dev/null
    [ -n "$(val node_if)" ] && ip link del "$(val node_if)" 2>/dev/null

    local s v
    for s in "${sysctls[@]}"; do
        v=$(val "sysctl_${s//./_}")
        [ -n "$v" ] && sysctl -qw "$s=$v" >/dev/null
    done

    remove_cgroups
    # The kubelet's links to container logs.
    local l
    for l in /var/log/containers/*; do
        [ -L "$l" ] || continue
        case "$(readlink "$l")" in "$dir"/*) rm -f "$l" ;; esac
    done
    if [ "$(val var_log_containers)" = created ]; then
        rmdir /var/log/containers 2>/dev/null
    fi
    if [ "$(val var_lib_kubelet)" = created ]; then
        rm -f /var/lib/kubelet/device-plugins/kubelet.sock
        rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null
    fi

    unmount_under "$run"
    unmount_under "$dir"
    if [ "$keep" = keep-logs ] && [ -d "$logs" ]; then
        rm -rf "$logs.failed"
        cp -a "$logs" "$logs.failed"
    fi
    rm -rf "$run"
    if [ "$keep" = keep-logs ]; then
        find "$dir" -mindepth 1 -maxdepth 1 ! -name logs.failed -exec rm -rf {} +
    else
        rm -rf "$dir"
    fi
    return 0
}

down() {
    [ "$(id -u)" -eq 0 ] || die "hack/cluster.sh needs root"
    if [ ! -f "$state" ] && [ ! -d "$run" ] && [ ! -d "$dir" ]; then
        log "no cluster"
        return 0
    fi
    down_all "${1:-}"
    log "down"
}

case "${1:-}" in
up) up ;;
check) check ;;
down) down "${2:-}" ;;
env)
    echo "export KUBECONFIG=$kubeconfig"
    echo "# image: $(sed -n 's/^image=//p' "$state" 2>/dev/null)"
    ;;
*)
    echo "usage: hack/cluster.sh up|check|env|down" >&2
    exit 2
    ;;
esac
