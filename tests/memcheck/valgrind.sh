#!/usr/bin/env bash
# make check-valgrind: every tool of a tiny end-to-end run under valgrind's
# memcheck (case-pack on a few generated images, pair-sample, augment,
# ntxent-step, finetune with validation, embed per case, auc with a
# bootstrap), one thread each.  A tool passes when it succeeds, memcheck
# reports no error (invalid access, uninitialised value, bad free) and
# nothing is definitely lost.  "Still reachable" memory (libgomp's and
# BLIS's thread pools, glib's type system) is what a process keeps until
# exit, not a leak.  No suppressions are needed (none of the third-party
# libraries makes memcheck report an error here).  Slow: not in make check.
. "$(dirname "$0")/../tools/common.bash"
cd "$T"
export OMP_NUM_THREADS=1 MEDSSL_THREADS=1 OMP_WAIT_POLICY=passive
vg() {
    local name=$1
    shift
    nice -n 19 valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --error-exitcode=99 --num-callers=30 --log-file="$name.vg" "$@"
    local rc=$?
    local summary lost
    summary=$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$name.vg" | tail -1)
    lost=$(grep -o 'definitely lost: [0-9,]* bytes' "$name.vg" | tail -1)
    if [ "$rc" -eq 0 ]; then
        pass "$name: ${summary:-no summary}, ${lost:-definitely lost: 0 bytes}"
    else
        fail "$name (status $rc): $summary, $lost" "$(grep -A12 -m3 -E '^==[0-9]+== (Invalid|Conditional|Use of|Mismatched|[0-9,]+ bytes in)' "$name.vg")"
    fi
}

# Six images of four cases, grey and colour, PNG and JPEG; two classes.
vips black black.v 24 20 --bands 3
vips gaussnoise noise.v 24 20
for i in 1 2 3; do
    vips linear black.v "c$i.png" 1 $((i * 60)) --uchar
    vips cast noise.v "g$i.jpg" uchar
done
printf 'case,path,label,split\na,c1.png,x,train\na,g1.jpg,x,train\nb,c2.png,y,train\nb,g2.jpg,y,train\nc,c3.png,x,test\nd,g3.jpg,y,test\n' > m.csv
model=(--model resnet18 --width 0.0625 --stem small --batch 4)

vg case-pack case-pack -q -T 1 -c 1 --size 16 -o p.pack m.csv
vg pair-sample pair-sample -q -T 1 -m micle -e 8 --seed 1 -o pairs-u8.mts p.pack
vg augment augment -q -T 1 --size 16 --seed 2 --rotate 10 --noise 0.1 -o pairs.mts pairs-u8.mts
vg ntxent-step ntxent-step -q -T 1 "${model[@]}" --head-layers 2 --proj-dim 8 --save-every 1 --log pre.tsv -o pre.ckpt pairs.mts
pair-sample -q -m single --split all p.pack | augment -q --eval --size 16 > images.mts
vg finetune finetune -q -T 1 "${model[@]}" --init pre.ckpt --epochs 2 --val images.mts -o ft.ckpt images.mts
vg embed embed -q -T 1 --ckpt ft.ckpt --per-case mean -o scores.mts images.mts
vg auc auc -T 1 --bootstrap 20 -o report.txt scores.mts
