#!/usr/bin/env bash
# scaling.sh: data-parallel efficiency on this machine, issue 17's measure:
# one SimCLR step (build/bench/simclr_step, micro-batches as ntxent-step
# takes them) on 1 rank x 1 thread against 2 ranks x 1 thread (mpirun -np 2,
# each rank pinned to a core) at the same global batch (and, for reference,
# 1 process x 2 threads), for steps (b)
# ResNet-50 3x224 N=8 and (c) ResNet-18 small x0.5 1x32 N=128 of make
# bench, in interleaved rounds.  Prints a markdown table (medians and best
# of the rounds' best steps) and, from the 2-rank runs, the seconds of each
# exchange per step (median over the timed steps of every round).
#
#   bench/scaling.sh [ROUNDS]      (default 3; run from the top of a built checkout)
set -eu -o pipefail
rounds=${1:-3}
bin=build/bench/simclr_step
[ -x "$bin" ] || { echo "scaling.sh: $bin: not built (make bench)" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "scaling.sh: no mpirun (openmpi-bin)" >&2; exit 1; }
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
export OMP_WAIT_POLICY=passive
out=$(mktemp -d /tmp/medssl-scaling-XXXXXX)
trap 'rm -rf "$out"' EXIT

declare -A args micro
args[b]="--depth 50 --width 1 --stem large --channels 3 --size 224 --pairs 8 --warmup 1 --steps 3"
micro[b]=1
args[c]="--depth 18 --width 0.5 --stem small --channels 1 --size 32 --pairs 128 --warmup 2 --steps 5"
micro[c]=16
for round in $(seq "$rounds"); do
    for s in b c; do
        # shellcheck disable=SC2086
        "$bin" ${args[$s]} --threads 1 --micro "${micro[$s]}" > "$out/$s.1.$round"
        # shellcheck disable=SC2086
        timeout 1800 mpirun "${root[@]}" --bind-to core -np 2 "$bin" ${args[$s]} --threads 1 --micro "${micro[$s]}" \
            > "$out/$s.2.$round"
        # shellcheck disable=SC2086
        "$bin" ${args[$s]} --threads 2 --micro "${micro[$s]}" > "$out/$s.t.$round"
    done
done

rate() { grep -h '^best_step_s' "$@" | awk '{ print $4 }' | sort -g; }
median() { awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
best() { tail -n 1; }
echo "| step | 1 rank x 1 thread img/s (median, best) | 2 ranks x 1 thread img/s (median, best) | efficiency (medians) | for reference: 1 process x 2 threads |"
echo "|---|---:|---:|---:|---:|"
for s in b c; do
    m1=$(rate "$out/$s.1."* | median) b1=$(rate "$out/$s.1."* | best)
    m2=$(rate "$out/$s.2."* | median) b2=$(rate "$out/$s.2."* | best)
    mt=$(rate "$out/$s.t."* | median) bt=$(rate "$out/$s.t."* | best)
    eff=$(awk -v a="$m1" -v b="$m2" 'BEGIN { printf "%.0f%%", 100 * b / (2 * a) }')
    name=$([ $s = b ] && echo "(b) ResNet-50 3x224, N=8" || echo "(c) ResNet-18 small x0.5 1x32, N=128")
    echo "| $name | $m1, $b1 | $m2, $b2 | $eff | $mt, $bt |"
done
echo
echo "Exchanges per step on 2 ranks (rank 0, median of the timed steps), seconds:"
echo
echo "| step | step | all exchanges | gather of projections | batch-norm sums | gradient sums | flags | conversions (not MPI) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# col NAME: one value per timed 2-rank step of the current s, from the
# field after NAME (two after "step", "gradient" and "batch-norm").
col() {
    grep -h '^  step' "$out/$s.2."* | grep -v warm-up | sed 's/[,;:]/ /g' |
        awk -v name="$1" '{ for (i = 1; i < NF; i++) if ($i == name) { print (name == "step" || name == "gradient" || name == "batch-norm") ? $(i + 2) : $(i + 1); break } }' |
        sort -g | median
}
for s in b c; do
    printf '| (%s) | %.3f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n' "$s" "$(col step)" "$(col exchanges)" \
        "$(col gather)" "$(col batch-norm)" "$(col gradient)" "$(col flags)" "$(col conversions)"
done

# --- Past this machine: a model from the figures above ----------------------------
# Weak scaling: every rank is a node like this one (1 process x 2 threads,
# its step time t measured above) holding the same local batch, so the
# global batch grows with K.  Per step each rank hands S bytes to C
# collectives (counted by lib/numerics/dist.c in the 2-rank runs; the vectors are
# whole, so S and C do not depend on K).  Assumed: an all-reduce of n bytes
# costs 2(K-1)/K n/BW + 2 log2(K) alpha (Rabenseifner / ring), with alpha
# 25 us at 10 Gbit/s (TCP over Ethernet) and 3 us at 100 Gbit/s (RDMA);
# nothing is overlapped (each reduction waits for its layer, as built);
# every rank computes the whole NT-Xent loss, 3 GEMMs of (2B)^2 x 128,
# at the 2048^3 SGEMM rate R measured here.
sgemm=build/bench/sgemm
rate_gflops=$("$sgemm" --threads 2 2> /dev/null | awk '/2048\^3/ { print $(NF - 1); exit }') || rate_gflops=""
[ -n "$rate_gflops" ] || { echo; echo "(no build/bench/sgemm: the prediction below needs it; make bench builds it)"; exit 0; }
echo
echo "Predicted efficiency past this machine: weak scaling (K nodes like this one, each with the local batch above, so the global batch is K times it); per step each rank hands the bytes below to the collectives below (counted in the 2-rank runs; the vectors are whole, so neither depends on K); an all-reduce of n bytes costs 2(K-1)/K n/BW + 2 log2(K) alpha, alpha assumed 25 us at 10 Gbit/s (TCP) and 3 us at 100 Gbit/s (RDMA); nothing overlapped, as built; every rank computes the whole NT-Xent loss of the global batch (3 GEMMs of (2B)^2 x 128) at the SGEMM rate measured here, $rate_gflops GFLOP/s; the last column divides that loss by K (split by rows):"
echo
echo "| step | t per step (1 x 2 threads) | bytes per step per rank | collectives per step | network | K = 8 | K = 64 | K = 256 | K = 256, the loss split over the ranks |"
echo "|---|---:|---:|---:|---|---:|---:|---:|---:|"
for s in b c; do
    pairs=$([ $s = b ] && echo 8 || echo 128)
    images=$((2 * pairs))
    t=$(rate "$out/$s.t."* | median | awk -v n="$images" '{ printf "%.3f", n / $1 }')
    line=$(grep -h '^  step' "$out/$s.2."* | grep -v warm-up | tail -n 1 | sed 's/[,;:]/ /g')
    bytes=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "bytes") print $i }' <<<"$line")
    calls=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "calls") print $i }' <<<"$line")
    for net in "10 Gbit/s:1.25e9:25e-6" "100 Gbit/s:12.5e9:3e-6"; do
        IFS=: read -r name bw alpha <<<"$net"
        awk -v s="($s)" -v t="$t" -v S="$bytes" -v C="$calls" -v bw="$bw" -v a="$alpha" -v net="$name" \
            -v p="$pairs" -v R="$rate_gflops" 'BEGIN {
            printf "| %s | %.2f s | %.1f MB | %d | %s |", s, t, S / 1e6, C, net
            split("8 64 256", ks, " ")
            for (j = 1; j <= 3; j++) {
                K = ks[j]; B = p * K
                comm = 2 * (K - 1) / K * S / bw + C * 2 * log(K) / log(2) * a
                # the loss on the global batch, less the one on the local batch (in t already)
                loss = 3 * 2 * ((2 * B) ^ 2 - (2 * p) ^ 2) * 128 / (R * 1e9)
                printf " %.0f%% |", 100 * t / (t + comm + loss)
            }
            printf " %.0f%% |\n", 100 * t / (t + comm + loss / K) }'
    done
done
