#!/usr/bin/env bash
# Runs libFuzzer targets one after another, each for SECONDS, from the seeds
# (build/fuzz/seeds/NAME, made by mkseeds) and the committed regression
# inputs (tests/fuzz/corpus/NAME), at the lowest CPU priority.  Prints one
# line per target: executions, corpus size, and how it ended.
#
#   tests/fuzz/run.sh [-c CORPUS_ROOT] SECONDS build/fuzz/fuzz_NAME...
#
# New inputs go to CORPUS_ROOT/NAME (default build/fuzz/corpus/NAME, kept
# between runs), libFuzzer's output to CORPUS_ROOT/NAME.log, crashes to
# build/fuzz/crashes/NAME-*.  Exits 1 when a target crashed, leaked or timed
# out.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
corpus_root=$top/build/fuzz/corpus
if [ "${1:-}" = "-c" ]; then
    corpus_root=$2
    shift 2
fi
[ $# -ge 2 ] || { echo "usage: run.sh [-c CORPUS_ROOT] SECONDS TARGET..." >&2; exit 2; }
seconds=$1
shift
crashes=$top/build/fuzz/crashes
mkdir -p "$crashes"
# One thread: libFuzzer runs one input at a time, and the machine is shared.
export OMP_NUM_THREADS=1 MEDSSL_THREADS=1
failed=0
for target in "$@"; do
    name=${target##*/fuzz_}
    corpus=$corpus_root/$name
    mkdir -p "$corpus"
    dirs=("$corpus" "$top/build/fuzz/seeds/$name")
    [ -d "$top/tests/fuzz/corpus/$name" ] && dirs+=("$top/tests/fuzz/corpus/$name")
    dict=()
    case $name in stream | pack | ckpt) dict=(-dict="$top/tests/fuzz/msgpack.dict") ;; esac
    log=$corpus_root/$name.log
    rc=0
    nice -n 19 "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/$name-" "${dict[@]}" "${dirs[@]}" > "$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    files=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        end="no crash"
    else
        failed=1
        end="FAILED (status $rc): $(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|deadly signal|Timeout|leak' "$log" || true);"
        end+=" input: $(sed -n 's/.*Test unit written to //p' "$log" | tail -1); log: $log"
    fi
    printf '%-8s %10s executions in %s s, corpus %d files: %s\n' "$name" "${runs:-?}" "$seconds" "$files" "$end"
done
exit $failed
