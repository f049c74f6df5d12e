#!/usr/bin/env bash
# pair-sample: simclr/micle/single semantics, seeds, resumption, label
# fractions, thread independence, bounded memory on a large pack.
. "$(dirname "$0")/common.bash"
cd "$T"
# 60 cases with 1..4 instances, 3 classes; every fifth case is "test".
mkpack s.pack 60 4 3 1 4 4
fields() { mts show --no-stats "$@" | awk '$2 == "record" { $1 = ""; print }'; }

out=$(pair-sample -q s.pack | mts show --no-stats)
head -1 <<<"$out" | grep -q 'mode="simclr" unit="image" pairs_per_epoch=120 epochs=1' \
    && pass "simclr: one pair per train image (120)" || fail "simclr count" "$(head -1 <<<"$out")"
bad=$(awk '$2 == "record" { split($4, a, "="); split($5, b, "="); if (a[2] != b[2]) print }' <<<"$out" | wc -l)
[ "$bad" -eq 0 ] && pass "simclr: inst_a == inst_b" || fail "simclr pairs" "$bad differ"
[ "$(grep -c 'split="test"' <<<"$out")" -eq 0 ] && pass "only the train split by default" || fail "split"

out=$(pair-sample -q -m micle -e 200 --seed 3 s.pack | mts show --no-stats)
head -1 <<<"$out" | grep -q 'unit="case" pairs_per_epoch=48 epochs=200' && pass "micle: one pair per train case per epoch" \
    || fail "micle count" "$(head -1 <<<"$out")"
# Case k has 1 + k%4 instances: a case with 2+ never pairs an image with itself.
self=$(awk '$2 == "record" { n = substr($3, 11, 5) % 4 + 1; split($4, a, "="); split($5, b, "=");
            if (n >= 2 && a[2] == b[2]) print }' <<<"$out" | wc -l)
single=$(awk '$2 == "record" { n = substr($3, 11, 5) % 4 + 1; split($4, a, "="); split($5, b, "=");
            if (n == 1 && a[2] != b[2]) print }' <<<"$out" | wc -l)
[ "$self" -eq 0 ] && [ "$single" -eq 0 ] && pass "micle: distinct instances when a case has two or more, else the same" \
    || fail "micle pairs" "self=$self single=$single"
# Case 3 has 4 instances: 12 ordered pairs, 200 draws: each about 16.7.
counts=$(awk '$2 == "record" && $3 == "case=\"case00003\"" { print $4, $5 }' <<<"$out" | sort | uniq -c | awk '{print $1}')
nd=$(wc -l <<<"$counts"); mn=$(sort -n <<<"$counts" | head -1); mx=$(sort -n <<<"$counts" | tail -1)
[ "$nd" -eq 12 ] && [ "$mn" -ge 5 ] && [ "$mx" -le 32 ] && pass "micle: all 12 ordered pairs of a 4-image case drawn ($mn..$mx of 200)" \
    || fail "micle uniform" "$nd pairs, min $mn max $mx"
# Image content follows the instance index (mkpack: value = case*7 + inst*50).
okc=$(awk '$2 == "record" { c = substr($3, 11, 5) + 0; split($4, a, "="); v = (c * 7 + a[2] * 50) % 256;
           if ($0 !~ "a=u8\\[1,4,4\\]\\{min " v " max") print }' <<<"$(pair-sample -q -m micle s.pack | mts show)" | wc -l)
[ "$okc" -eq 0 ] && pass "the a image is instance inst_a of the case" || fail "content" "$okc wrong"

out=$(pair-sample -q -m single --split all -e 2 s.pack | mts show --no-stats)
n=$(awk '$2 == "record" && $7 == "epoch=0" { print $3, $4 }' <<<"$out" | sort -u | wc -l)
[ "$n" -eq 150 ] && [ "$(grep -c 'epoch=0' <<<"$out")" -eq 150 ] && pass "single: every image once per epoch (150)" \
    || fail "single" "$n"
grep -q 'label=' <<<"$(sed -n 2p <<<"$out")" && pass "single passes labels through" || fail "labels"

pair-sample -q -m micle -e 3 --seed 7 s.pack > a.mts
pair-sample -q -m micle -e 3 --seed 7 s.pack > b.mts
same "same seed, same bytes" a.mts b.mts
OMP_NUM_THREADS=1 pair-sample -q -m micle -e 3 --seed 7 s.pack > c.mts
same "the same bytes with one thread" a.mts c.mts
pair-sample -q -m micle -e 3 --seed 8 s.pack > d.mts
cmp -s a.mts d.mts && fail "another seed, another order" || pass "another seed, another order"
a1=$(fields a.mts | sed -n '1,48p' | awk '{print $2}'); a2=$(fields a.mts | sed -n '49,96p' | awk '{print $2}')
[ "$a1" != "$a2" ] && pass "a new permutation every epoch" || fail "epochs shuffled"

# Resumption: --start N gives exactly the records after the first N.
pair-sample -q -m micle -e 3 --seed 7 --start 70 s.pack > r.mts
[ "$(fields r.mts)" = "$(mts cat --skip 70 a.mts | fields)" ] && pass "--start 70 continues the same sequence" \
    || fail "start"
grep -q 'start=70' <<<"$(mts show r.mts | head -1)" && pass "the header says where it started" || fail "start header"

# Sharding: rank R of K keeps the R-th slice of every run of --batch records
# (counted from the first record of epoch 0, so --start keeps the runs), with
# the records' own epoch and index; dealing the shards' slices back in turn
# gives the unsharded stream.  micle: 48 pairs an epoch, 3 epochs, batch 8.
deal() {  # deal K SLICE FILES...: the records of the files, a slice of each in turn
    awk -v k="$1" -v s="$2" 'FNR == 1 { f++ } { r[f, c[f]++] = $0 }
        END { for (i = 0; i < c[1]; i += s) for (j = 1; j <= k; j++) for (q = i; q < i + s && (j, q) in r; q++) print r[j, q] }' "${@:3}"
}
for k in 2 4; do
    for r in $(seq 0 $((k - 1))); do
        pair-sample -q -m micle -e 3 --seed 7 --shard $r/$k --batch 8 s.pack | fields > "sh$r.txt"
    done
    [ "$(deal $k $((8 / k)) $(for r in $(seq 0 $((k - 1))); do echo "sh$r.txt"; done))" = "$(fields a.mts)" ] \
        && pass "--shard R/$k --batch 8: the shards' slices dealt in turn give the whole stream" || fail "shard $k"
done
for r in 0 1; do
    pair-sample -q -m micle -e 3 --seed 7 --start 16 --shard $r/2 --batch 8 s.pack | fields > "st$r.txt"
done
[ "$(deal 2 4 st0.txt st1.txt)" = "$(mts cat --skip 16 a.mts | fields)" ] \
    && pass "--shard with --start 16: the same runs of 8" || fail "shard start"
grep -q 'shard=\[1, 2, 8\]' <<<"$(pair-sample -q --shard 1/2 --batch 8 s.pack | mts show | head -1)" \
    && pass "the header names the shard and its batch" || fail "shard header" "$(pair-sample -q --shard 1/2 --batch 8 s.pack | mts show | head -1)"
check_fails "--shard without --batch" 2 "--shard needs --batch" pair-sample --shard 0/2 s.pack
check_fails "--shard 2/2: no such rank" 2 "--shard R" pair-sample --shard 2/2 --batch 8 s.pack
check_fails "--batch 6 over 4 shards" 2 "batch of 6 does not split into 4" pair-sample --shard 0/4 --batch 6 s.pack
check_fails "--shard 1-2" 2 "is not R/K" pair-sample --shard 1-2 --batch 8 s.pack

# --drop-last --batch 10: each epoch keeps the first 40 of its 48 records,
# as drawn without it; shards and --start count in that shorter epoch.
fields a.mts | awk '(NR - 1) % 48 < 40' > kept.txt
pair-sample -q -m micle -e 3 --seed 7 --drop-last --batch 10 s.pack > dl.mts
[ "$(fields dl.mts)" = "$(cat kept.txt)" ] && pass "--drop-last --batch 10: the first 40 records of every epoch of 48" \
    || fail "drop-last" "$(fields dl.mts | wc -l) records"
grep -q 'pairs_per_epoch=40 ' <<<"$(mts show dl.mts | head -1)" && pass "--drop-last: the header's pairs_per_epoch is 40" \
    || fail "drop-last header" "$(mts show dl.mts | head -1)"
for r in 0 1; do
    pair-sample -q -m micle -e 3 --seed 7 --drop-last --shard $r/2 --batch 10 s.pack | fields > "dl$r.txt"
done
[ "$(deal 2 5 dl0.txt dl1.txt)" = "$(cat kept.txt)" ] && pass "--drop-last --shard R/2: the slices give the --drop-last stream" \
    || fail "drop-last shards"
[ "$(pair-sample -q -m micle -e 3 --seed 7 --drop-last --batch 10 --start 50 s.pack | fields)" = "$(tail -n +51 kept.txt)" ] \
    && pass "--drop-last --start 50: the records after the first 50 of the shorter epochs" || fail "drop-last start"
check_fails "--drop-last without --batch" 2 "--drop-last needs --batch" pair-sample --drop-last s.pack
check_fails "--drop-last: an epoch shorter than a batch" 1 "120 images, fewer than one batch of 200" \
    pair-sample -m simclr --drop-last --batch 200 s.pack
check_fails "--batch alone" 2 "give --shard R/K or --drop-last too" pair-sample --batch 8 s.pack

# Label fractions: stratified by class, nested across fractions.
lf() { pair-sample -q -m single -f "$1" --label-seed 5 s.pack | mts show --no-stats | awk '$2 == "record" { print $3 }' | sort -u; }
s10=$(lf 0.1); s50=$(lf 0.5)
[ "$(wc -l <<<"$s10")" -eq 6 ] && [ "$(wc -l <<<"$s50")" -eq 24 ] && pass "fractions 0.1 and 0.5: 6 and 24 of 48 train cases" \
    || fail "fraction counts" "$(wc -l <<<"$s10") $(wc -l <<<"$s50")"
[ -z "$(comm -23 <(echo "$s10") <(echo "$s50"))" ] && pass "the 10% subset is inside the 50% subset" || fail "nested"
per=$(pair-sample -q -m micle -f 0.5 --label-seed 5 s.pack | mts show --no-stats | awk '$2 == "record" { print $NF }' | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')
[ "$per" = "8 8 8 " ] && pass "stratified: 8 cases of each class" || fail "stratified" "$per"
pair-sample -m single -f 0.1 s.pack 2>&1 >/dev/null | grep -q 'label fraction 0.1 (seed 0): 6 cases' \
    && pass "reports the cases and images used" || fail "report"

check_fails "an unknown split lists the known ones" 1 "no split 'val' in this pack \(it has: train, test\)" pair-sample --split val s.pack
check_fails "--unit case with single" 2 "--mode single goes over images" pair-sample -m single -u case s.pack
check_fails "not a pack" 1 "not a pack" pair-sample a.mts
head -c 2000 s.pack > cut.pack
check_fails "a truncated pack" 1 "incomplete one \(no index footer" pair-sample cut.pack
check_fails "a bad mode" 2 "--mode: 'x' is not simclr, micle or single" pair-sample -m x s.pack

# Bounded memory: a 150 MB pack streams through with a small resident set.
mkpack big.pack 1000 1 2 3 224 224
rss=$( { /usr/bin/time -f '%M' pair-sample -q big.pack | mts count > /dev/null; } 2>&1 | tail -1)
[ "$rss" -lt 60000 ] && pass "a 150 MB pack streams in ${rss} KB of memory" || fail "memory" "peak RSS ${rss} KB"
