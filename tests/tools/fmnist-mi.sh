#!/usr/bin/env bash
# examples/fmnist-mi: the Fashion-MNIST case generator builds from the tree,
# writes manifests that case-pack ingests, keeps splits disjoint by case, is
# deterministic, and renders the shifted clinic differently.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
src=/usr/share/datasets/fashion-mnist
if [ ! -f "$src/train-images-idx3-ubyte.gz" ] || [ ! -f "$src/t10k-images-idx3-ubyte.gz" ]; then
    echo "skip - fashion-mnist not installed (apt-get install dataset-fashion-mnist)"
    exit 0
fi
cd "$T"
check "make -C examples/fmnist-mi mkcases builds the generator" make -s -C "$top/examples/fmnist-mi" mkcases
gen=$top/examples/fmnist-mi/out/mkcases
small="--cases-train 20 --cases-test 20 --cases-shift 20 --natural 20"
check "generates 20 cases per split" "$gen" -q $small --out a

[ "$(head -1 a/cases.csv)" = "case,path,label,split" ] && [ "$(head -1 a/natural.csv)" = "case,path" ] \
    && pass "manifest columns: case,path,label,split and case,path" || fail "columns" "$(head -1 a/*.csv)"
# Cases per split (10% of the train cases are val), photos per case.
counts=$(awk -F, 'NR > 1 && !seen[$1]++ { n[$4]++ } END { print n["train"], n["val"], n["test"], n["test_shift"] }' a/cases.csv)
[ "$counts" = "18 2 20 20" ] && pass "cases per split: train 18, val 2, test 20, test_shift 20" || fail "split sizes" "$counts"
[ "$(awk 'NR > 1' a/natural.csv | cut -d, -f1 | sort -u | wc -l)" -eq 20 ] && [ "$(wc -l < a/natural.csv)" -eq 21 ] \
    && pass "natural: 20 single-image cases" || fail "natural" "$(wc -l < a/natural.csv) lines"
per_case=$(awk -F, 'NR > 1 { n[$1]++ } END { for (c in n) print n[c] }' a/cases.csv | sort -n | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')
bad=$(awk -F, 'NR > 1 { n[$1]++ } END { for (c in n) if (n[c] < 1 || n[c] > 4) print c }' a/cases.csv)
[ -z "$bad" ] && pass "1 to 4 photos per case ($per_case)" || fail "photos per case" "$bad"
mixed=$(awk -F, 'NR > 1 { s[$1] = s[$1] == "" || s[$1] == $4 ? $4 : "mixed" } END { for (c in s) if (s[c] == "mixed") print c }' a/cases.csv)
shared=$(comm -12 <(awk -F, 'NR > 1 { print $1 }' a/cases.csv | sort -u) <(awk -F, 'NR > 1 { print $1 }' a/natural.csv | sort -u))
[ -z "$mixed" ] && [ -z "$shared" ] && pass "splits are disjoint by case (natural included)" || fail "disjoint" "$mixed $shared"
badlabel=$(awk -F, 'NR > 1 && $3 !~ /^(t-shirt|trouser|pullover|dress|coat|sandal|shirt|sneaker|bag|boot)$/' a/cases.csv)
[ -z "$badlabel" ] && pass "labels are Fashion-MNIST class names" || fail "labels" "$badlabel"
listed=$(awk -F, 'FNR > 1 { print $2 }' a/cases.csv a/natural.csv | sort)
[ "$listed" = "$(cd a && find images -type f | sort)" ] && pass "the manifests list exactly the files written" \
    || fail "files" "$(diff <(echo "$listed") <(cd a && find images -type f | sort) | head -5)"

# case-pack's real ingest path.
case-pack -c 1 --size 32 -o a.pack a/cases.csv 2>err.txt; rc=$?
nimages=$(($(wc -l < a/cases.csv) - 1))
[ $rc -eq 0 ] && grep -q "60 cases, $nimages images, 10 classes (multiclass); skipped 0 files, 0 cases" err.txt \
    && pass "case-pack ingests cases.csv: 60 cases, $nimages images, 0 skipped" || fail "case-pack" "rc=$rc $(cat err.txt)"
shapes=$(mts show --no-stats a.pack | grep -o 'images=\[[^]]*\]' | grep -o 'u8\[[0-9,]*\]' | sort -u)
[ "$shapes" = "u8[1,32,32]" ] && pass "every image packs as u8[1,32,32]" || fail "shapes" "$shapes"
case-pack -q -c 1 --size 32 -o n.pack a/natural.csv && grep -q 'task="none"' <<<"$(mts show n.pack | head -1)" \
    && [ "$(mts count n.pack | cut -d' ' -f3)" -eq 20 ] && pass "natural.csv packs unlabeled (20 cases)" \
    || fail "natural pack" "$(mts show n.pack | head -1)"

# Determinism: same seed, same bytes, whatever the thread count.
sums() { (cd "$1" && find . -type f | sort | xargs md5sum); }
OMP_NUM_THREADS=1 "$gen" -q $small --out b1
OMP_NUM_THREADS=2 "$gen" -q $small --out b2
[ "$(sums a)" = "$(sums b1)" ] && [ "$(sums a)" = "$(sums b2)" ] \
    && pass "same seed, same bytes (1 and 2 threads)" || fail "determinism"
"$gen" -q $small --seed 2 --out c
cmp -s a/cases.csv c/cases.csv && fail "another seed, other cases" || pass "another seed, other cases"

# The shifted clinic: lower contrast (the mean over a split's photos of each
# photo's pixel standard deviation: about 66 and 33 over 300 photos; single
# photos range widely, so all ~45 of the split are used).
std_of() { awk -F, -v s="$1" 'NR > 1 && $4 == s { print "a/" $2 }' a/cases.csv \
           | while read -r f; do vips deviate "$f"; done | awk '{ t += $1 } END { printf "%.1f", t / NR }'; }
s_test=$(std_of test) s_shift=$(std_of test_shift)
awk -v a="$s_test" -v b="$s_shift" 'BEGIN { exit !(b < 0.75 * a) }' \
    && pass "test_shift has lower contrast (pixel std $s_shift vs $s_test)" || fail "shift" "std $s_shift vs $s_test"

# Usage and input errors.
check_fails "more cases than train images" 2 "is more than the 60000 train images" "$gen" --cases-train 50000 --out x
check_fails "no --out" 2 "name the folder with --out" "$gen"
check_fails "a missing data folder" 1 "nowhere/train-images-idx3-ubyte.gz" "$gen" --data nowhere --out x

# The example's make cases: remade when the sizes change, not otherwise.
mk() { make -s -C "$top/examples/fmnist-mi" cases DATA="$T/m" CASES_TRAIN=10 CASES_TEST=5 CASES_SHIFT=5 "$@" 2>&1; }
mk NATURAL=5 >/dev/null
again=$(mk NATURAL=5) changed=$(mk NATURAL=6)
[ -z "$(grep mkcases <<<"$again")" ] && grep -q 'natural *6 cases' <<<"$changed" && [ "$(wc -l < m/natural.csv)" -eq 7 ] \
    && pass "make cases regenerates when the sizes change, only then" || fail "make cases" "$again" "$changed"
