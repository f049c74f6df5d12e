#!/usr/bin/env bash
# auc against scikit-learn's roc_auc_score on 10^6 binary scores (one label):
# time and equality of the result, on continuous scores (few ties) and on
# scores rounded to 1000 levels (ties everywhere).  Prints a markdown table.
# Usage: bench/auc.sh [N]   (default 1000000); needs python3-sklearn.
set -euo pipefail
n=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /dev/shm/medssl-bench-XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$dir"' EXIT

# For each kind of data: a score stream for the tool, the same numbers as a
# raw file for the in-memory C timing, and sklearn's time and value.
/usr/bin/python3 - "$dir" "$n" <<'EOF'
import sys, time
import msgpack
import numpy as np
from sklearn.metrics import roc_auc_score

out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
y = (rng.random(n) < 0.3).astype(np.uint8)
continuous = (rng.normal(0, 1, n) + 0.8 * y).astype(np.float32)
kinds = {"continuous": continuous,
         "ties": (np.round(1 / (1 + np.exp(-continuous)) * 1000) / 1000).astype(np.float32)}
for name, s in kinds.items():
    with open(f"{out}/{name}.raw", "wb") as f:
        f.write(s.tobytes() + y.tobytes())
    with open(f"{out}/{name}.mts", "wb") as f:
        pack = msgpack.Packer(use_bin_type=True)
        f.write(pack.pack({"mts": 1, "tool": "bench/auc.sh", "args": [], "task": "multilabel"}))
        for i in range(n):
            f.write(pack.pack({"case": f"c{i}", "label": [int(y[i])],
                               "probs": {"dtype": "f32", "shape": [1], "data": s[i].tobytes()}}))
    yd, sd = y.astype(np.float64), s.astype(np.float64)
    best = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        value = roc_auc_score(yd, sd)
        best = min(best, time.perf_counter() - t0)
    with open(f"{out}/{name}.sklearn", "w") as f:
        f.write(f"{best:.6f} {value!r} {len(np.unique(s))}\n")
EOF

# wall time of a command in seconds; best of ROUNDS runs (default 3)
best() {
    local b=1e9 t0 t1
    for _ in $(seq "${ROUNDS:-3}"); do
        t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
        b=$(awk -v b="$b" -v a="$t0" -v z="$t1" 'BEGIN { t = z - a; print (t < b ? t : b) }')
    done
    echo "$b"
}

echo "$n scores, 30% positives, one label; times are the best of 3 on $(nproc) shared cores"
echo
echo "| scores | distinct | sklearn roc_auc_score | metrics_auc (in memory) | auc tool (stream of $n records) | AUC sklearn | AUC auc | difference |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for kind in continuous ties; do
    read -r t_sk v_sk distinct < "$dir/$kind.sklearn"
    read -r t_c v_c < <("$root/build/bench/metrics_auc" "$dir/$kind.raw" "$n")
    t_tool=$(best "$root/bin/auc" "$dir/$kind.mts")
    v_tool=$("$root/bin/auc" --json "$dir/$kind.mts" | awk 'match($0, /"auc": [-0-9.eE+]+/) { print substr($0, RSTART + 7, RLENGTH - 7) }')
    [ "$v_tool" = "$v_c" ] || echo "warning: the tool ($v_tool) and metrics_auc ($v_c) differ" >&2
    awk -v k="$kind" -v d="$distinct" -v ts="$t_sk" -v tc="$t_c" -v tt="$t_tool" -v vs="$v_sk" -v vt="$v_tool" 'BEGIN {
        diff = vt - vs; if (diff < 0) diff = -diff
        printf "| %s | %d | %.3f s | %.3f s (%.1fx) | %.3f s | %.15f | %.15f | %.1e |\n", k, d, ts, tc, ts / tc, tt, vs, vt, diff }'
done
echo
# One run each: these take seconds.
t0=$(ROUNDS=1 best "$root/bin/auc" "$dir/ties.mts")
t1=$(ROUNDS=1 best "$root/bin/auc" -b 100 -T 1 "$dir/ties.mts")
t2=$(ROUNDS=1 best "$root/bin/auc" -b 100 -T 2 "$dir/ties.mts")
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
    printf "bootstrap, 100 resamples of the %d cases (ties): %.2f s on 1 thread, %.2f s on 2 threads (%.1f ms, %.1f ms a resample)\n",
        n, t1 - t0, t2 - t0, (t1 - t0) * 10, (t2 - t0) * 10 }'
