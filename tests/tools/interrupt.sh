#!/usr/bin/env bash
# Interruption: ntxent-step killed with SIGKILL at random points leaves its
# last checkpoint loadable, and --resume from it reaches the same weights as
# an uninterrupted run, bit for bit; a consumer that dies makes the stages
# before it exit quietly; SIGINT to a whole pipeline leaves a checkpoint of
# the last step, also when the trainer was waiting for input.
. "$(dirname "$0")/common.bash"
cd "$T"
export OMP_WAIT_POLICY=passive
# 4 classes of gratings, 1 x 16 x 16; 192 train images: 6 steps per epoch.
mkpack p.pack 160 2 4 1 16 16 stripes
model=(--model resnet18 --width 0.25 --stem small --head-layers 2)
train=(--batch 32 --tau 0.2 --lr 0.3 --lr-scaling sqrt --warmup-epochs 1 -T 1)
steps=12
pairs() { pair-sample -q -m simclr -e 2 --seed 5 --start "$1" p.pack | augment -q -T 1 --seed 7 --size 16 --area 0.3,1; }
weights() { mts cat --no-headers -z 0 "$1"; }
step_of() { mts show -n 0 "$1" 2>/dev/null | head -1 | grep -o ' step=[0-9]*' | cut -d= -f2; }
# wait_for_step FILE N: until FILE holds a checkpoint at step N or later.
wait_for_step() {
    for _ in $(seq 300); do
        s=$(step_of "$1")
        [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# trainer FILE: runs ntxent-step after writing its process id to FILE.
trainer() { local pidfile=$1; shift; echo "$BASHPID" > "$pidfile"; exec ntxent-step "$@"; }

start=$EPOCHREALTIME
pairs 0 | ntxent-step -q "${model[@]}" "${train[@]}" -o ref.ckpt
duration=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
weights ref.ckpt > ref.bin

# SIGKILL at a random point (20% to 90% of an uninterrupted run's time) of a
# run that saves every step, then --resume from whatever checkpoint is there
# (if none, start again) to the end.
resumed_from=()
for seed in 1 2 3 4 5; do
    RANDOM=$seed
    delay=$(awk -v d="$duration" -v r=$((RANDOM % 71 + 20)) 'BEGIN { print d * r / 100 }')
    rm -f run.ckpt .run.ckpt.* run.pid
    { pairs 0 | trainer run.pid -q "${model[@]}" "${train[@]}" --save-every 1 -o run.ckpt; } 2>/dev/null &
    sleep "$delay"
    while [ ! -s run.pid ]; do sleep 0.05; done
    kill -9 "$(cat run.pid)" 2>/dev/null
    wait
    temps=$(find . -maxdepth 1 -name '.run.ckpt.*' | wc -l)
    if [ -e run.ckpt ]; then
        s=$(step_of run.ckpt)
        if ! mts count run.ckpt > /dev/null 2>err.txt || [ -z "$s" ]; then
            fail "seed $seed: the checkpoint left by SIGKILL reads" "$(cat err.txt)"
            continue
        fi
        pairs $((s * 32)) | ntxent-step -q "${model[@]}" "${train[@]}" --resume run.ckpt -o run.ckpt 2>err.txt
    else
        s=none
        pairs 0 | ntxent-step -q "${model[@]}" "${train[@]}" -o run.ckpt 2>err.txt
    fi
    resumed_from+=("$s")
    if weights run.ckpt | cmp -s - ref.bin; then
        pass "seed $seed: SIGKILL after ${delay} s, the checkpoint at step $s loads ($temps temporary left), --resume gives the same weights"
    else
        fail "seed $seed: resume from step $s" "$(cat err.txt)"
    fi
done
mid=0
for s in "${resumed_from[@]}"; do [ "$s" != none ] && [ "$s" -gt 0 ] && [ "$s" -lt $steps ] && mid=1; done
[ $mid -eq 1 ] && pass "kills fell in the middle of the run (resumed from: ${resumed_from[*]})" \
    || fail "kills in the middle" "resumed from: ${resumed_from[*]}"

# A consumer that dies: the stages before it exit quietly, with status 0.
rm -f dead.pid
bash -c "pair-sample -q -m simclr -e 100 p.pack 2>ps.err | augment -q --size 16 2>au.err \
    | { echo \$BASHPID > dead.pid; exec ntxent-step -q ${model[*]} ${train[*]} -o dead.ckpt 2>/dev/null; }
    echo \${PIPESTATUS[*]} > status" 2>/dev/null &
while [ ! -s dead.pid ]; do sleep 0.05; done
sleep 0.5
kill -9 "$(cat dead.pid)"
wait
[ "$(cat status)" = "0 0 137" ] && [ ! -s ps.err ] && [ ! -s au.err ] \
    && pass "the trainer killed: pair-sample and augment exit quietly with status 0" \
    || fail "quiet upstream" "statuses $(cat status)" "pair-sample: $(cat ps.err)" "augment: $(cat au.err)"

# SIGINT to the whole pipeline (its own process group, as a terminal's shell
# makes it) once it has trained a step: every stage stops, the trainer saves
# its last step and exits 130, and --resume continues from that checkpoint.
set -m
bash -c "pair-sample -q -m simclr -e 100 --seed 5 p.pack | augment -q -T 1 --seed 7 --size 16 \
    | ntxent-step ${model[*]} ${train[*]} --save-every 1 -o int.ckpt; echo \${PIPESTATUS[*]} > status" 2> int.err &
group=$!
set +m
wait_for_step int.ckpt 1
kill -INT -- -$group
wait $group
s=$(step_of int.ckpt)
if [ "$(cat status)" = "130 130 130" ] && [ -n "$s" ] && ! grep -Eq '^(pair-sample|augment):' int.err \
    && grep -q "interrupted at step $s: checkpoint saved" int.err; then
    pass "SIGINT to the pipeline: every stage stops (130), the trainer saves step $s"
else
    fail "SIGINT to the pipeline" "statuses $(cat status), step '$s'" "$(cat int.err)"
fi
pair-sample -q -m simclr -e 100 --seed 5 --start $((s * 32)) p.pack | mts cat --take 64 | augment -q --seed 7 --size 16 \
    | ntxent-step -q "${model[@]}" "${train[@]}" --resume int.ckpt -o int.ckpt 2>err.txt
[ "$(step_of int.ckpt)" = $((s + 2)) ] && pass "... and --resume continues from it (step $s to $((s + 2)))" \
    || fail "resume after SIGINT" "$(cat err.txt)"

# SIGINT while the trainer waits for input: the producer, stopped too, has
# cut the stream inside a frame; for the trainer that is the end of its
# input, not an error.  40% of the stream holds 4 batches and a part.
pairs 0 > all.mts
bytes=$(($(stat -c %s all.mts) * 4 / 10))
set -m
bash -c "{ head -c $bytes all.mts; sleep 60; } | ntxent-step ${model[*]} ${train[*]} --save-every 1 \
    -o wait.ckpt; echo \$? > status" 2> wait.err &
group=$!
set +m
wait_for_step wait.ckpt 4
sleep 0.5
kill -INT -- -$group
wait $group
s=$(step_of wait.ckpt)
[ "$(cat status)" = 130 ] && [ "$s" = 4 ] && grep -q "interrupted at step 4: checkpoint saved" wait.err \
    && pass "SIGINT while waiting for input: exit 130, step 4 saved, no truncation error" \
    || fail "SIGINT while waiting" "status $(cat status), step '$s'" "$(cat wait.err)"

# A tool started under nohup keeps running through a hangup (its handlers
# leave alone the signals that were ignored when it started).
{ cat all.mts; sleep 1; } | { echo "$BASHPID" > hup.pid; exec nohup mts cat > hup.mts 2>/dev/null; } &
while [ ! -s hup.pid ]; do sleep 0.05; done
sleep 0.3
kill -HUP "$(cat hup.pid)"
wait $!
rc=$?
[ $rc -eq 0 ] && cmp -s hup.mts all.mts && pass "nohup: a hangup does not stop a tool" || fail "nohup" "status $rc"

# finetune the same way: SIGINT while it waits for input saves and exits 130.
pair-sample -q -m single --split all p.pack | augment -q --eval --size 16 > images.mts
bytes=$(($(stat -c %s images.mts) * 4 / 10))
set -m
bash -c "{ head -c $bytes images.mts; sleep 60; } | finetune --random-init ${model[*]} --batch 16 -T 1 \
    -o ft.ckpt; echo \$? > status" 2> ft.err &
group=$!
set +m
sleep 2
kill -INT -- -$group
wait $group
[ "$(cat status)" = 130 ] && mts count ft.ckpt > /dev/null && ! grep -q truncated ft.err \
    && pass "finetune: SIGINT while waiting for input: exit 130, the checkpoint saved" \
    || fail "finetune SIGINT" "status $(cat status)" "$(cat ft.err)"
