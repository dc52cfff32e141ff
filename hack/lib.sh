# Shared by hack/*.sh: install what is missing. Source it; do not run it.
# shellcheck shell=bash

# Debian packages berth's builds, tests and demo need (build-essential,
# dpkg-dev, bzip2 and xz-utils: hack/standins.sh builds BusyBox from
# Debian's source package and the helpers of critest's stand-in images).
BERTH_PACKAGES=(busybox-static docker-registry skopeo protobuf-compiler containernetworking-plugins iptables openssl
    build-essential dpkg-dev bzip2 xz-utils)

berth_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

# Installs missing Debian packages; runs `apt-get update` only if something is missing.
berth_install_packages() {
    local missing=() p
    for p in "${BERTH_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo ">> installing ${missing[*]}"
        berth_as_root apt-get update -qq
        berth_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# Python packages the tests use as real clients (grpcio: a grpc-core gRPC
# client, which names the unix socket path as its HTTP/2 authority).
BERTH_PYTHON_PACKAGES=("grpcio==1.85.4")

# Installs the missing Python packages with pip (from PyPI).
berth_install_python_packages() {
    if ! python3 -c "import grpc" >/dev/null 2>&1; then
        echo ">> installing ${BERTH_PYTHON_PACKAGES[*]} (pip)"
        python3 -m pip install --quiet --root-user-action=ignore "${BERTH_PYTHON_PACKAGES[@]}"
    fi
}

# Adds rustfmt and clippy when absent.
berth_install_rust_components() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install a Rust toolchain (rustup) first" >&2
        return 1
    fi
    local c
    for c in rustfmt clippy; do
        local probe=fmt
        [ "$c" = clippy ] && probe=clippy
        if ! cargo "$probe" --version >/dev/null 2>&1; then
            echo ">> adding rust component $c"
            rustup component add "$c"
        fi
    done
}
