#!/usr/bin/env bash
# Data-parallel training under mpirun: 1, 2 and 4 ranks, each with its own
# pair-sample --shard | augment | ntxent-step pipeline, give the same bytes
# (weights, batch-norm statistics, optimiser state) as one plain process,
# over shared memory and over TCP; a run on 2 ranks resumes on 4; bad
# launches (a batch that does not split, ranks with other options or
# other streams, a rank without its shard) fail with one clear message;
# finetune over 1, 2 and 4 ranks gives the bytes of one process with
# --micro-batch, and so does finetune-eval.sh --ranks 2; SIGTERM to
# mpirun saves the last step, which resumes to the uninterrupted bytes; a
# killed rank ends the run with a message, and the last checkpoint reads;
# simclr.sh and micle.sh --ranks 2 give their one-process bytes.
# Every mpirun runs under timeout.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$T"
export OMP_WAIT_POLICY=passive
if ! command -v mpirun > /dev/null; then
    echo "skip - no mpirun: the data-parallel tests need Open MPI (mk/deps.sh check installs openmpi-bin)"
    exit 0
fi
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
# run K [mpirun options] -- rank.sh arguments
run() {
    local k=$1; shift
    timeout 120 mpirun "${root[@]}" --oversubscribe --bind-to none -x START -x TAKE -x AUG -x EXTRA -x EPOCHS -np "$k" "$@"
}
if run 1 --mca btl self ntxent-step --version 2>&1 | grep -q 'this build has no MPI'; then
    echo "skip - ntxent-step was built without MPI (libopenmpi-dev was missing at build time)"
    exit 0
fi

# 4 classes of gratings, 1 x 16 x 16; 48 train images, batch 16: 6 steps.
mkpack p.pack 40 2 4 1 16 16 stripes
model=(--model resnet18 --width 0.25 --stem small --head-layers 2)
train=(--batch 16 --tau 0.2 --lr 0.3 --lr-scaling sqrt --warmup-epochs 1 -T 1 -q)
export START=0 TAKE= AUG=7 EXTRA= EPOCHS=2
# One rank's pipeline (EPOCHS: pair-sample's; START: pair-sample --start;
# TAKE: cut the rank's stream after that many records; AUG: augment's seed
# on rank 1; EXTRA: more trainer options on rank 1).  The trainer writes its pid to pid.R.
cat > rank.sh <<'EOF'
#!/usr/bin/env bash
R=$OMPI_COMM_WORLD_RANK K=$OMPI_COMM_WORLD_SIZE
# mpirun's SIGTERM reaches every process of the rank: this shell waits for
# its pipeline (whose trainer saves) instead of dying at once, which mpirun
# would answer with SIGKILL to all.
trap : TERM INT
aug=7 extra=()
[ "$R" -eq 1 ] && aug=$AUG && extra=($EXTRA)
shard=(--shard "$R/$K" --batch 16)
[ "${NOSHARD:-}" ] && shard=()
pairs() { pair-sample -q -m simclr -e "$EPOCHS" --seed 5 --start "$START" "${shard[@]}" p.pack |
          augment -q -T 1 --seed "$aug" --size 16 --area 0.3,1; }
trainer() { echo "$BASHPID" > "pid.$R"; exec ntxent-step "$@" "${extra[@]}"; }
if [ -n "$TAKE" ]; then pairs | mts cat -n "$TAKE" | trainer "$@"; else pairs | trainer "$@"; fi
EOF
chmod +x rank.sh
records() { mts cat --no-headers -z 0 "$1"; }
head_of() { mts show -n 0 "$1" | head -1 | grep -o ' \(step\|records\|epoch\|loss\)=[^ ]*' | tr -d '\n'; }
# same_run NAME CKPT: CKPT holds plain.ckpt's records and training position.
same_run() {
    if cmp -s <(records plain.ckpt) <(records "$2") && [ "$(head_of plain.ckpt)" = "$(head_of "$2")" ]; then
        pass "$1"
    else
        fail "$1" "$(head_of plain.ckpt) against $(head_of "$2")" "$(cmp <(records plain.ckpt) <(records "$2") 2>&1)"
    fi
}

pair-sample -q -m simclr -e 2 --seed 5 p.pack | augment -q -T 1 --seed 7 --size 16 --area 0.3,1 \
    | ntxent-step "${model[@]}" "${train[@]}" -o plain.ckpt
[ "$(head_of plain.ckpt)" = " step=6 records=96 epoch=2 loss=$(mts show -n 0 plain.ckpt | head -1 | grep -o 'loss=[^ ]*' | cut -d= -f2)" ] \
    && pass "one plain process trains 6 steps" || fail "plain run" "$(head_of plain.ckpt)"

for k in 1 2 4; do
    run $k --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" -o k$k.ckpt 2> err$k.txt
    same_run "mpirun -np $k (shared memory): the bytes of one plain process" k$k.ckpt
done
run 4 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --check-ranks 1 -o chk.ckpt 2> errchk.txt \
    && pass "--check-ranks 1: 4 ranks hold the same state after every step" || fail "--check-ranks" "$(cat errchk.txt)"
run 2 --mca btl self,tcp --mca btl_tcp_if_include lo ./rank.sh "${model[@]}" "${train[@]}" -o tcp.ckpt 2> errtcp.txt
same_run "mpirun -np 2 over TCP (loopback): the same bytes" tcp.ckpt
# The micro-batches, not the ranks, fix the sums: another micro-batch size
# gives other bytes (so the comparisons above can fail).
run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --micro-batch 4 -o m4.ckpt 2> errm4.txt
cmp -s <(records plain.ckpt) <(records m4.ckpt) && fail "--micro-batch 4 gives other sums" \
    || pass "--micro-batch 4 gives other sums than the default (2)"

# Resume across K: 2 ranks stop at step 3 (their streams cut after 24
# records each), 4 ranks go on from there to the end.
TAKE=24 run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" -o res.ckpt 2> errres.txt
step=$(head_of res.ckpt | grep -o 'step=[0-9]*')
[ "$step" = "step=3" ] && pass "2 ranks whose streams end at step 3 save step 3" || fail "cut run" "$step" "$(cat errres.txt)"
START=48 run 4 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --resume res.ckpt -o res.ckpt 2> errres4.txt
same_run "a run of 2 ranks resumed on 4: the bytes of the uninterrupted plain run" res.ckpt

# The pipelines: --ranks 2 runs one pipeline per rank under mpirun.
for script in simclr micle; do
    "$top/pipelines/$script.sh" --epochs 2 --batch 16 --size 16 p.pack p1.ckpt -- -q "${model[@]}" --tau 0.2 \
        --warmup-epochs 1 2> errp1.txt
    timeout 120 "$top/pipelines/$script.sh" --ranks 2 --mpirun "--oversubscribe --bind-to none --mca btl self,vader" \
        --epochs 2 --batch 16 --size 16 p.pack p2.ckpt -- -q "${model[@]}" --tau 0.2 --warmup-epochs 1 2> errp2.txt
    if [ -s p1.ckpt ] && cmp -s <(records p1.ckpt) <(records p2.ckpt); then
        pass "$script.sh --ranks 2: the bytes of $script.sh"
    else
        fail "$script.sh --ranks 2" "$(tail -n 3 errp1.txt errp2.txt)"
    fi
    rm -f p1.ckpt p2.ckpt
done

# SIGTERM to rank 0's trainer: every rank stops after the same step, rank 0
# saves it, and a resumed run reaches the uninterrupted run's bytes.
pair-sample -q -m simclr -e 4 --seed 5 p.pack | augment -q -T 1 --seed 7 --size 16 --area 0.3,1 \
    | ntxent-step "${model[@]}" "${train[@]}" -o plain4.ckpt
rm -f pid.* sig.ckpt
EPOCHS=4 run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --save-every 1 -o sig.ckpt 2> errsig.txt &
mpirun_pid=$!
for _ in $(seq 600); do
    [ -s sig.ckpt ] && [ -s pid.0 ] && break
    sleep 0.1
done
kill -TERM "$(cat pid.0)"
wait $mpirun_pid; rc=$?
s=$(head_of sig.ckpt | grep -o 'step=[0-9]*' | cut -d= -f2)
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ -n "$s" ] && [ "$s" -lt 12 ] \
    && pass "SIGTERM to rank 0's trainer: the ranks stop after step $s of 12, rank 0 saves it" \
    || fail "SIGTERM to rank 0" "status $rc, step '$s'" "$(grep -v '^--' errsig.txt | tail -n 4)"
EPOCHS=4 START=$((${s:-0} * 16)) run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --resume sig.ckpt \
    -o sig.ckpt 2> errsig2.txt
cmp -s <(records plain4.ckpt) <(records sig.ckpt) && pass "resumed after SIGTERM: the bytes of the uninterrupted run" \
    || fail "resume after SIGTERM" "$(head_of sig.ckpt)" "$(tail -n 3 errsig2.txt)"

# finetune: each rank's pair-sample --mode single --drop-last --shard R/K
# | augment | finetune; the bytes of one plain process with --micro-batch.
cat > frank.sh <<'EOF'
#!/usr/bin/env bash
R=$OMPI_COMM_WORLD_RANK K=$OMPI_COMM_WORLD_SIZE
trap : TERM INT
drop=(--drop-last); [ "${NODROP:-}" ] && drop=()
pair-sample -q -m single -e "$EPOCHS" --seed 5 "${drop[@]}" --shard "$R/$K" --batch "$FBATCH" "${PACK:-p.pack}" |
    augment -q -T 1 --seed 7 --size 16 | { echo "$BASHPID" > "pid.$R"; exec finetune "$@"; }
EOF
chmod +x frank.sh
frun() {
    local k=$1; shift
    timeout 120 mpirun "${root[@]}" --oversubscribe --bind-to none -x EPOCHS -x FBATCH -x NODROP -x PACK \
        --mca btl self,vader -np "$k" ./frank.sh "$@"
}
export FBATCH=16 EPOCHS=3 NODROP=
pair-sample -q -m single --split test --no-shuffle p.pack | augment -q --eval --size 16 -o val.mts
ft=(--random-init --model resnet18 --width 0.25 --stem small --batch 16 --lr 0.1 -T 1 --val val.mts -q)
pair-sample -q -m single -e 3 --seed 5 --drop-last --batch 16 p.pack | augment -q -T 1 --seed 7 --size 16 \
    | finetune "${ft[@]}" --micro-batch 2 --log ftplain.tsv -o ftplain.ckpt
for k in 1 2 4; do
    rm -f ft$k.tsv
    frun $k "${ft[@]}" --log ft$k.tsv -o ft$k.ckpt 2> errft$k.txt
    if [ -s ftplain.ckpt ] && cmp -s <(records ftplain.ckpt) <(records ft$k.ckpt) && cmp -s ftplain.tsv ft$k.tsv; then
        pass "finetune under mpirun -np $k: the checkpoint and log of finetune --micro-batch 2"
    else
        fail "finetune -np $k" "$(head_of ftplain.ckpt) against $(head_of ft$k.ckpt)" "$(tail -n 3 errft$k.txt)"
    fi
done
pair-sample -q -m single -e 3 --seed 5 --drop-last --batch 16 p.pack | augment -q -T 1 --seed 7 --size 16 \
    | finetune "${ft[@]}" --linear --micro-batch 4 -o linplain.ckpt
frun 2 "${ft[@]}" --linear --micro-batch 4 --check-ranks 1 -o lin2.ckpt 2> errlin.txt
[ -s linplain.ckpt ] && cmp -s <(records linplain.ckpt) <(records lin2.ckpt) \
    && pass "finetune --linear over 2 ranks (hashes compared every step): one process's bytes" \
    || fail "finetune --linear -np 2" "$(tail -n 3 errlin.txt)"
! cmp -s <(records linplain.ckpt) <(records ftplain.ckpt) \
    && pass "finetune: the full and the linear run differ (the comparisons can fail)" || fail "full and linear differ"
FBATCH=20 NODROP=1 check_fails "finetune over 2 ranks on epochs that are not whole batches: an error naming --drop-last" 1 \
    "an epoch of 48 images is not whole batches of 20: under mpirun every batch is full \(feed pair-sample --drop-last --batch 20\)" \
    frun 2 "${ft[@]}" --batch 20 -o bad.ckpt
[ "$(grep -c 'not whole batches' "$T/err")" -eq 1 ] && pass "said once, by rank 0" || fail "said once" "$(cat "$T/err")"
check_fails "finetune: --batch 18 over 4 ranks" 2 "--batch 18 over 4 ranks: the batch must be a multiple of the ranks" \
    frun 4 "${ft[@]}" --batch 18 -o bad.ckpt
# Multi-label fine-tuning (sigmoid BCE over the global batch) over 2 ranks.
"$PY" - <<'PYEOF'
import random
from PIL import Image
random.seed(3)
rows = ["case,path,findings,split"]
for i in range(40):
    img = Image.new("L", (16, 16))
    img.putdata([random.randrange(256) for _ in range(256)])
    img.save(f"ml{i}.png")
    f = ";".join(n for n, p in (("edema", i % 2), ("effusion", i % 3 == 0)) if p)
    rows.append(f"c{i},ml{i}.png,{f},{'test' if i % 5 == 4 else 'train'}")
open("ml.csv", "w").write("\n".join(rows) + "\n")
PYEOF
case-pack -q -o ml.pack --size 16 --label-col findings --multilabel ml.csv
mlft=(--random-init --model resnet18 --width 0.25 --stem small --batch 8 --lr 0.1 -T 1 -q)
pair-sample -q -m single -e 3 --seed 5 --drop-last --batch 8 ml.pack | augment -q -T 1 --seed 7 --size 16 \
    | finetune "${mlft[@]}" --micro-batch 1 -o mlplain.ckpt
PACK=ml.pack FBATCH=8 frun 2 "${mlft[@]}" -o ml2.ckpt 2> errml.txt
[ -s mlplain.ckpt ] && cmp -s <(records mlplain.ckpt) <(records ml2.ckpt) \
    && grep -q 'task="multilabel"' <<<"$(mts show -n 0 ml2.ckpt | head -1)" \
    && pass "multi-label finetune over 2 ranks: the bytes of one process with --micro-batch 1" \
    || fail "multi-label finetune -np 2" "$(tail -n 3 errml.txt)"

# finetune-eval.sh --ranks 2 against one process on whole batches.
P=$top/pipelines
"$P/finetune-eval.sh" --epochs 2 --batch 16 --size 16 --val none --drop-last --bootstrap 10 p.pack --random-init fe1 \
    -- -q --model resnet18 --width 0.25 --stem small --micro-batch 2 2> errfe1.txt
timeout 120 "$P/finetune-eval.sh" --ranks 2 --mpirun "--oversubscribe --bind-to none --mca btl self,vader" --epochs 2 \
    --batch 16 --size 16 --val none --bootstrap 10 p.pack --random-init fe2 -- -q --model resnet18 --width 0.25 \
    --stem small 2> errfe2.txt
if [ -s fe1/finetune.ckpt ] && cmp -s <(records fe1/finetune.ckpt) <(records fe2/finetune.ckpt) \
    && cmp -s fe1/test.json fe2/test.json; then
    pass "finetune-eval.sh --ranks 2: the checkpoint and test report of one process"
else
    fail "finetune-eval.sh --ranks 2" "$(tail -n 3 errfe1.txt errfe2.txt)"
fi

# SIGTERM to mpirun (what Ctrl-C or a batch system's kill does): mpirun
# passes SIGTERM on to every rank's processes, and SIGKILL a second later
# (odls_base_sigkill_timeout); the trainers stop after the same step and
# rank 0 saves it.
# term_mpirun PID: once both ranks' trainers have run for a second,
# SIGTERM to the mpirun under the background job PID (run's subshell, then
# timeout).
term_mpirun() {
    for _ in $(seq 600); do
        [ -s pid.0 ] && [ -s pid.1 ] && break
        sleep 0.1
    done
    sleep 1
    kill -TERM "$(pgrep -x mpirun -P "$(pgrep -x timeout -P "$1")")"
}
rm -f pid.* mterm.ckpt
EPOCHS=40 run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" -o mterm.ckpt 2> errmterm.txt &
mpirun_pid=$!
term_mpirun $mpirun_pid
wait $mpirun_pid; rc=$?
s=$(head_of mterm.ckpt | grep -o 'step=[0-9]*' | cut -d= -f2)
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ -n "$s" ] && [ "$s" -gt 0 ] && [ "$s" -lt 120 ] \
    && pass "SIGTERM to mpirun: ntxent-step's rank 0 saves step $s of 120 and the run ends (status $rc)" \
    || fail "SIGTERM to mpirun" "status $rc, step '$s'" "$(grep -v '^--' errmterm.txt | tail -n 4)"
# The uninterrupted run to step s + 2, and the interrupted one resumed for 2 steps.
pair-sample -q -m simclr -e 40 --seed 5 p.pack | augment -q -T 1 --seed 7 --size 16 --area 0.3,1 \
    | mts cat -n $(( (${s:-0} + 2) * 16 )) | ntxent-step "${model[@]}" "${train[@]}" -o plain40.ckpt 2> /dev/null
EPOCHS=40 START=$((${s:-0} * 16)) TAKE=16 run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" \
    --resume mterm.ckpt -o mterm.ckpt 2> errmterm2.txt
[ -n "$s" ] && cmp -s <(records plain40.ckpt) <(records mterm.ckpt) \
    && pass "resumed after SIGTERM to mpirun: the bytes of the uninterrupted run" \
    || fail "resume after SIGTERM to mpirun" "$(head_of plain40.ckpt) against $(head_of mterm.ckpt)" \
            "$(tail -n 3 errmterm2.txt)"
rm -f pid.* fterm.ckpt
EPOCHS=400 frun 2 "${ft[@]}" -o fterm.ckpt 2> errfterm.txt &
mpirun_pid=$!
term_mpirun $mpirun_pid
wait $mpirun_pid; rc=$?
s=$(head_of fterm.ckpt | grep -o 'step=[0-9]*' | cut -d= -f2)
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ -n "$s" ] && [ "$s" -lt 1200 ] \
    && grep -q "^finetune: stopped by a signal at step [0-9]*; fterm.ckpt holds the best epoch so far" errfterm.txt && pass "SIGTERM to mpirun: finetune's rank 0 keeps its best epoch (step $s) and the run ends (status $rc)" \
    || fail "SIGTERM to mpirun (finetune)" "status $rc, step '$s'" "$(grep -v '^--' errfterm.txt | tail -n 4)"

# Bad launches.
check_fails "--batch 15 over 2 ranks: a usage error" 2 "--batch 15 over 2 ranks: the batch must be a multiple" \
    run 2 ntxent-step "${model[@]}" --batch 15 -o bad.ckpt
[ "$(grep -c 'over 2 ranks' "$T/err")" -eq 1 ] && pass "said once, by rank 0" || fail "said once" "$(cat "$T/err")"
check_fails "4 ranks of 4 pairs cannot hold micro-batches of 8" 2 \
    "each rank's 4 pairs are not whole micro-batches of 8" run 4 ntxent-step "${model[@]}" --batch 16 --micro-batch 8 -o bad.ckpt
EXTRA="--tau 0.3" check_fails "a rank with other options" 2 "rank 1: started with other options than rank 0" \
    run 2 ./rank.sh "${model[@]}" "${train[@]}" -o bad.ckpt
AUG=8 check_fails "a rank with another stream (augment's seed)" 1 "rank 1: its stream differs from rank 0's" \
    run 2 ./rank.sh "${model[@]}" "${train[@]}" -o bad.ckpt
NOSHARD=1 check_fails "ranks fed whole streams" 1 "rank [01] of 2, batch 16, reads a whole stream: feed it pair-sample --shard [01]/2 --batch 16" \
    run 2 -x NOSHARD ./rank.sh "${model[@]}" "${train[@]}" -o bad.ckpt
[ ! -e bad.ckpt ] && pass "no checkpoint from a bad launch" || fail "bad launch wrote bad.ckpt"

# A killed rank: rank 1's trainer gets SIGKILL during a long run that saves
# every step; mpirun ends the run within seconds, naming the rank, and the
# last checkpoint reads.
rm -f pid.* kill.ckpt
start=$EPOCHREALTIME
EPOCHS=40 run 2 --mca btl self,vader ./rank.sh "${model[@]}" "${train[@]}" --save-every 1 -o kill.ckpt \
    > /dev/null 2> errkill.txt &
mpirun_pid=$!
for _ in $(seq 600); do
    [ -s kill.ckpt ] && [ -s pid.1 ] && break
    sleep 0.1
done
kill -9 "$(cat pid.1)"
killed=$EPOCHREALTIME
wait $mpirun_pid; rc=$?
took=$(awk -v a="$killed" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && awk -v t="$took" 'BEGIN { exit !(t < 20) }'; then
    pass "a killed rank ends the run (status $rc, ${took} s after the kill)"
else
    fail "killed rank" "status $rc after ${took} s" "$(tail -5 errkill.txt)"
fi
# mpirun's own message names the process that failed first as [[job,1],rank].
grep -A2 'The first process to do so was' errkill.txt | grep -q 'Process name: \[\[[0-9]*,1\],1\]' \
    && pass "mpirun's message names rank 1" || fail "message names the rank" "$(cat errkill.txt)"
mts count kill.ckpt > /dev/null 2>&1 && [ -n "$(head_of kill.ckpt)" ] \
    && pass "the last checkpoint reads ($(head_of kill.ckpt | grep -o 'step=[0-9]*'))" || fail "checkpoint after the kill"
