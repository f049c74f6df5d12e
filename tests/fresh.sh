#!/usr/bin/env bash
# tests/fresh.sh (make check-fresh): the README's two commands on a minimal
# Debian 12, as a newcomer types them.
#
# debootstraps bookworm (--variant=minbase plus git, make, gcc, libc6-dev,
# pkg-config and ca-certificates: what a newcomer has to have to clone and
# type make) into a temporary folder under /var/tmp, clones this repository's
# committed HEAD into it, and runs `make demo` and then `make check` as root
# in a chroot, each installing its own Debian packages as the README says.
# Prints each command's status and time, keeps the whole log in
# build/fresh/fresh.log, and exits 1 when either failed.
#
# It needs root and Debian's package archive, and takes 15-25 minutes on
# 2 cores: it is not part of .ci/run.  The minimal system is cached as a
# tarball in /var/tmp (delete it to start from the archive again).
#
#   tests/fresh.sh [--keep]     --keep leaves the chroot in place
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[ "${1:-}" = "--keep" ] && keep=true
[ "$(id -u)" -eq 0 ] || { echo "fresh.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }

suite=bookworm
include=git,make,gcc,libc6-dev,pkg-config,ca-certificates
tarball=/var/tmp/medssl-fresh-$suite-minbase.tgz
# The machine's own mirror, so that the chroot reaches what apt reaches here.
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
logdir=$top/build/fresh
mkdir -p "$logdir"
log=$logdir/fresh.log
: > "$log"

if ! command -v debootstrap >/dev/null; then
    echo "fresh.sh: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$log" 2>&1 \
        || { apt-get update -q >>"$log" 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$log" 2>&1; }
fi

root=$(mktemp -d /var/tmp/medssl-fresh-XXXXXX)
cleanup() {
    for m in dev/pts dev sys proc; do
        mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
    done
    if $keep; then echo "fresh.sh: chroot kept in $root" >&2; else rm -rf "$root"; fi
}
trap cleanup EXIT

seconds() { date +%s; }
t0=$(seconds)
if [ ! -f "$tarball" ]; then
    echo "fresh.sh: debootstrap $suite (minbase + $include) from $mirror, cached in $tarball" >&2
    debootstrap --variant=minbase --include="$include" --make-tarball="$tarball.tmp" "$suite" \
        "$root.tarball" "$mirror" >>"$log" 2>&1 || { echo "fresh.sh: debootstrap failed: see $log" >&2; exit 1; }
    rm -rf "$root.tarball"
    mv "$tarball.tmp" "$tarball"
fi
debootstrap --variant=minbase --include="$include" --unpack-tarball="$tarball" "$suite" "$root" "$mirror" \
    >>"$log" 2>&1 || { echo "fresh.sh: debootstrap from $tarball failed: see $log" >&2; exit 1; }
echo "fresh.sh: minimal $suite in $root ($(($(seconds) - t0)) s)" >&2

mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A clean clone of what is committed, as a newcomer's git clone has it.
git clone -q --no-local "$top" "$root/root/medssl"
echo "fresh.sh: cloned $(git -C "$top" rev-parse --short HEAD) into the chroot" >&2

failed=0
run() { # the README's command, in the clone, as root, with a plain environment
    local cmd=$1 start status
    start=$(seconds)
    echo "==== $cmd" >>"$log"
    set +e
    # Default signal dispositions, as a terminal gives them: a fresh.sh
    # started in the background of a shell without job control inherits
    # SIGINT ignored, and the tools keep an ignored signal ignored (nohup).
    env --default-signal=INT,TERM,HUP,PIPE chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 /bin/sh -c "cd /root/medssl && $cmd" >>"$log" 2>&1
    status=$?
    set -e
    local took=$(($(seconds) - start))
    printf 'fresh.sh: %-10s status %d, %dm%02ds' "$cmd" "$status" $((took / 60)) $((took % 60))
    [ "$cmd" = "make check" ] && printf ' (%s)' "$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)"
    echo
    [ "$status" -eq 0 ] || failed=1
}
run "make demo"
run "make check"
echo "fresh.sh: log in $log"
exit $failed
