#!/usr/bin/env bash
# ntxent-step --monitor: the kNN accuracy lands in the log's knn_acc column
# (values in [0, 1] on the measured steps, empty on the others), the run
# writes the same checkpoint bytes with and without the monitor (and on 2
# threads the same accuracies as on 1), and a stream the monitor cannot use
# is refused before the first step.
. "$(dirname "$0")/common.bash"
cd "$T"
export OMP_WAIT_POLICY=passive
mkpack p.pack 60 3 4 1 16 16 stripes
model=(--model resnet18 --width 0.25 --stem small --head-layers 2 --proj-dim 32 --batch 8)
pair-sample -q -m simclr -e 2 --seed 1 p.pack | augment -q --seed 2 --size 16 > pairs.mts
pair-sample -q -m single --no-shuffle --labeled-only p.pack | augment -q --eval --size 16 > lab.mts
mkdir plain mon mon2 mon3
# The same relative paths in each folder: the checkpoint records the command line.
(cd plain && ntxent-step -T 1 "${model[@]}" --log l.tsv -o r.ckpt ../pairs.mts 2>err.txt)
(cd mon && ntxent-step -T 1 "${model[@]}" --monitor ../lab.mts --monitor-every 5 --monitor-k 10 \
    --log l.tsv -o r.ckpt ../pairs.mts 2>err.txt)
# Abbreviated and --opt=value forms are left out of the recorded command line too.
(cd mon2 && ntxent-step -T 1 "${model[@]}" --monitor=../lab.mts --monitor-e 5 --monitor-k=10 \
    --log l.tsv -o r.ckpt ../pairs.mts 2>err.txt)
(cd mon3 && ntxent-step -T 2 "${model[@]}" --monitor ../lab.mts --monitor-every 5 --monitor-k 10 \
    --log l.tsv -o r.ckpt ../pairs.mts 2>err.txt)

# 24 steps: measured at 5, 10, 15, 20 and the last, 24.
awk -F'\t' 'NR == 1 { ok = $7 == "knn_acc" && NF == 7; next }
            { measured = $1 % 5 == 0 || $1 == 24
              if (measured && !($7 != "" && $7 >= 0 && $7 <= 1)) ok = 0
              if (!measured && $7 != "") ok = 0
              if (measured) n++ }
            END { exit !(ok && n == 5 && NR == 25) }' mon/l.tsv \
    && pass "knn_acc: values in [0, 1] at steps 5, 10, 15, 20, 24, empty elsewhere" \
    || fail "knn_acc column" "$(cat mon/l.tsv)"
# The accuracy must move with training (the stripes are learnable): not one value throughout.
[ "$(awk -F'\t' 'NR > 1 && $7 != "" { print $7 }' mon/l.tsv | sort -u | wc -l)" -gt 1 ] \
    && pass "knn_acc changes during training" || fail "knn_acc constant" "$(cut -f1,7 mon/l.tsv)"
same "the same checkpoint bytes with and without --monitor" plain/r.ckpt mon/r.ckpt
same "... and with its options spelled otherwise" plain/r.ckpt mon2/r.ckpt
cmp -s <(cut -f1-5,7 mon/l.tsv) <(cut -f1-5,7 mon3/l.tsv) \
    && pass "the same losses and kNN accuracies on 1 and 2 threads" \
    || fail "threads" "$(diff <(cut -f1-5,7 mon/l.tsv) <(cut -f1-5,7 mon3/l.tsv) | head -5)"
cmp -s <(cut -f1-6 plain/l.tsv | cut -f1-5) <(cut -f1-5 mon/l.tsv) \
    && pass "the log's other columns as without the monitor" || fail "columns" "$(head -3 plain/l.tsv mon/l.tsv)"
grep -q 'lab.mts: kNN monitor (k 10, T 0.07) every 5 steps: 96 images of 48 cases: bank 78 images (39 cases), 18 queries (9 cases), 4 classes' mon/err.txt \
    && grep -Eq 'kNN monitor: 5 measurements, [0-9.]+ s each' mon/err.txt \
    && pass "the split and the monitor's cost on stderr" || fail "stderr" "$(cat mon/err.txt)"

# Streams the monitor cannot use: nothing is trained, nothing written.
check_fails "pair records are refused" 1 "pairs.mts: .*no 'image' image: this is a pair record; ntxent-step expects labeled image records for --monitor" \
    ntxent-step "${model[@]}" --monitor pairs.mts -o bad.ckpt pairs.mts
mkpairs 12 1 16 16 single | augment -q --eval --size 16 > unlabeled.mts
check_fails "images without labels are refused" 1 "unlabeled.mts: --monitor: image 0 \(case 'case000000'\) has no label" \
    ntxent-step "${model[@]}" --monitor unlabeled.mts -o bad.ckpt pairs.mts
mts cat --take 6 lab.mts > three.mts   # cases of 1, 2 and 3 images
check_fails "fewer than 5 cases leave no query" 1 "three.mts: --monitor: 3 cases; the kNN monitor needs at least 5" \
    ntxent-step "${model[@]}" --monitor three.mts -o bad.ckpt pairs.mts
pair-sample -q -m single --no-shuffle --labeled-only p.pack | augment -q --eval --size 16 --channels 3 > rgb.mts
check_fails "images of another channel count" 1 "rgb.mts: --monitor: 3-channel images; the model takes 1 channels" \
    ntxent-step "${model[@]}" --monitor rgb.mts -o bad.ckpt pairs.mts
check_fails "--monitor-every without --monitor" 2 "need --monitor IMAGES" \
    ntxent-step "${model[@]}" --monitor-every 5 -o bad.ckpt pairs.mts
[ ! -e bad.ckpt ] && pass "no checkpoint written by the refused runs" || fail "bad.ckpt written"
