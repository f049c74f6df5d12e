#!/usr/bin/env bash
# A SimCLR pipeline against its slowest stage run alone: is
# `pair-sample | augment | ntxent-step` as fast as its bottleneck, and what
# the OpenMP wait policy does to it.  Prints a markdown table.
#
# The stages are pipelines/simclr.sh's: pair-sample -T 1 | augment -T 1 |
# ntxent-step, on synthetic 3-channel images.  Each stage is first timed
# alone on its own saved input (the trainer on all cores but one, and on
# every core), then the whole pipeline: the trainer on all cores but one
# (passive), and on every core with libgomp's default wait policy (threads
# spin for a while before they sleep), OMP_WAIT_POLICY=active and =passive
# (what the pipeline scripts set).  Two settings: 32x32 images into a small-stem ResNet-18 x0.5 (the
# trainer dominates) and 96x96 into a large-stem ResNet-18 x0.5 with blur
# (augment's share grows).
#
# Usage: bench/pipeline.sh [--quick]   (needs the tools and helpers built)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin helpers=$root/build/helpers
cores=$(nproc)
quick=0
[ "${1:-}" = --quick ] && quick=1
dir=$(mktemp -d /dev/shm/medssl-bench-pipe-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
reps=$([ $quick = 1 ] && echo 1 || echo 2)
train_threads=$((cores > 1 ? cores - 1 : 1))

# best CMD...: the fastest wall time of $reps runs (stdout discarded).
best() {
    local b=1e9 t0 t1
    for _ in $(seq "$reps"); do
        t0=$(date +%s.%N)
        "$@" > /dev/null 2> "$dir/err" || { cat "$dir/err" >&2; exit 1; }
        t1=$(date +%s.%N)
        b=$(awk -v b="$b" -v t="$(awk -v a="$t0" -v c="$t1" 'BEGIN { print c - a }')" \
            'BEGIN { print (t < b ? t : b) }')
    done
    printf '%.2f\n' "$b"
}

# Both the pipeline and its stages, so that a policy applies to all of them.
pipeline() { # POLICY TRAINER_THREADS: "default" leaves OMP_WAIT_POLICY unset
    local policy=$1 threads=$2
    (
        if [ "$policy" = default ]; then unset OMP_WAIT_POLICY; else export OMP_WAIT_POLICY=$policy; fi
        "$bin/pair-sample" -q --mode simclr --split all --seed 1 -T 1 "$dir/in.pack" |
            "$bin/augment" -q --seed 2 --size "$size" -T 1 "${aug[@]}" |
            "$bin/ntxent-step" -q --batch "$batch" -T "$threads" "${model[@]}" -o "$dir/p.ckpt"
    )
}

echo "| setting | pair-sample alone | augment alone (-T 1) | ntxent-step alone (-T $train_threads) | ntxent-step alone (-T $cores) | pipeline, trainer -T $train_threads, passive | pipeline, trainer -T $cores, libgomp default | pipeline, trainer -T $cores, active | pipeline, trainer -T $cores, passive | slowest stage alone (-T $cores) | passive pipeline / slowest stage |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for setting in 32 96; do
    if [ "$setting" = 32 ]; then
        n=$([ $quick = 1 ] && echo 256 || echo 2048) size=32 batch=128
        model=(--model resnet18 --width 0.5 --stem small --head-layers 2)
        aug=(--blur-p 0)
        label="3×32×32, ResNet-18 small stem ×0.5, batch 128, $n images"
    else
        n=$([ $quick = 1 ] && echo 64 || echo 512) size=96 batch=32
        model=(--model resnet18 --width 0.5 --stem large --head-layers 2)
        aug=()
        label="3×96×96 (from 128), ResNet-18 large stem ×0.5, batch 32, blur on, $n images"
    fi
    "$helpers/mkpack" "$dir/in.pack" "$n" 1 10 3 $((size == 32 ? 32 : 128)) $((size == 32 ? 32 : 128)) stripes
    export OMP_WAIT_POLICY=passive
    t_pairs=$(best "$bin/pair-sample" -q --mode simclr --split all --seed 1 -T 1 -o "$dir/pairs.mts" "$dir/in.pack")
    t_aug=$(best "$bin/augment" -q --seed 2 --size "$size" -T 1 "${aug[@]}" -o "$dir/aug.mts" "$dir/pairs.mts")
    t_train=$(best "$bin/ntxent-step" -q --batch "$batch" -T "$train_threads" "${model[@]}" -o "$dir/a.ckpt" "$dir/aug.mts")
    t_train_all=$(best "$bin/ntxent-step" -q --batch "$batch" -T "$cores" "${model[@]}" -o "$dir/a.ckpt" "$dir/aug.mts")
    rm -f "$dir/pairs.mts" "$dir/aug.mts"
    t_split=$(best pipeline passive "$train_threads")
    t_default=$(best pipeline default "$cores")
    t_active=$(best pipeline active "$cores")
    t_passive=$(best pipeline passive "$cores")
    slowest=$(printf '%s\n' "$t_pairs" "$t_aug" "$t_train_all" | sort -g | tail -1)
    echo "| $label | $t_pairs s | $t_aug s | $t_train s | $t_train_all s | $t_split s | $t_default s | $t_active s | $t_passive s | $slowest s | $(awk -v a="$t_passive" -v b="$slowest" 'BEGIN { printf "%.2f", a / b }') |"
done
