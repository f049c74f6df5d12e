#!/usr/bin/env bash
# pcrl-step on a tiny model: the reconstructions improve, the log has every
# term, the checkpoint keeps decoder, teacher and queue beside an encoder
# that finetune and embed take, --resume reaches the same bytes as an
# uninterrupted run (both contrasts), MICLe pairs work, SIGINT saves, and
# bad inputs are refused with their reason.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$T"
export OMP_WAIT_POLICY=passive
# 4 classes of sine gratings, 2 images per case, 1 x 16 x 16; 192 train pairs an epoch.
mkpack p.pack 160 2 4 1 16 16 stripes
model=(--model resnet18 --width 0.25 --stem small --proj-dim 32)
train=(--batch 32 --queue 96 --lr 1)
pairs() { # MODE EPOCHS START
    pair-sample -q -m "$1" -e "$2" --seed 5 --start "$3" p.pack | augment -q --targets --seed 7 --size 16 --area 0.3,1
}

pairs simclr 6 0 | pcrl-step -q "${model[@]}" "${train[@]}" --log log.tsv -o pre.ckpt
head -1 log.tsv | grep -q $'^step\tepoch\tloss\tcontrast\trecon_ordinary\trecon_momentum\trecon_hybrid\talpha\tpos_acc\tlr\timages_per_s\tknn_acc$' \
    && pass "the log names every loss term" || fail "log header" "$(head -1 log.tsv)"
rows=$(($(wc -l < log.tsv) - 1))
[ "$rows" -eq 36 ] && pass "6 epochs of 192 pairs at batch 32: 36 steps" || fail "steps" "$rows rows"
# Mean reconstruction error (ordinary) over the first and the last 6 steps; alpha in [0.5, 1].
read -r r0 r1 <<<"$(awk -F'\t' 'NR > 1 { r[NR] = $5; n = NR }
    END { for (i = 2; i < 8; i++) a += r[i]; for (i = n - 5; i <= n; i++) b += r[i]; print a / 6, b / 6 }' log.tsv)"
awk -v a="$r0" -v b="$r1" 'BEGIN { exit !(b < 0.75 * a) }' && pass "the reconstruction error falls ($r0 -> $r1)" \
    || fail "reconstruction falls" "$r0 -> $r1"
awk -F'\t' 'NR > 1 && ($8 < 0.5 || $8 > 1 || $4 <= 0) { bad = 1 } END { exit bad }' log.tsv \
    && pass "alpha is max(u, 1 - u), the contrast positive" || fail "alpha"
names=$(mts show pre.ckpt | grep -o 'name="[^"]*"' | cut -d'"' -f2)
for want in decoder.blocks.0.conv1.0.weight decoder.gate.fc2.bias decoder.head.bias \
        momentum.layer4.1.conv2.weight momentum.head.1.bn.running_var queue.keys queue.position \
        decoder.blocks.2.conv2.0.weight.momentum; do
    grep -qx "$want" <<<"$names" || { fail "the checkpoint holds $want"; continue; }
done
pass "the checkpoint holds the decoder, the teacher, the queue and their optimiser state"

# The encoder leaves for fine-tuning and evaluation as any pretraining's does.
pair-sample -q -m single --split test --no-shuffle p.pack | augment -q --eval --size 16 > test.mts
pair-sample -q -m single -e 4 --seed 2 p.pack | augment -q --seed 3 --size 16 \
    | finetune -q --init pre.ckpt --batch 32 --lr 0.5 -o ft.ckpt && pass "finetune --init takes a PCRL checkpoint" \
    || fail "finetune --init"
embed -q --ckpt pre.ckpt test.mts > feats.mts && mts count feats.mts | grep -Eq ' [1-9][0-9]* records' \
    && pass "embed takes a PCRL checkpoint" || fail "embed"
check "ckpt export takes its encoder" ckpt export -o enc.safetensors pre.ckpt
# The decoder's contact sheet: 5 records a row each, 6 tiles of 16 with 2-pixel gaps.
pair-sample -q -m simclr --split test p.pack | mts cat --take 5 | augment -q --targets --seed 3 --size 16 > test-pairs.mts
ckpt reconstruct --rows 5 -o sheet.png pre.ckpt test-pairs.mts \
    && size=$(od -An -tu1 -j16 -N8 sheet.png | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 "x" $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }') \
    && [ "$size" = 106x88 ] && pass "ckpt reconstruct draws the decoder's sheet (106x88)" \
    || fail "ckpt reconstruct" "size '${size:-}'"
check_fails "ckpt reconstruct needs a decoder" 1 "decoder.* \(a checkpoint of pcrl-step has a decoder\)" \
    ckpt reconstruct -o sheet2.png ft.ckpt test-pairs.mts

# --resume: 12 steps at once, or 4, a stop, and 8 more, give the same bytes.
for contrast in moco ntxent; do
    pairs simclr 2 0 | pcrl-step -q "${model[@]}" "${train[@]}" --contrast $contrast -o full.ckpt
    pairs simclr 2 0 | mts cat --take 128 | pcrl-step -q "${model[@]}" "${train[@]}" --contrast $contrast \
        --epochs 2 --pairs-per-epoch 192 -o part.ckpt 2>/dev/null
    pairs simclr 2 128 | pcrl-step -q "${model[@]}" "${train[@]}" --contrast $contrast --resume part.ckpt -o part.ckpt
    same "--resume ($contrast) reaches the same student, decoder, teacher, queue and optimiser, bit for bit" \
        <(mts cat --no-headers -z 0 full.ckpt) <(mts cat --no-headers -z 0 part.ckpt)
done
check_fails "--resume refuses another contrast's checkpoint" 1 "queue.keys: this model has it, the checkpoint does not" \
    bash -c "pair-sample -q -m simclr -e 3 --seed 5 --start 384 p.pack | augment -q --targets --size 16 \
        | pcrl-step ${model[*]} ${train[*]} --resume part.ckpt -o x.ckpt"
check_fails "--resume refuses a checkpoint of ntxent-step" 1 "pcrl-step" \
    bash -c "pair-sample -q -m simclr -e 1 p.pack | augment -q --size 16 \
        | ntxent-step -q ${model[*]} --head-layers 2 --head-hidden 128 --batch 32 --optimizer sgd -o nt.ckpt \
        && pair-sample -q -m simclr -e 1 --start 192 p.pack | augment -q --targets --size 16 \
        | pcrl-step ${model[*]} ${train[*]} --resume nt.ckpt -o x.ckpt"

# The same run on 1 and 2 threads.
pairs simclr 1 0 > one.mts
pcrl-step -q "${model[@]}" "${train[@]}" -T 1 -o t1.ckpt one.mts
pcrl-step -q "${model[@]}" "${train[@]}" -T 2 -o t2.ckpt one.mts
same "the same bytes on 1 and 2 threads" <(mts cat --no-headers -z 0 t1.ckpt) <(mts cat --no-headers -z 0 t2.ckpt)

# The kNN monitor: measured every 4 steps, the checkpoint's bytes unchanged.
pair-sample -q -m single --no-shuffle --labeled-only p.pack | augment -q --eval --size 16 > labeled.mts
pcrl-step -q "${model[@]}" "${train[@]}" --monitor labeled.mts --monitor-every 4 --log mon.tsv -o tm.ckpt one.mts
same "the same checkpoint with and without --monitor" <(mts cat --no-headers -z 0 t2.ckpt) <(mts cat --no-headers -z 0 tm.ckpt)
awk -F'\t' 'NR > 1 && $1 % 4 == 0 { if ($12 == "" || $12 < 0 || $12 > 1) bad = 1; m++ }
    NR > 1 && $1 % 4 != 0 && $1 != 6 && $12 != "" { bad = 1 } END { exit bad || m == 0 }' mon.tsv \
    && pass "knn_acc in [0, 1] every 4 steps and at the last" || fail "knn_acc" "$(cut -f1,12 mon.tsv | tr '\n' ' ')"

# MICLe pairs: two images of a case, each with its own target.
pairs micle 1 0 | pcrl-step -q "${model[@]}" "${train[@]}" --log micle.tsv -o micle.ckpt \
    && [ "$(($(wc -l < micle.tsv) - 1))" -gt 0 ] && pass "PCRL on MICLe pairs trains" || fail "micle"

# SIGINT while training (after the first save, every 2 steps): the last step is saved.
pairs simclr 20 0 > long.mts
# (With job control, so that the background job does not start with SIGINT ignored.)
set -m
pcrl-step -q "${model[@]}" "${train[@]}" --save-every 2 -o int.ckpt long.mts 2>err.txt &
pid=$!
set +m
for _ in $(seq 300); do [ -e int.ckpt ] && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
step=$(mts show -n 0 int.ckpt 2>/dev/null | head -1 | grep -o ' step=[0-9]*' | cut -d= -f2)
[ "$rc" -eq 130 ] && [ -n "$step" ] && [ "$step" -gt 0 ] && [ "$step" -lt 120 ] \
    && pass "SIGINT saves the last step ($step of 120) and exits 130" || fail "SIGINT" "exit $rc, step '$step'" "$(cat err.txt)"

# Wrong inputs.
pair-sample -q -m simclr p.pack | mts cat --take 40 | augment -q --size 16 > plain.mts
check_fails "pcrl-step needs augment --targets" 1 "no 'a_target': pcrl-step needs the reconstruction targets of augment --targets" \
    pcrl-step "${model[@]}" --batch 8 -o y.ckpt plain.mts
pair-sample -q -m simclr p.pack | mts cat --take 40 | augment -q --targets --size 12 > odd.mts
check_fails "sides the decoder cannot rebuild are refused" 1 "12x12 images: the decoder needs sides that are multiples of 8" \
    pcrl-step "${model[@]}" -o y.ckpt odd.mts
check_fails "--contrast takes moco or ntxent" 2 "--contrast: 'simclr' is not moco or ntxent" \
    pcrl-step --contrast simclr -o y.ckpt odd.mts
[ ! -e y.ckpt ] && pass "no checkpoint is left by the failures" || fail "leftover y.ckpt"

# The pipeline.
"$top/pipelines/pcrl.sh" --epochs 1 --batch 32 --size 16 p.pack pipe.ckpt -- "${model[@]}" --queue 64 2>err.txt \
    && [ -s pipe.ckpt ] && pass "pipelines/pcrl.sh pretrains" || fail "pipelines/pcrl.sh" "$(tail -3 err.txt)"
"$top/pipelines/pcrl.sh" --pairs micle --epochs 1 --batch 32 --size 16 p.pack pipe2.ckpt -- "${model[@]}" --queue 64 2>err.txt \
    && [ -s pipe2.ckpt ] && pass "pipelines/pcrl.sh --pairs micle pretrains on MICLe pairs" || fail "pcrl.sh --pairs micle" "$(tail -3 err.txt)"
