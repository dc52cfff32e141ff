#!/usr/bin/env bash
# Builds the static programs berth's stand-ins for critest's images are made
# of (hack/src/critest_images.rs puts them into images), into a cache outside
# the checkout, and prints the directory holding them:
#
#   dir=$(hack/standins.sh)     # e.g. /var/cache/berth/standins/<key>
#   ls "$dir"                   # busybox nginx nnp pause applets versions.txt
#
# - busybox: BusyBox built from Debian's source package (`apt-get source
#   busybox`; a deb-src entry for the configured suites is added to apt's
#   sources when there is none), `make defconfig` with
#   hack/standins/busybox.config over it: static, every applet critest runs
#   (Debian's busybox-static lacks pgrep and ipcs and runs applets in-process).
# - nginx, nnp, pause: hack/standins/*.c, `gcc -static`.
#
# The cache key is a hash of this script, hack/standins/* and gcc's version:
# the same inputs are built once (a later Debian source revision is picked up
# when the key changes). Progress goes to stderr; stdout is only the
# directory.
#
#   BERTH_STANDINS_CACHE   cache root (default /var/cache/berth/standins; not
#                          root: ~/.cache/berth/standins)
#
# Needs build-essential and dpkg-dev, and for a first build apt's access to
# the Debian archive (root, or sudo, to add the deb-src entry).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/standins"
# shellcheck source=hack/lib.sh
source "$here/lib.sh"
if [ "$(id -u)" -eq 0 ]; then
    cache=${BERTH_STANDINS_CACHE:-/var/cache/berth/standins}
else
    cache=${BERTH_STANDINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/standins}
fi

# The applets the images must have: what critest's specs run in them.
APPLETS=(sh ls cat echo sleep id env touch mkdir mount grep chmod dd seq sync
    hostname pgrep pidof ps top ipcs brctl netstat ping httpd wget true)
HELPERS=(nginx nnp pause)

key=$( (
    cat "$0" "$src/busybox.config"
    for h in "${HELPERS[@]}"; do cat "$src/$h.c"; done
    gcc --version | head -n1
) | sha256sum | cut -c1-16)
dir="$cache/$key"
if [ -f "$dir/complete" ]; then
    echo "$dir"
    exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ -f "$dir/complete" ]; then # built by a concurrent run meanwhile
    echo "$dir"
    exit 0
fi

# deb-src entries for the suites apt already uses (deb822 .sources stanzas and
# one-line .list entries), so `apt-get source` can fetch.
ensure_deb_src() {
    if apt-get source --print-uris busybox >/dev/null 2>&1; then
        return 0
    fi
    if grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d; then
        # Configured, but the source indexes were never fetched.
        berth_as_root apt-get update -qq >&2
        apt-get source --print-uris busybox >/dev/null
        return 0
    fi
    local out=/etc/apt/sources.list.d/berth-deb-src
    local tmp f
    tmp=$(mktemp -d)
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # Each enabled stanza whose Types has `deb`, as deb-src.
        awk 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; enabled = 1; deb = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/) types = $i
                    if ($i ~ /^Enabled:[ \t]*[Nn]o/) enabled = 0
                }
                n = split(types, t, /[ \t]+/)
                for (j = 2; j <= n; j++) if (t[j] == "deb") deb = 1
                if (!deb || !enabled) next
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^Types:/) line = "Types: deb-src"
                    print line
                }
                print ""
            }' "$f" >>"$tmp/sources"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # One-line entries: `deb [opts] uri suite comps` as deb-src.
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$tmp/list"
    done
    if [ ! -s "$tmp/sources" ] && [ ! -s "$tmp/list" ]; then
        rm -rf "$tmp"
        echo "hack/standins.sh: no deb entries in apt's sources to derive deb-src entries from" >&2
        return 1
    fi
    echo ">> adding deb-src entries for apt's suites ($out.*)" >&2
    if [ -s "$tmp/sources" ]; then berth_as_root install -m 0644 "$tmp/sources" "$out.sources"; fi
    if [ -s "$tmp/list" ]; then berth_as_root install -m 0644 "$tmp/list" "$out.list"; fi
    rm -rf "$tmp"
    berth_as_root apt-get update -qq >&2
    apt-get source --print-uris busybox >/dev/null
}

work="$dir/work.$$"
rm -rf "$work" "$dir/bin.tmp"
mkdir -p "$work" "$dir/bin.tmp"
trap 'rm -rf "$work" "$dir/bin.tmp"' EXIT

ensure_deb_src
echo ">> fetching Debian's busybox source into $work" >&2
# Quiet unless it fails: the output goes to logs in the work dir.
quiet() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 || {
        tail -n 40 "$log" >&2
        exit 1
    }
}
quiet "$work/fetch.log" sh -c 'cd "$1" && apt-get source --download-only busybox' sh "$work"
dsc=$(ls "$work"/busybox_*.dsc)
# dpkg-source checks the files against the .dsc (apt checked the .dsc
# against the archive's signed index) and applies Debian's patches.
quiet "$work/extract.log" sh -c 'cd "$1" && dpkg-source -x "$2" src' sh "$work" "$dsc"
bb="$work/src"

echo ">> configuring BusyBox (defconfig + hack/standins/busybox.config)" >&2
# Reproducible: the build date is the Debian changelog's.
SOURCE_DATE_EPOCH=$(cd "$bb" && dpkg-parsechangelog -STimestamp)
export SOURCE_DATE_EPOCH KCONFIG_NOTIMESTAMP=1 KBUILD_BUILD_USER=berth KBUILD_BUILD_HOST=berth
quiet "$work/busybox-config.log" make -C "$bb" -s defconfig
settings=$(grep -E '^(CONFIG_[A-Z0-9_]+=|# CONFIG_[A-Z0-9_]+ is not set)' "$src/busybox.config")
while IFS= read -r line; do
    sym=$(sed -E 's/^(# )?(CONFIG_[A-Z0-9_]+).*/\2/' <<<"$line")
    sed -i -E "/^(# )?$sym[= ]/d" "$bb/.config"
    echo "$line" >>"$bb/.config"
done <<<"$settings"
# (`yes` ends with SIGPIPE when oldconfig is done asking.)
{ yes "" || true; } | make -C "$bb" -s oldconfig >>"$work/busybox-config.log" 2>&1
while IFS= read -r line; do
    if ! grep -qxF "$line" "$bb/.config"; then
        echo "hack/standins.sh: BusyBox's oldconfig dropped '$line'" >&2
        exit 1
    fi
done <<<"$settings"

echo ">> building BusyBox" >&2
quiet "$work/busybox-build.log" make -C "$bb" -s -j"$(nproc)" busybox
"$bb/busybox" --list | sort >"$dir/bin.tmp/applets"
for a in "${APPLETS[@]}"; do
    if ! grep -qx "$a" "$dir/bin.tmp/applets"; then
        echo "hack/standins.sh: the BusyBox build lacks the $a applet" >&2
        exit 1
    fi
done
install -m 0755 "$bb/busybox" "$dir/bin.tmp/busybox"
cp "$bb/.config" "$dir/bin.tmp/busybox.config"

for h in "${HELPERS[@]}"; do
    echo ">> building $h (hack/standins/$h.c)" >&2
    gcc -static -Os -s -Wall -Wextra -Werror -o "$dir/bin.tmp/$h" "$src/$h.c" >&2
done
{
    echo "busybox $(basename "$dsc" .dsc | sed 's/^busybox_//')"
    gcc --version | head -n1
} >"$dir/bin.tmp/versions.txt"

for f in "$dir/bin.tmp"/*; do
    mv "$f" "$dir/"
done
touch "$dir/complete"
echo "$dir"
