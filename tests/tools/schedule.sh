#!/usr/bin/env bash
# The trainers against the length of their stream: they stop at the end of
# their schedule and say what they left unread, warn when the stream ends
# first, refuse either with --strict-length, and refuse a warm-up that takes
# every step of the schedule.
. "$(dirname "$0")/common.bash"
cd "$T"
export OMP_WAIT_POLICY=passive
mkpack p.pack 16 1 2 1 16 16 stripes
model=(--model resnet18 --width 0.25 --stem small --head-layers 2 --proj-dim 32 -T 1)
# 13 train cases: 3 epochs of 13 pairs.
pair-sample -q -m simclr -e 3 --seed 1 p.pack | augment -q --seed 2 --size 16 > pairs.mts
pair-sample -q -m single -e 3 --seed 1 p.pack | augment -q --seed 2 --size 16 > images.mts

ntxent-step "${model[@]}" --warmup-epochs 0.5 --epochs 1 --batch 4 --log l.tsv -o a.ckpt pairs.mts 2>err.txt; rc=$?
steps=$(($(wc -l < l.tsv) - 1))
[ $rc -eq 0 ] && [ "$steps" -eq 3 ] && grep -q 'batch 4, 3 steps' err.txt \
    && grep -q 'the last 1 pairs of the schedule fill no batch of 4: not trained on' err.txt \
    && grep -q 'the schedule ends at step 3 (1 epoch of 13 pairs): left 26 records of the stream unread' err.txt \
    && pass "ntxent-step stops at the end of a 1-epoch schedule in a 3-epoch stream" \
    || fail "ntxent stop" "rc=$rc steps=$steps $(cat err.txt)"
awk -F'\t' 'NR == 3 { lr = $5 } NR == 4 { exit !($5 < lr) }' l.tsv && pass "its rate decays to the last step" \
    || fail "decay" "$(cat l.tsv)"
check_fails "a warm-up longer than the schedule names both lengths" 2 \
    "warmup-epochs 2: the warm-up \(6 steps\) is not shorter than the schedule \(1 epoch of 13 pairs: 3 steps\)" \
    ntxent-step "${model[@]}" --warmup-epochs 2 --epochs 1 --batch 4 -o w.ckpt pairs.mts
ntxent-step "${model[@]}" --batch 4 -o d.ckpt pairs.mts 2>err.txt
grep -q 'batch 4, 9 steps (0 of warm-up)' err.txt && pass "the default warm-up: a tenth of a short schedule" \
    || fail "default warm-up" "$(cat err.txt)"
[ ! -e w.ckpt ] && pass "nothing written then" || fail "w.ckpt written"
check_fails "--strict-length refuses a longer stream" 1 \
    "pairs.mts: --strict-length: the stream holds 39 records \(3 epochs of 13\), the schedule 13 \(1 epoch of 13 pairs\)" \
    ntxent-step "${model[@]}" --strict-length --warmup-epochs 0.5 --epochs 1 --batch 4 -o s.ckpt pairs.mts
check "--strict-length takes a stream of the schedule's length" \
    ntxent-step -q "${model[@]}" --strict-length --warmup-epochs 0.5 --batch 8 -o s.ckpt pairs.mts
# A stream cut after its first epoch (13 records) against the header's 3.
mts cat --take 13 pairs.mts > cut.mts
ntxent-step "${model[@]}" --warmup-epochs 0.5 --batch 4 -o c.ckpt cut.mts 2>err.txt; rc=$?
[ $rc -eq 0 ] && grep -q 'cut.mts: warning: the stream ended at step 3 of the schedule.s 9 (3 epochs of 13 pairs): the learning rate did not decay to its end' err.txt \
    && pass "a stream shorter than the schedule: a warning" || fail "short" "rc=$rc $(cat err.txt)"
check_fails "--strict-length: a stream shorter than its header says is an error" 1 \
    "cut.mts: --strict-length: the stream ended at step 3 of the schedule's 9" \
    ntxent-step "${model[@]}" --strict-length --warmup-epochs 0.5 --batch 4 -o c.ckpt cut.mts

finetune --random-init "${model[@]}" --epochs 1 --batch 4 --log f.tsv -o f.ckpt images.mts 2>err.txt; rc=$?
[ $rc -eq 0 ] && [ "$(tail -n 1 f.tsv | cut -f2)" -eq 4 ] \
    && grep -q 'the schedule ends at step 4 (1 epoch of 13 images): left 26 records of the stream unread' err.txt \
    && pass "finetune stops at the end of its schedule (4 steps: 3 full batches and a short one)" \
    || fail "finetune stop" "rc=$rc $(cat f.tsv) $(cat err.txt)"
check_fails "finetune: a warm-up as long as the schedule" 2 "the warm-up \(8 steps\) is not shorter than the schedule \(2 epochs of 13 images: 8 steps\)" \
    finetune --random-init "${model[@]}" --epochs 2 --warmup-epochs 2 --batch 4 -o f.ckpt images.mts
check_fails "finetune --strict-length" 1 "--strict-length: the stream holds 39 records" \
    finetune --random-init "${model[@]}" --strict-length --epochs 2 --batch 4 -o f.ckpt images.mts
check "finetune --strict-length on a stream of the schedule's length" \
    finetune -q --random-init "${model[@]}" --strict-length --batch 4 -o f.ckpt images.mts
