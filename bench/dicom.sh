#!/usr/bin/env bash
# case-pack on a folder of DICOM files against pydicom + PIL doing the same
# decode, rescale, window, MONOCHROME1 inversion and resize to 224 in one
# process (bench/dicom_pydicom.py), grouped by patient.  Two folders, made
# from pydicom's sample files with new patient ids and UIDs: N small files
# (CT_small, MR_small, MR_small_RLE in turn: per-file costs) and N/10 files
# of 1024 x 1024 (CR/DX-sized).  ROUNDS interleaved rounds (ours on every
# core, ours on one thread, the peer), median and best; prints a markdown
# table.  Usage: bench/dicom.sh [N] [ROUNDS]  (default 3000, 3); needs
# python3-pydicom, -pil, -numpy.
set -euo pipefail
n=${1:-3000} rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
dir=$(mktemp -d /dev/shm/medssl-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
$py "$root/bench/dicom_pydicom.py" make "$dir/small" "$n" 0
$py "$root/bench/dicom_pydicom.py" make "$dir/large" $((n / 10)) 1024

seconds() { # CMD...: wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
stats() { sort -g | awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[int((NR + 1) / 2)], v[1] }'; }

echo "| folder | files | case-pack, $(nproc) threads: median (best) | case-pack, 1 thread | pydicom + PIL, one process | ratio (median, $(nproc) threads) | ratio (median, 1 thread) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for set in small large; do
    files=$(ls "$dir/$set" | wc -l)
    : > "$dir/all.txt"; : > "$dir/one.txt"; : > "$dir/peer.txt"
    for _ in $(seq "$rounds"); do
        seconds "$root/bin/case-pack" -q -c 1 --size 224 --dir "$dir/$set" --layout dicom -o "$dir/x.pack" >> "$dir/all.txt"
        seconds "$root/bin/case-pack" -q -T 1 -c 1 --size 224 --dir "$dir/$set" --layout dicom -o "$dir/x.pack" >> "$dir/one.txt"
        seconds $py "$root/bench/dicom_pydicom.py" pack "$dir/$set" >> "$dir/peer.txt"
    done
    read -r all all_best < <(stats < "$dir/all.txt")
    read -r one one_best < <(stats < "$dir/one.txt")
    read -r peer peer_best < <(stats < "$dir/peer.txt")
    echo "| $set | $files | $all s ($all_best) | $one s ($one_best) | $peer s ($peer_best) | $(awk -v a="$peer" -v b="$all" 'BEGIN { printf "%.2fx", a / b }') | $(awk -v a="$peer" -v b="$one" 'BEGIN { printf "%.2fx", a / b }') |"
done
