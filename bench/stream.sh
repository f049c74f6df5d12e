#!/usr/bin/env bash
# Stream throughput through a pipe: 224x224x3 u8 image records, raw and zstd,
# beside `cat` on the same bytes (the limit).  Prints a markdown table.
# Usage: bench/stream.sh [RECORDS]   (default 2000 records = 301 MB)
set -euo pipefail
n=${1:-2000}
bin=$(cd "$(dirname "$0")/.." && pwd)/bin
helpers=$(cd "$(dirname "$0")/.." && pwd)/build/helpers
dir=$(mktemp -d /dev/shm/medssl-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
MKSTREAM_OUT=$dir/img.mts "$helpers/mkstream" "$n" u8 3 224 224
bytes=$(stat -c %s "$dir/img.mts")
"$bin/mts" cat -z 1 -o "$dir/img1.mts.zst" "$dir/img.mts"
"$bin/mts" cat -z 3 -o "$dir/img3.mts.zst" "$dir/img.mts"

# best of 3 wall times, in seconds
best() {
    local t0 t1 all=""
    for _ in 1 2 3; do
        t0=$(date +%s.%N); bash -c "$1"; t1=$(date +%s.%N)
        all="$all $t0 $t1"
    done
    awk -v a="$all" 'BEGIN { n = split(a, t, " "); b = 1e9
        for (i = 1; i < n; i += 2) if (t[i+1] - t[i] < b) b = t[i+1] - t[i]; print b }'
}
row() { # name seconds [reference-seconds]
    awk -v name="$1" -v t="$2" -v ref="${3:-}" -v bytes="$bytes" 'BEGIN {
        if (ref != "") printf "| %s | %.0f | %.0f%% |\n", name, bytes / t / 1e6, 100 * ref / t
        else printf "| %s | %.0f | |\n", name, bytes / t / 1e6 }'
}
echo "$n records of u8[3,224,224], $((bytes / 1000000)) MB raw;" \
     "zstd-1 $(( $(stat -c %s "$dir/img1.mts.zst") * 100 / bytes ))%," \
     "zstd-3 $(( $(stat -c %s "$dir/img3.mts.zst") * 100 / bytes ))% of that"
echo
echo "| pipeline (MB/s of uncompressed stream) | MB/s | vs cat |"
echo "|---|---:|---:|"
tcat=$(best "cat $dir/img.mts | cat > /dev/null")
row 'cat x.mts \| cat (the limit)' "$tcat"
row 'cat x.mts \| mts cat (parse + write, raw)' "$(best "cat $dir/img.mts | $bin/mts cat > /dev/null")" "$tcat"
row 'cat x.mts \| mts count (parse only)' "$(best "cat $dir/img.mts | $bin/mts count > /dev/null")" "$tcat"
row 'mts cat -z 1 (compressed write)' "$(best "cat $dir/img.mts | $bin/mts cat -z 1 > /dev/null")"
row 'mts cat -z 1 -T 2 (2 zstd workers)' "$(best "cat $dir/img.mts | $bin/mts cat -z 1 -T 2 > /dev/null")"
row 'mts cat -z 3 (compressed write)' "$(best "cat $dir/img.mts | $bin/mts cat -z 3 > /dev/null")"
row 'mts cat -z 3 -T 2 (2 zstd workers)' "$(best "cat $dir/img.mts | $bin/mts cat -z 3 -T 2 > /dev/null")"
row 'cat x.mts.zst(1) \| mts count (decompress + parse)' "$(best "cat $dir/img1.mts.zst | $bin/mts count > /dev/null")"
row 'cat x.mts.zst(3) \| mts count (decompress + parse)' "$(best "cat $dir/img3.mts.zst | $bin/mts count > /dev/null")"
