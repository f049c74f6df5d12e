#!/bin/sh
# Installs the Debian packages the build and the tests need, when missing.
# Usage: mk/deps.sh build|check|demo|bench|valgrind
# As root it runs apt-get; otherwise it prints the exact command to run.
set -eu

build="pkg-config gcc make libvips-dev libvips-tools libmsgpack-dev libzstd-dev zstd libtiff-dev libjpeg62-turbo-dev libblis-openmp-dev libcjson-dev libcharls-dev libopenjp2-7-dev zlib1g-dev"
# man-db: the man-page tests render every page with man(1), which a minimal
# Debian does not have; python3-pil: augment's comparison with PIL's resize;
# Open MPI: the data-parallel tests (tests/tools/mpi.sh).
check="$build libopenmpi-dev openmpi-bin time man-db python3-numpy python3-msgpack python3-pil python3-pydicom dataset-fashion-mnist clang libclang-rt-14-dev libomp-14-dev"
demo="$build dataset-fashion-mnist"
bench="$check python3-torch python3-torchvision python3-sklearn python3-pil hyperfine"
valgrind="$build valgrind"

case "${1:-build}" in
    build) want=$build ;;
    check) want=$check ;;
    demo) want=$demo ;;
    bench) want=$bench ;;
    valgrind) want=$valgrind ;;
    *) echo "deps.sh: usage: deps.sh build|check|demo|bench|valgrind" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages:$missing" >&2
    echo "deps.sh: install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists on a fresh machine may be empty or stale: update once
# when the first attempt fails, then try again.
if ! apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends $missing >&2
fi
