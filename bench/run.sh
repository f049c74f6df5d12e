#!/usr/bin/env bash
# bench/run.sh: medssl against what users would pick instead, side by side on
# this machine in one run (`make bench`).  Writes a markdown report: a table
# of ratios with the absolute figures beside them, then each benchmark's
# details.  A ratio is the peer's time over ours (or our rate over the
# peer's): above 1 we are faster.  Rows whose peer cannot be run are skipped
# with the reason; rows below 1 get a perf profile of our side.
#
#   1 SGEMM: the BLIS kernel set the library chooses vs BLIS's own choice
#   2 one SimCLR training step vs PyTorch (images/s, peak RSS): (a) ResNet-18
#     3x224 N=16, (b) ResNet-50 3x224 N=8, (c) ResNet-18 small x0.5 1x32
#     N=128, (d) ResNet-18 3x64 N=64; interleaved rounds, median and best
#   3 augment vs torchvision's SimCLR chain (bench/augment.sh)
#   4 case-pack vs PIL decoding JPEG photos to 224 (vipsthumbnail beside);
#     4d case-pack on DICOM folders vs pydicom + PIL (bench/dicom.sh)
#   5 auc vs scikit-learn's roc_auc_score (bench/auc.sh)
#   6 stream pass-through vs cat (bench/stream.sh)
#   7 one SimCLR epoch: pair-sample | augment | ntxent-step vs a PyTorch
#     DataLoader with torchvision transforms and the same step
#   8 that pipeline against its slowest stage alone, under each OpenMP wait
#     policy (bench/pipeline.sh; not a peer comparison)
#
# Usage: bench/run.sh [--quick] [-o FILE]
#   --quick   small sizes, one repetition: for developing the benchmarks
#             (numbers not comparable with a full run); prints to stdout only
#   -o FILE   also write the report to FILE (default bench/results.md for a
#             full run)
# The report goes to stdout, progress to stderr.  Needs the tools, helpers and
# benches built (make bench builds them first) and Debian's /usr/bin/python3
# with python3-torch, -torchvision, -sklearn, -pil, -msgpack for the peers.

# `make bench` runs this with sh: continue in bash.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
quick=0 out=""
usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^$/p' "$0" | sed '$d'; }
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        -o) [ $# -ge 2 ] || { usage >&2; exit 2; }; out=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || [ $quick = 1 ] || out=$root/bench/results.md

bin=$root/bin helpers=$root/build/helpers benches=$root/build/bench
py=/usr/bin/python3   # Debian's: the one with torch, sklearn, PIL (not pyenv's)
cores=$(nproc)
for f in "$bin/case-pack" "$bin/augment" "$bin/ntxent-step" "$helpers/mkpack" "$benches/sgemm" \
         "$benches/simclr_step" "$benches/metrics_auc" "$benches/conv_layers"; do
    [ -x "$f" ] || { echo "run.sh: $f is missing: run 'make bench' (it builds everything first)" >&2; exit 1; }
done

if [ $quick = 1 ]; then
    step_runs="--warmup 1 --steps 2" step_rounds=1 d_size=64 d_pairs=8
    a_size=64 a_pairs=4 b_size=64 b_pairs=4 c_pairs=32 e_pairs=4 f_pairs=16
    aug_args=(50 1000) photos=60 auc_n=100000 stream_n=200 e2e_n=512 e2e_batch=64 reps=1 dicom_n=300
else
    step_runs="--warmup 2 --steps 3" step_rounds=3 d_size=64 d_pairs=64
    a_size=224 a_pairs=16 b_size=224 b_pairs=8 c_pairs=128 e_pairs=8 f_pairs=128
    aug_args=() photos=300 auc_n=1000000 stream_n=2000 e2e_n=2048 e2e_batch=128 reps=3 dicom_n=3000
fi

# Why a row was below 1 when last analysed (2026-12-04, AMD EPYC with AVX2),
# shown with its profile when it still is: the profile is measured afresh,
# the analysis is not.
step_reason="Since 2026-12-04 the 3x3 convolutions run as direct convolutions (lib/numerics/conv.h: padded rows on
maps 16 or more wide, channels last below and for strided convs; register-blocked AVX-512/AVX2 kernels),
139-183 GFLOP/s per layer on model (c) against 81-104 for im2col + GEMM, with SGEMM at 135-171 on the
same two threads.  What still runs as im2col + GEMM is ResNet-50's 1x1 convs (most of its FLOPs), the
stems' backward and the 1x1 downsampling convs; batch norm (statistics, apply, ReLU, residual add) is
not fused into the convolutions and takes its own passes over every activation."
casepack_reason="case-pack decodes JPEG through libjpeg-turbo at a DCT scale of M/8 (3/8 for 800x600 -> 224,
where PIL's draft takes 1/2) and resizes with its own antialiased filter.  Since 2026-12-01 freed
memory stays with the process (util_init's mallopt): glibc had handed every image's buffers back to the
kernel, and page faults on this virtual machine cost case-pack 40% of its time (2 threads, 300 photos:
0.9 s -> 0.42 s).  What is left is libjpeg's entropy decoding and IDCT, which PIL runs too, and 0.07 s
of start-up (loading libvips's 100 shared libraries and VIPS_INIT)."
unanalysed="Not analysed: this row was above 1 when the benchmarks were written."
e2e_reason="Since 2026-11-22 pipelines/simclr.sh gives ntxent-step every core (augment costs a few
per cent of a step; rows 8 show the pipeline within a few per cent of ntxent-step alone), so this
row is the speed of the training step at 3x32x32, batch 128: see 2c for where its time goes.
The profile is ntxent-step's."

# Each side runs in its own default environment (DESIGN.md): nothing of ours
# is exported to a peer, and our tools run as they do by default (the
# pipelines set OMP_WAIT_POLICY=passive themselves, pipelines/common.bash).
# "${peer_env[@]}" CMD...: CMD without any setting a user of the peer would
# not have (an array, so that /usr/bin/time can run it too).
peer_env=(env -u OMP_WAIT_POLICY -u MEDSSL_THREADS -u MEDSSL_BLIS_ARCH)

dir=$(mktemp -d /dev/shm/medssl-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT
main=$dir/main.md details=$dir/details.md profiles=$dir/profiles.md
: > "$main"; : > "$details"; : > "$profiles"

say() { echo "run.sh: $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# ge A B: A >= B as numbers
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# wall CMD...: wall-clock seconds of one run (output discarded; a failure
# stops the benchmark with the command's own messages).
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null 2> "$dir/cmd.err" || { cat "$dir/cmd.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
# best_wall N CMD...: the fastest of N runs: other work on a shared machine
# only ever slows a run down.
best_wall() {
    local n=$1 b=1e9 t; shift
    for _ in $(seq "$n"); do
        t=$(wall "$@")
        b=$(awk -v b="$b" -v t="$t" 'BEGIN { print (t < b ? t : b) }')
    done
    echo "$b"
}

# row ID WHAT OURS PEER RATIO [NOTE]: one line of the main table.  RATIO is
# a number (formatted here) or text (a skip).
row() {
    local ratio=$5
    if [[ $ratio =~ ^[0-9.e+-]+$ ]]; then
        ratio=$(awk -v r="$ratio" 'BEGIN { printf (r < 1 ? "**%.2fx**" : "%.2fx"), r }')
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$ratio" "$(load1)" "${6:-}" >> "$main"
}
skip() { # ID WHAT REASON
    say "$1: skipped: $3"
    row "$1" "$2" "–" "–" "skipped" "$3"
}

# profile ID WHY CMD...: perf's top entries of CMD (and its children) into
# the profiles section, for a row below 1.
profile() {
    local id=$1 why=$2; shift 2
    {
        echo "### $id"
        echo
        echo "$why"
        echo
        if command -v perf > /dev/null; then
            echo "\`perf record\` of \`${*#"$root"/}\` (self time, top entries):"
            echo
            echo '```'
            if perf record -q -o "$dir/perf.data" -- "$@" > /dev/null 2> "$dir/perf.err"; then
                perf report -i "$dir/perf.data" --stdio --no-children --sort comm,dso,sym -g none \
                    > "$dir/perf.txt" 2> /dev/null
                awk '/^ +[0-9.]+%/ && n++ < 15' "$dir/perf.txt"
            else
                echo "perf record failed: $(tail -1 "$dir/perf.err")"
            fi
            echo '```'
        else
            echo "(perf is not installed: apt-get install linux-perf for the profile)"
        fi
        echo
    } >> "$profiles"
}

# checked_row ID WHAT OURS PEER RATIO WHY PREPARE CMD...: row(); when RATIO
# is below 1, first a profile of CMD (our side) under WHY, after running
# PREPARE (a command that makes CMD's input, or :).
checked_row() {
    local id=$1 what=$2 ours=$3 peer=$4 ratio=$5 why=$6 prepare=$7 note=""
    shift 7
    if ! ge "$ratio" 1; then
        note="below 1: see the profile of $id"
        "$prepare"
        profile "$id" "$why" "$@"
    fi
    row "$id" "$what" "$ours" "$peer" "$ratio" "$note"
}
# ratio A B: A / B
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }

# md_cell FILE ROW HEADER: the cell in column HEADER (a header cell starting
# with that text) of the first table row whose first cell starts with ROW,
# in a markdown table printed by one of the sub-benchmarks; empty if absent.
# Escaped bars (\|) inside cells are not separators.
md_cell() {
    ROW=$2 HEAD=$3 awk '
        function cells(s) { gsub(/\\\|/, "\034", s); return split(s, f, / *\| */) }
        BEGIN { row = ENVIRON["ROW"]; head = ENVIRON["HEAD"]; gsub(/\\\|/, "\034", row) }
        !/^\|/ { next }
        col == 0 { n = cells($0); for (i = 2; i < n; i++) if (index(f[i], head) == 1) col = i; next }
        { n = cells($0); if (index(f[2], row) == 1) { v = f[col]; gsub(/\034/, "\\|", v); print v; exit } }' "$1"
}

have_torch=1 have_sklearn=1 have_pil=1
$py -c 'import torch, torchvision' 2> /dev/null || have_torch=0
$py -c 'import sklearn' 2> /dev/null || have_sklearn=0
$py -c 'import PIL, numpy, sklearn' 2> /dev/null || have_pil=0
no_torch="PyTorch/torchvision cannot be imported by $py (apt-get install python3-torch python3-torchvision)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg) started=$(date -u '+%Y-%m-%d %H:%M UTC')
say "load average at start: $load_start ($cores cores)"

# --- 1. SGEMM ---------------------------------------------------------------
# On one thread (the kernels alone; a busy machine barely moves the best
# window) and on every core.
{
    echo "## 1. SGEMM (build/bench/sgemm)"
    echo
    echo "Best of five windows of at least 0.1 s each; BLIS's own choice runs in a child process (BLIS fixes its kernels once per process)."
    echo
} >> "$details"
for threads in 1 "$cores"; do
    say "1: sgemm --threads $threads"
    "$benches/sgemm" --threads "$threads" > "$dir/sgemm.txt"
    ours_arch=$(sed -n 1p "$dir/sgemm.txt" | grep -o 'kernels [a-z0-9_]*' | cut -d' ' -f2)
    ours_rate=$(grep -m1 '2048^3' "$dir/sgemm.txt" | awk '{ print $(NF-1) }')
    peer_arch=$(sed -n '/own choice/,$p' "$dir/sgemm.txt" | grep -m1 -o 'kernels [a-z0-9_]*' | cut -d' ' -f2)
    peer_rate=$(sed -n '/own choice/,$p' "$dir/sgemm.txt" | grep -m1 '2048^3' | awk '{ print $(NF-1) }')
    checked_row "1$([ "$threads" = 1 ] && echo a || echo b)" \
        "SGEMM 2048³, $threads thread(s), GFLOP/s: kernels chosen by blas_init ($ours_arch) vs BLIS 0.9.0's own choice ($peer_arch)" \
        "$ours_rate" "$peer_rate" "$(ratio "$ours_rate" "$peer_rate")" "$unanalysed" : "$benches/sgemm" --threads "$threads"
    { echo "--threads $threads:"; echo; echo '```'; cat "$dir/sgemm.txt"; echo '```'; echo; } >> "$details"
done

# --- 2. One SimCLR training step -----------------------------------------------
# step_result FILE: "images/s peak-RSS-MB" from a run's output (its
# "best_step_s" line and /usr/bin/time's line).
step_result() {
    awk '/^best_step_s/ { r = $4 } /^peak_rss_kb/ { m = $2 / 1024 } END { printf "%s %.0f\n", r, m }' "$1"
}
# timed_run OUT CMD...: CMD under /usr/bin/time (peak RSS), all output to OUT.
timed_run() {
    local log=$1; shift
    /usr/bin/time -f 'peak_rss_kb %M' "$@" > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
}
{
    echo "## 2. One training step (SimCLR: 2a-2d; PCRL: 2e, 2f)"
    echo
    echo "2N views forward through the encoder and SimCLR v2's 2-layer projection head (training mode), NT-Xent (tau 0.1), backward, one LARS update, on $cores threads, from uniform-noise input: build/bench/simclr_step against bench/simclr_step_torch.py (torchvision's ResNet), each batch norm and weight gradient summed over the whole batch as PyTorch does (ntxent-step sums them per micro-batch so that any number of ranks gives the same bytes: section 9 times that step); PCRL (2e, 2f): the student on the N views a and the momentum teacher on the N views b, InfoNCE against 16384 keys, the decoder's three reconstructions, backward, SGD, the teacher's average and the queue, build/bench/pcrl_step against bench/pcrl_step_torch.py. images/s = 2N / the fastest step after the warm-up steps ($step_runs); peak RSS of the whole process (/usr/bin/time), which for PyTorch includes the interpreter and its libraries. Step times:"
    echo
} >> "$details"
# step_row ID KIND LABEL MODEL-OPTIONS...: $step_rounds interleaved rounds
# (ours, then PyTorch's) of build/bench/KIND_step and bench/KIND_step_torch.py
# (KIND simclr or pcrl), median and best images/s of each, the largest peak RSS.
step_row() {
    local id=$1 kind=$2 label=$3; shift 3
    local args=("$@" --threads "$cores") ours rss_ours peer_rate rss_peer ratio r o m p q
    local title
    title=$([ "$kind" = pcrl ] && echo PCRL || echo SimCLR)
    say "$id: $title step, $label ($step_rounds rounds)"
    : > "$dir/ours.rates"; : > "$dir/peer.rates"
    for r in $(seq "$step_rounds"); do
        # shellcheck disable=SC2086  # $step_runs is a list of options
        timed_run "$dir/ours.txt" "$benches/${kind}_step" "${args[@]}" $step_runs
        step_result "$dir/ours.txt" >> "$dir/ours.rates"
        echo "$id medssl,  round $r: $(grep -o 'step [0-9]*: [0-9.]* s' "$dir/ours.txt" | cut -d' ' -f3 | paste -sd' ') s" >> "$dir/steps.txt"
        [ $have_torch = 1 ] || continue
        # shellcheck disable=SC2086
        timed_run "$dir/peer.txt" "${peer_env[@]}" $py "$root/bench/${kind}_step_torch.py" "${args[@]}" $step_runs
        step_result "$dir/peer.txt" >> "$dir/peer.rates"
        echo "$id PyTorch, round $r: $(grep -o 'step [0-9]*: [0-9.]* s' "$dir/peer.txt" | cut -d' ' -f3 | paste -sd' ') s" >> "$dir/steps.txt"
    done
    # median best max-rss of a rates file ("images/s rss" lines)
    rates() { sort -g "$1" | awk '{ v[NR] = $1; if ($2 > m) m = $2 } END { printf "%s %s %s\n", v[int((NR + 1) / 2)], v[NR], m }'; }
    read -r ours o rss_ours < <(rates "$dir/ours.rates")
    echo "$id $ours" >> "$dir/step_medians"
    if [ $have_torch = 0 ]; then
        say "$id: no peer: $no_torch"
        row "$id" "$title training step, $label: images/s, median (best) of $step_rounds (peak RSS)" "$ours ($o) ($rss_ours MB)" "–" "skipped" "$no_torch"
        return
    fi
    read -r peer_rate p rss_peer < <(rates "$dir/peer.rates")
    ratio=$(ratio "$ours" "$peer_rate")
    checked_row "$id" "$title training step, $label: images/s, median (best) of $step_rounds interleaved rounds (peak RSS)" \
        "$ours ($o) ($rss_ours MB)" "PyTorch $peer_rate ($p) ($rss_peer MB)" "$ratio" \
        "$title step, $label. ${step_reason_once:-$step_reason}" : \
        "$benches/${kind}_step" "${args[@]}" --warmup 1 --steps 1
    ge "$ratio" 1 || step_reason_once=${step_reason_once:-"The causes are those given under $id."}
}
: > "$dir/steps.txt"; : > "$dir/step_medians"
step_reason_once=""   # the reason is written out under the first step row below 1 only
step_row 2a simclr "ResNet-18, 3×${a_size}×${a_size}, N=$a_pairs" --depth 18 --width 1 --stem large --channels 3 \
    --size "$a_size" --pairs "$a_pairs"
step_row 2b simclr "ResNet-50, 3×${b_size}×${b_size}, N=$b_pairs" --depth 50 --width 1 --stem large --channels 3 \
    --size "$b_size" --pairs "$b_pairs"
step_row 2c simclr "ResNet-18 small stem ×0.5, 1×32×32, N=$c_pairs" --depth 18 --width 0.5 --stem small --channels 1 \
    --size 32 --pairs "$c_pairs"
step_row 2d simclr "ResNet-18, 3×${d_size}×${d_size}, N=$d_pairs" --depth 18 --width 1 --stem large --channels 3 \
    --size "$d_size" --pairs "$d_pairs"
# PCRL (lib/training/pcrl.h against bench/pcrl_step_torch.py): the official setting
# (ResNet-18 on 224 images) and the experiment's model.
step_row 2e pcrl "ResNet-18 + decoder, 3×${a_size}×${a_size}, N=$e_pairs" --depth 18 --width 1 --stem large \
    --channels 3 --size "$a_size" --pairs "$e_pairs"
step_row 2f pcrl "ResNet-18 small stem ×0.5 + decoder, 1×32×32, N=$f_pairs" --depth 18 --width 0.5 --stem small \
    --channels 1 --size 32 --pairs "$f_pairs"
{ echo '```'; cat "$dir/steps.txt"; echo '```'; echo; } >> "$details"

# Per-layer rates of the convolutions and ResNet-50's step against the
# SGEMM limit: a step is about three forward passes (forward, dx, dW), 3 x
# 8.2 GFLOP per 224 image (torchvision's 4.1 G multiply-adds), so the
# SGEMM rate on every core bounds it at rate / 24.5 images/s.
{
    echo "### Convolutions layer by layer (build/bench/conv_layers)"
    echo
    echo "GFLOP/s of each distinct conv shape of the model, on every path that runs it (conv.h: padded rows, channels last, im2col + GEMM; auto is the default rule), $cores threads, best of 9 calls; backward-data is the whole backward's time minus the weight gradient's alone, so it is the noisiest column."
    echo
    r50=$(awk '$1 == "2b" { print $2 }' "$dir/step_medians" 2>/dev/null)
    if [ -n "$r50" ] && [ -n "${ours_rate:-}" ]; then
        echo "ResNet-50's step (2b, median) against the SGEMM limit: $r50 images/s x 24.5 GFLOP = $(awk -v r="$r50" 'BEGIN { printf "%.0f", r * 24.5 }') GFLOP/s, $(awk -v r="$r50" -v g="$ours_rate" 'BEGIN { printf "%.0f%%", 100 * r * 24.5 / g }') of SGEMM 2048^3 on $cores threads ($ours_rate GFLOP/s)."
        echo
    fi
} >> "$details"
layer_models=(c r50)
[ $quick = 1 ] && layer_models=(c)
for model in "${layer_models[@]}"; do
    say "2: conv_layers --model $model"
    layer_args=(--model "$model" --threads "$cores")
    [ $quick = 1 ] && layer_args+=(--batch 32)
    "$benches/conv_layers" "${layer_args[@]}" > "$dir/layers.txt"
    { echo "\`build/bench/conv_layers ${layer_args[*]}\`:"; echo; echo '```'; cat "$dir/layers.txt"; echo '```'; echo; } >> "$details"
done

# --- 3. augment vs torchvision ------------------------------------------------------
if [ ! -f "$root/bench/augment.sh" ]; then
    skip 3 "augment vs torchvision's SimCLR chain" "bench/augment.sh does not exist"
elif [ $have_torch = 0 ]; then
    skip 3 "augment vs torchvision's SimCLR chain" "$no_torch"
else
    say "3: bench/augment.sh ${aug_args[*]}"
    # Inputs for a profile, like augment.sh's (it removes its own).
    aug_input() {
        MKSTREAM_OUT=$dir/aug224.mts "$helpers/mkstream" 200 u8 3 256 256
        MKSTREAM_OUT=$dir/aug32.mts "$helpers/mkstream" 5000 u8 3 32 32
    }
    ROUNDS=$reps bash "$root/bench/augment.sh" "${aug_args[@]}" > "$dir/augment.md"
    for size in 224 32; do
        id=3$([ "$size" = 224 ] && echo a || echo b)
        tv=$(md_cell "$dir/augment.md" "$size x $size, SimCLR" "torchvision, per core")
        ours=$(md_cell "$dir/augment.md" "$size x $size, SimCLR" "augment, per core")
        all=$(md_cell "$dir/augment.md" "$size x $size, SimCLR" "augment, $cores threads")
        if [ -z "$tv" ] || [ -z "$ours" ]; then
            row "$id" "augment, SimCLR chain at $size" "see section 3" "" "" "bench/augment.sh's table has no such row"
            continue
        fi
        checked_row "$id" "augment vs torchvision's SimCLR chain (PIL), ${size}×${size}, images per CPU-second, 1 thread (augment on $cores threads: ${all:-?} img/s wall)" \
            "$ours" "torchvision $tv" "$(ratio "$ours" "$tv")" "$unanalysed" aug_input \
            "$bin/augment" -q -T 1 -s "$size" "$dir/aug$size.mts"
    done
    { echo "## 3. augment vs torchvision (bench/augment.sh ${aug_args[*]})"; echo; cat "$dir/augment.md"; echo; } >> "$details"
fi

# --- 4. case-pack vs PIL ---------------------------------------------------------
if [ $have_pil = 0 ]; then
    skip 4 "case-pack vs PIL" "PIL, numpy or scikit-learn (its sample photos) cannot be imported by $py"
else
    say "4: $photos JPEG photos: case-pack, PIL, vipsthumbnail"
    $py "$root/bench/make_photos.py" "$dir/photos" "$photos"
    jpeg_mb=$(du -sm "$dir/photos" | cut -f1)
    t1=$(best_wall "$reps" "$bin/case-pack" -q -T 1 --size 224 --crop --dir "$dir/photos" -o "$dir/photos.pack")
    tn=$(best_wall "$reps" "$bin/case-pack" -q -T "$cores" --size 224 --crop --dir "$dir/photos" -o "$dir/photos.pack")
    read -r _ tpil _ < <($py "$root/bench/resize_pil.py" "$dir/photos" "$dir/photos.pil" "$reps")
    mkdir -p "$dir/thumbs"
    tvt=$(VIPS_CONCURRENCY=1 best_wall "$reps" vipsthumbnail --size 224x224 --smartcrop centre \
          -o "$dir/thumbs/%s.v" "$dir"/photos/*/*.jpg)
    rate() { awk -v n="$photos" -v t="$1" 'BEGIN { printf "%.0f img/s (%.2f s)", n / t, t }'; }
    checked_row 4a "case-pack -T 1 vs PIL (draft decode, resize, crop; one process): $photos JPEG photos 800×600 to 224×224" \
        "$(rate "$t1")" "PIL $(rate "$tpil")" "$(ratio "$tpil" "$t1")" "case-pack, one thread, against PIL. $casepack_reason" : \
        "$bin/case-pack" -q -T 1 --size 224 --crop --dir "$dir/photos" -o "$dir/photos.pack"
    checked_row 4b "case-pack -T $cores (all cores) vs PIL (one process); target ≥ 3x" \
        "$(rate "$tn")" "PIL $(rate "$tpil")" "$(ratio "$tpil" "$tn")" \
        "case-pack on every core against PIL on one: the cost per image is that of 4a (see there when it is below 1); more threads help only as far as the cores are free." : \
        "$bin/case-pack" -q -T "$cores" --size 224 --crop --dir "$dir/photos" -o "$dir/photos.pack"
    checked_row 4c "reference: vipsthumbnail --size 224x224 --smartcrop centre, one process, one libvips thread, vs case-pack -T 1" \
        "$(rate "$t1")" "vipsthumbnail $(rate "$tvt")" "$(ratio "$tvt" "$t1")" \
        "case-pack against vipsthumbnail, libvips's own tool for this job (case-pack decodes JPEG through libjpeg-turbo, see 4a, and also lists the folders, converts to planar layout and writes the pack)." : \
        "$bin/case-pack" -q -T 1 --size 224 --crop --dir "$dir/photos" -o "$dir/photos.pack"
    {
        echo "## 4. case-pack vs PIL"
        echo
        echo "$photos JPEG files ($jpeg_mb MB, 800×600, quality 90) cut from scikit-learn's sample photographs with sensor-like noise (bench/make_photos.py; this machine has no photo collection), one folder per case, in /dev/shm. Best wall time of $reps runs. case-pack: \`case-pack -q -T T --size 224 --crop --dir ROOT\` (the whole tool: listing, decoding, writing the pack). PIL: bench/resize_pil.py (Image.draft, resize, centre crop, pixels appended to one file; interpreter start-up not counted). vipsthumbnail: all files in one process, VIPS_CONCURRENCY=1, .v output."
        echo
    } >> "$details"
fi

# --- 4d. case-pack on DICOM vs pydicom + PIL ---------------------------------------------
if ! $py -c 'import pydicom, PIL, numpy' 2> /dev/null; then
    skip 4d "case-pack on DICOM vs pydicom + PIL" "pydicom, PIL or numpy cannot be imported by $py (apt-get install python3-pydicom)"
else
    say "4d: bench/dicom.sh $dicom_n $reps"
    bash "$root/bench/dicom.sh" "$dicom_n" "$reps" > "$dir/dicom.md"
    for set in small large; do
        IFS='|' read -r _ _ files ours _ peer ratio _ < <(grep "^| $set |" "$dir/dicom.md")
        row "4d-$set" "case-pack --layout dicom -T $cores vs pydicom + PIL (one process): $(echo $files) $set files (decode, rescale, window, resize to 224, by patient); target ≥ 3x" \
            "$(echo $ours)" "pydicom $(echo $peer)" "$(echo $ratio | tr -d x)"
    done
    { echo "## 4d. case-pack on DICOM vs pydicom + PIL (bench/dicom.sh $dicom_n $reps)"; echo
      echo "Folders made from pydicom's sample files with new patient ids and UIDs (bench/dicom_pydicom.py make): small = CT_small, MR_small and MR_small_RLE in turn (64-128 pixels: per-file costs), large = CT_small's pixels repeated to 1024 x 1024 with a window (a CR/DX-sized file). The peer, bench/dicom_pydicom.py pack: pixel_array, rescale, the first window as the standard's LINEAR (else percentiles), MONOCHROME1 inverted, PIL's bilinear resize to 224, images kept by PatientID, interpreter start-up included. Wall time of whole commands, interleaved rounds."
      echo; cat "$dir/dicom.md"; echo; } >> "$details"
fi

# --- 5. auc vs scikit-learn ---------------------------------------------------------
if [ $have_sklearn = 0 ]; then
    skip 5 "auc vs scikit-learn" "scikit-learn cannot be imported by $py (apt-get install python3-sklearn)"
else
    say "5: bench/auc.sh $auc_n"
    bash "$root/bench/auc.sh" "$auc_n" > "$dir/auc.md"
    # An input for a profile of the in-memory AUC, as auc.sh makes its own.
    auc_input() {
        $py -c 'import sys, numpy as np
n = int(sys.argv[2]); r = np.random.default_rng(1); y = (r.random(n) < 0.3).astype(np.uint8)
open(sys.argv[1], "wb").write((r.normal(0, 1, n) + 0.8 * y).astype(np.float32).tobytes() + y.tobytes())' \
            "$dir/auc.raw" "$auc_n"
    }
    for kind in continuous ties; do
        id=5$([ "$kind" = continuous ] && echo a || echo b)
        sk=$(md_cell "$dir/auc.md" "$kind" "sklearn roc_auc_score")
        mem=$(md_cell "$dir/auc.md" "$kind" "metrics_auc")
        tool=$(md_cell "$dir/auc.md" "$kind" "auc tool")
        diff=$(md_cell "$dir/auc.md" "$kind" "difference")
        if [ -z "$sk" ] || [ -z "$mem" ]; then
            row "$id" "auc, $kind scores" "see section 5" "" "" "bench/auc.sh's table has no such row"
            continue
        fi
        sk=${sk% s} mem=${mem%% s*}
        checked_row "$id" "ROC AUC of $auc_n $kind scores: the library in memory (the auc tool reading a stream of $auc_n records: $tool) vs roc_auc_score on numpy arrays; \|difference\| $diff" \
            "$mem s" "sklearn $sk s" "$(ratio "$sk" "$mem")" "$unanalysed" auc_input \
            "$benches/metrics_auc" "$dir/auc.raw" "$auc_n"
    done
    { echo "## 5. auc vs scikit-learn (bench/auc.sh $auc_n)"; echo; cat "$dir/auc.md"; echo; } >> "$details"
fi

# --- 6. stream vs cat ---------------------------------------------------------------
say "6: bench/stream.sh $stream_n"
bash "$root/bench/stream.sh" "$stream_n" > "$dir/stream.md"
cat_rate=$(md_cell "$dir/stream.md" 'cat x.mts \| cat' "MB/s")
# An input for a profile, like stream.sh's (it removes its own).
stream_input() { MKSTREAM_OUT=$dir/stream.mts "$helpers/mkstream" "$stream_n" u8 3 224 224; }
for what in cat count; do
    id=6$([ $what = cat ] && echo a || echo b)
    label=$([ $what = cat ] && echo "mts cat (parse + write, raw)" || echo "mts count (parse only)")
    r=$(md_cell "$dir/stream.md" "cat x.mts \\| $label" "MB/s")
    if [ -z "$r" ] || [ -z "$cat_rate" ]; then
        row "$id" "$label vs cat" "see section 6" "" "" "bench/stream.sh's table has no such row"
        continue
    fi
    checked_row "$id" "stream through a pipe, u8 3×224×224 records, MB/s: cat x.mts \\| $label vs cat x.mts \\| cat" \
        "$r MB/s" "cat $cat_rate MB/s" "$(ratio "$r" "$cat_rate")" \
        "A pass-through cannot beat the pipe itself by much: cat | cat is the limit, and a few per cent either way is the noise of a shared machine. $unanalysed" \
        stream_input "$bin/mts" $what "$dir/stream.mts"
done
{ echo "## 6. stream pass-through vs cat (bench/stream.sh $stream_n)"; echo; cat "$dir/stream.md"; echo; } >> "$details"

# --- 7. One SimCLR epoch, end to end -------------------------------------------
say "7: one SimCLR epoch of $e2e_n images, batch $e2e_batch"
"$helpers/mkpack" "$dir/e2e.pack" "$e2e_n" 1 10 3 32 32 stripes
model=(--model resnet18 --width 0.5 --stem small --head-layers 2)
# What a user runs: the pipeline script, with its split of the cores.
ours_cmd=(bash "$root/pipelines/simclr.sh" --epochs 1 --batch "$e2e_batch" --size 32 --split all --seed 1
          "$dir/e2e.pack" "$dir/e2e.ckpt" -- "${model[@]}" -q)
t_ours=$(best_wall 2 "${ours_cmd[@]}")
ours=$(awk -v n="$e2e_n" -v t="$t_ours" 'BEGIN { printf "%.1f", 2 * n / t }')
if [ $have_torch = 0 ]; then
    say "7: no peer: $no_torch"
    row 7 "one SimCLR epoch, $e2e_n images: pipelines/simclr.sh; views/s" "$ours ($(printf '%.1f' "$t_ours") s)" "–" \
        "skipped" "$no_torch"
else
    "$bin/pair-sample" -q --mode single --split all --no-shuffle -o "$dir/e2e-images.mts" "$dir/e2e.pack"
    t_peer=1e9
    for _ in 1 2; do
        t=$("${peer_env[@]}" $py "$root/bench/simclr_epoch_torch.py" "$dir/e2e-images.mts" \
            --batch "$e2e_batch" --threads "$cores" | awk '{ print $2 }')
        t_peer=$(awk -v b="$t_peer" -v t="$t" 'BEGIN { print (t < b ? t : b) }')
    done
    peer=$(awk -v n="$e2e_n" -v t="$t_peer" 'BEGIN { printf "%.1f", 2 * n / t }')
    checked_row 7 "one SimCLR epoch, $e2e_n images 3×32×32, ResNet-18 small stem ×0.5, batch $e2e_batch: pipelines/simclr.sh (pair-sample \\| augment \\| ntxent-step) vs a DataLoader (2 workers) + torchvision transforms + the same step; views/s" \
        "$ours ($(printf '%.1f' "$t_ours") s)" "PyTorch $peer ($(printf '%.1f' "$t_peer") s)" "$(ratio "$t_peer" "$t_ours")" \
        "One SimCLR epoch. $e2e_reason" : "${ours_cmd[@]}"
fi
{
    echo "## 7. One SimCLR epoch"
    echo
    echo "A pack of $e2e_n synthetic 3×32×32 images (build/helpers/mkpack ... stripes), every image once as a pair, batch $e2e_batch, ResNet-18 small stem ×0.5 with a 2-layer head, SimCLR's augmentations at 32. Ours: \`pipelines/simclr.sh --epochs 1 --batch $e2e_batch --size 32 --split all\` (pair-sample -T 1 | augment -T 1 | ntxent-step -T $cores), wall time of the whole pipeline including start-up and the checkpoint write. PyTorch: bench/simclr_epoch_torch.py on the same images (in memory as PIL images), DataLoader with 2 workers, torch.set_num_threads($cores); the epoch's wall time from starting the workers to the last update (imports and model construction not counted). Best of 2 runs each; views/s = 2 × images / time."
    echo
} >> "$details"

# --- 8. A pipeline against its slowest stage -----------------------------------
say "8: bench/pipeline.sh"
bash "$root/bench/pipeline.sh" $([ $quick = 1 ] && echo --quick) > "$dir/pipeline.md"
for setting in 32 96; do
    # The last column is the passive pipeline's time over its slowest stage's.
    r=$(md_cell "$dir/pipeline.md" "3×$setting×$setting" "passive pipeline / slowest")
    if [ -z "$r" ]; then
        row "8-$setting" "pipeline vs its slowest stage at $setting" "see section 8" "" "" "bench/pipeline.sh's table has no such row"
        continue
    fi
    t_pipe=$(md_cell "$dir/pipeline.md" "3×$setting×$setting" "pipeline, trainer -T $cores, passive")
    t_slow=$(md_cell "$dir/pipeline.md" "3×$setting×$setting" "slowest stage alone")
    row "8-$setting" "pair-sample \\| augment \\| ntxent-step at ${setting}×${setting} (pipelines/simclr.sh's threads: the trainer on every core; OMP_WAIT_POLICY=passive) vs its slowest stage alone" \
        "pipeline $t_pipe" "slowest stage $t_slow" "$(ratio 1 "$r")" "Not a peer: 1 means the pipeline costs nothing over its bottleneck. Section 8 has the times and the wait policies."
done
{
    echo "## 8. A pipeline against its slowest stage (bench/pipeline.sh)"
    echo
    echo "Each stage timed alone on its saved input, then the whole pipeline with the trainer on all cores but one (pipelines/simclr.sh's split until 2026-11-22) and on every core (its split since), under each OpenMP wait policy; best of 2. The last column: the passive pipeline on every core over its slowest stage alone (1.00: no cost)."
    echo
    cat "$dir/pipeline.md"
    echo
} >> "$details"

# --- 9. Many processes (bench/scaling.sh) ------------------------------------------
if [ $quick = 0 ] && command -v mpirun > /dev/null; then
    say "scaling over 2 ranks (bench/scaling.sh 3)"
    if "$root/bench/scaling.sh" 3 > "$dir/scaling.md" 2> "$dir/scaling.err"; then
        {
            echo "## 9. Many processes: 1 rank x 1 thread against 2 ranks x 1 thread (bench/scaling.sh 3)"
            echo
            echo "One SimCLR step with micro-batches (as ntxent-step takes them), build/bench/simclr_step under mpirun -np 2 --bind-to core, at the same global batch; 3 interleaved rounds. Issue 17's target: at least 90% efficiency."
            echo
            cat "$dir/scaling.md"
            echo
        } >> "$details"
    else
        { echo "## 9. Many processes"; echo; echo "bench/scaling.sh failed: $(tail -n 3 "$dir/scaling.err")"; echo; } >> "$details"
    fi
fi

# --- The report -------------------------------------------------------------------
{
    echo "# medssl benchmarks against the peers"
    echo
    echo "$started, $(lscpu | sed -n 's/^Model name: *//p') (family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n 1), model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2, no AVX-512')$(grep -q amx_tile /proc/cpuinfo && echo ', AMX')), $cores cores, load average at start $load_start (at the end $(cut -d' ' -f1-3 /proc/loadavg)); medssl $(git -C "$root" describe --always --dirty 2> /dev/null || echo '(no git)')$([ $quick = 1 ] && echo '; --quick: small sizes, not comparable with a full run')."
    echo
    echo "Ratio: the peer's time over ours (our rate over the peer's), so above 1 we are faster; **bold** below 1. The load column is the 1-minute load average when the row was measured (the machine is shared). Each side in its own default environment: the peers without any setting of ours (no OMP_WAIT_POLICY, MEDSSL_*), PyTorch with torch.set_num_threads(cores) only; our tools as they run by default (the pipelines set OMP_WAIT_POLICY=passive themselves)."
    echo
    echo "| # | benchmark | medssl | peer | ratio | load | notes |"
    echo "|---|---|---:|---:|---:|---:|---|"
    cat "$main"
    echo
    if [ -s "$profiles" ]; then
        echo "## Rows below 1: profiles of our side"
        echo
        cat "$profiles"
    fi
    cat "$details"
} > "$dir/report.md"
if [ -n "$out" ]; then
    cp "$dir/report.md" "$out.tmp" && mv "$out.tmp" "$out"
    say "report written to $out"
fi
cat "$dir/report.md"
