#!/usr/bin/env bash
# Builds real Kubernetes tools at the versions pinned in a Go module under
# hack/tools/, into a cache outside the checkout, and prints the directory
# holding them. Two sets, each its own module:
#
#   bin=$(hack/tools.sh)        # "cri" (the default): crictl and critest,
#                               # pinned in hack/tools/go.mod; what the tests
#                               # drive berthd with
#   bin=$(hack/tools.sh k8s)    # "k8s": kubelet, kube-apiserver,
#                               # kube-controller-manager, kube-scheduler,
#                               # kubectl and etcd, pinned in
#                               # hack/tools/k8s/go.mod; what hack/cluster.sh runs
#   "$bin/crictl" --version     # e.g. /var/cache/berth/tools/<key>/bin
#
# The cache key is a hash of the set's go.mod, go.sum and this script, so
# the same pins are built once: later runs print the dir at once. Progress
# goes to stderr; stdout is only the directory.
#
#   BERTH_TOOLS_CACHE   cache root (default /var/cache/berth/tools; not root:
#                       ~/.cache/berth/tools)
#
# Needs Go (the version hack/tools/go.mod names, or a newer one) and, for a
# first build, the Go module proxy or a module cache holding the modules.
#
# To add a tool: pin it in hack/tools/ (import in tools.go, `go get`,
# `go mod tidy`) and add a line to TOOLS below.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
set_name=${1:-cri}
if [ "$(id -u)" -eq 0 ]; then
    cache=${BERTH_TOOLS_CACHE:-/var/cache/berth/tools}
else
    cache=${BERTH_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/tools}
fi

# name  how (build: a command; test: a test binary, go test -c)  package
case "$set_name" in
cri)
    mod="$here/tools"
    TOOLS=(
        "crictl build sigs.k8s.io/cri-tools/cmd/crictl"
        "critest test sigs.k8s.io/cri-tools/cmd/critest"
    )
    ;;
k8s)
    mod="$here/tools/k8s"
    TOOLS=(
        "kubectl build k8s.io/kubernetes/cmd/kubectl"
        "kube-apiserver build k8s.io/kubernetes/cmd/kube-apiserver"
        "kube-controller-manager build k8s.io/kubernetes/cmd/kube-controller-manager"
        "kube-scheduler build k8s.io/kubernetes/cmd/kube-scheduler"
        "kubelet build k8s.io/kubernetes/cmd/kubelet"
        "etcd build go.etcd.io/etcd/server/v3"
    )
    ;;
*)
    echo "usage: hack/tools.sh [cri|k8s]" >&2
    exit 2
    ;;
esac

key=$(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-16)
dir="$cache/$key"
bin="$dir/bin"
if [ -f "$dir/complete" ]; then
    echo "$bin"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "hack/tools.sh: go not found: install Go to build ${TOOLS[*]%% *}" >&2
    exit 1
fi

mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ -f "$dir/complete" ]; then # built by a concurrent run meanwhile
    echo "$bin"
    exit 0
fi

# The version a tool reports (`crictl --version`, `kubelet --version`), as
# its own build sets it (Kubernetes: hack/lib/version.sh; etcd's version is
# a constant in its source).
ldflags_for() {
    case "$1" in
    sigs.k8s.io/cri-tools/*)
        local v
        v=$(cd "$mod" && go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)
        echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v"
        ;;
    k8s.io/kubernetes/*)
        local v major minor flags="-s -w" p k
        v=$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
        major=${v#v}
        major=${major%%.*}
        minor=${v#v*.}
        minor=${minor%%.*}
        for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
            for k in gitVersion=$v gitMajor=$major gitMinor=$minor gitTreeState=clean \
                buildDate=1970-01-01T00:00:00Z; do
                flags+=" -X $p.$k"
            done
        done
        echo "$flags"
        ;;
    *) echo "-s -w" ;;
    esac
}

tmp="$dir/bin.tmp.$$"
rm -rf "$tmp" "$bin"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
for entry in "${TOOLS[@]}"; do
    read -r name how pkg <<<"$entry"
    echo ">> building $name ($pkg) into $bin" >&2
    start=$SECONDS
    ldflags=$(ldflags_for "$pkg")
    # -mod=readonly: go.mod/go.sum must already be complete (go mod tidy).
    case "$how" in
    build) (cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg") >&2 ;;
    test) (cd "$mod" && CGO_ENABLED=0 go test -mod=readonly -trimpath -ldflags "$ldflags" -c -o "$tmp/$name" "$pkg") >&2 ;;
    *)
        echo "hack/tools.sh: unknown build kind $how for $name" >&2
        exit 1
        ;;
    esac
    echo ">> built $name in $((SECONDS - start))s" >&2
done
(cd "$mod" && go list -m all) >"$tmp/../versions.txt"
mv "$tmp" "$bin"
trap - EXIT
touch "$dir/complete"
echo "$bin"
