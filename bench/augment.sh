#!/usr/bin/env bash
# augment against torchvision's SimCLR chain (RandomResizedCrop, horizontal
# flip, ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8, RandomGrayscale(0.2),
# GaussianBlur with p 0.5, ToTensor, Normalize) on PIL images, at 224 x 224
# (from 256 x 256 u8 RGB images) and 32 x 32 (from 32 x 32), the same images
# through both.  Prints a markdown table of images per second.
#
# Per core: images per CPU-second (user + system) with one thread, so that
# other work on a shared machine does not count: augment's is the whole tool
# (reading the stream, augmenting, writing f32 records to /dev/null),
# torchvision's the chain alone on decoded PIL images in one process with
# torch.set_num_threads(1) (bench/augment_torchvision.py).  All cores:
# augment's wall-clock rate with a thread per core.  Each is the best of
# ROUNDS (default 3) runs.  A second row per size turns the blur off in both:
# torchvision's GaussianBlur convolves with a full k x k kernel (23 x 23 at
# 224), which dominates its time.
# Usage: bench/augment.sh [N224 [N32]]   (default 400 and 10000 images);
# needs python3-torchvision and python3-msgpack.
set -euo pipefail
n224=${1:-400}
n32=${2:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /dev/shm/medssl-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
MKSTREAM_OUT=$dir/in224.mts "$root/build/helpers/mkstream" "$n224" u8 3 256 256
MKSTREAM_OUT=$dir/in32.mts "$root/build/helpers/mkstream" "$n32" u8 3 32 32
cores=$(nproc)

# best_cpu CMD...: the command's CPU time (user + system, children
# included) in seconds, best of ROUNDS runs.
best_cpu() {
    local b=1e9 t
    for _ in $(seq "${ROUNDS:-3}"); do
        t=$( ( "$@" > /dev/null; times ) | tail -1 |
             awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
        b=$(awk -v b="$b" -v t="$t" 'BEGIN { print (t < b ? t : b) }')
    done
    echo "$b"
}
# best_wall CMD...: wall time in seconds, best of ROUNDS runs.
best_wall() {
    local b=1e9 t0 t1
    for _ in $(seq "${ROUNDS:-3}"); do
        t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
        b=$(awk -v b="$b" -v a="$t0" -v z="$t1" 'BEGIN { t = z - a; print (t < b ? t : b) }')
    done
    echo "$b"
}
# row SIZE N BLUR_P LABEL
row() {
    local size=$1 n=$2 blur=$3 label=$4 tv one all
    tv=$(/usr/bin/python3 "$root/bench/augment_torchvision.py" "$dir/in$size.mts" "$size" "$blur" "${ROUNDS:-3}" \
         | awk '{ print $2 }')
    one=$(best_cpu "$root/bin/augment" -q -T 1 -s "$size" --blur-p "$blur" "$dir/in$size.mts")
    all=$(best_wall "$root/bin/augment" -q -T "$cores" -s "$size" --blur-p "$blur" "$dir/in$size.mts")
    awk -v s="$size" -v n="$n" -v l="$label" -v tv="$tv" -v one="$one" -v all="$all" 'BEGIN {
        printf "| %d x %d, %s | %d | %.0f | %.0f | **%.1fx** | %.0f |\n", s, s, l, n, tv, n / one, n / one / tv, n / all }'
}
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "| chain | images | torchvision, per core (img/s) | augment, per core (img/s) | ratio | augment, $cores threads, wall clock (img/s) |"
echo "|---|---:|---:|---:|---:|---:|"
row 224 "$n224" 0.5 "SimCLR chain"
row 224 "$n224" 0 "no blur"
row 32 "$n32" 0.5 "SimCLR chain"
row 32 "$n32" 0 "no blur"
