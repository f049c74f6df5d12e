#!/usr/bin/env bash
# augment: shapes and dtypes out, header, pass-through keys, pair records and
# view seeding, same bytes whatever the thread count, --eval, --u8, u16 and
# grey input, the contact sheet, bad input and usage errors.
. "$(dirname "$0")/common.bash"
cd "$T"
records() { mts show "$@" | awk '$2 == "record" { $1 = ""; print }'; }
header() { mts show --no-stats "$@" | awk '$2 == "header"'; }
# tensor KEY FILE: the dtype, shape and stats of tensor KEY, one line a record.
tensor() { mts show "$2" | grep -o " $1=[^{]*{[^}]*}"; }
# body FILE: the bytes after the first header (the records).
body() { tail -c +$(( $(mts show --no-stats "$1" | awk '$2 == "record" { print $1; exit }') + 1 )) "$1"; }

mkstream 6 u8 3 40 50 > img.mts
out=$(augment -s 32 < img.mts | mts show)
head -1 <<<"$out" | grep -q 'tool="augment" args=\["-s", "32"\] records=6 image_size=32 image_dtype="f32" channels=3 image_mean=\[0.5, 0.5, 0.5\] image_std=\[0.5, 0.5, 0.5\]' \
    && pass "header: input keys kept, tool/args replaced, image_size/dtype/channels/mean/std added" \
    || fail "header" "$(head -1 <<<"$out")"
n=$(grep -c 'record case="case00000[0-2]" inst=[01] image=f32\[3,32,32\]{min -' <<<"$out")
[ "$n" -eq 6 ] && pass "records keep their keys; image becomes f32 (3, 32, 32) in [-1, 1]" || fail "f32 records" "$out"
bad=$(grep -o ' image=[^{]*{[^}]*}' <<<"$out" | awk '{ if ($2 < -1 || $4 > 1) print }' | wc -l)
[ "$bad" -eq 0 ] && pass "normalised values stay in [-1, 1]" || fail "range" "$out"

out=$(augment -s 20 --u8 < img.mts | mts show)
head -1 <<<"$out" | grep -q 'image_size=20 image_dtype="u8" channels=3$' && [ "$(grep -c 'image=u8\[3,20,20\]' <<<"$out")" -eq 6 ] \
    && pass "--u8: u8 (3, 20, 20), no mean/std in the header" || fail "--u8" "$out"

# Same seed, same bytes, whatever the thread count; 300 records span several
# windows of 64.
mkpairs 300 3 48 40 micle > pairs.mts
MEDSSL_THREADS=1 augment -s 24 --seed 5 < pairs.mts > t1.mts
MEDSSL_THREADS=2 augment -s 24 --seed 5 < pairs.mts > t2.mts
MEDSSL_THREADS=3 augment -s 24 --seed 5 < pairs.mts > t3.mts
same "same seed, same bytes with 1 and 2 threads (MEDSSL_THREADS)" t1.mts t2.mts
same "same bytes with 3 threads on 2 cores" t1.mts t3.mts
augment -s 24 --seed 5 -T 2 < pairs.mts > tt2.mts
body t1.mts > b1; body tt2.mts > b2
same "--threads 2: the same records (the header's args differ)" b1 b2
medical="--rotate 30 --vflip-p 0.5 --noise 0.05 --noise-p 0.7"
MEDSSL_THREADS=1 augment -s 24 --seed 5 $medical < pairs.mts > m1.mts
MEDSSL_THREADS=2 augment -s 24 --seed 5 $medical < pairs.mts > m2.mts
same "medical options: same bytes with 1 and 2 threads" m1.mts m2.mts
augment -s 24 --seed 6 < pairs.mts > s6.mts
nd=$(paste <(tensor a t1.mts) <(tensor a s6.mts) | awk -F'\t' '$1 == $2' | wc -l)
[ "$nd" -eq 0 ] && pass "another seed: every record differs" || fail "seed" "$nd records alike"

# Pair records: keys and their order kept, both views augmented, differently.
n=$(mts show --no-stats t1.mts | grep -c 'record case="case[0-9]*" inst_a=0 inst_b=1 a=f32\[3,24,24\] b=f32\[3,24,24\] label=[012] split="train" epoch=[12] index=[0-9]*$')
[ "$n" -eq 300 ] && pass "pair records: a and b f32 (3, 24, 24), other keys in order" || fail "pairs" "$(mts show --no-stats t1.mts | head -2)"
mkpairs 50 3 48 40 simclr > simclr.mts
augment -s 24 < simclr.mts > simclr-out.mts
alike=$(paste <(tensor a simclr.mts | cut -d= -f2) <(tensor b simclr.mts | cut -d= -f2) | awk -F'\t' '$1 == $2' | wc -l)
views=$(paste <(tensor a simclr-out.mts | cut -d= -f2) <(tensor b simclr-out.mts | cut -d= -f2) | awk -F'\t' '$1 == $2' | wc -l)
[ "$alike" -eq 50 ] && [ "$views" -eq 0 ] && pass "simclr pairs (a == b in): the two views differ" || fail "views" "alike $alike, views alike $views"
# "image" and "a" are view 0, "b" view 1; epoch and index come from the record.
mkpairs 50 3 48 40 single > single.mts
a=$(augment -s 24 --seed 3 < simclr.mts > o1.mts; tensor a o1.mts | cut -d= -f2)
i=$(augment -s 24 --seed 3 < single.mts > o2.mts; tensor image o2.mts | cut -d= -f2)
[ "$(wc -l <<<"$a")" -eq 50 ] && [ "$a" = "$i" ] && pass "view 0: an image record and the a of a pair with the same epoch/index agree" \
    || fail "view 0" "$(paste <(head -2 <<<"$a") <(head -2 <<<"$i"))"
augment -s 24 --seed 3 < pairs.mts | mts cat --skip 100 > whole.mts
mts cat --skip 100 pairs.mts | augment -s 24 --seed 3 > cut.mts
same "epoch and index from the record: cutting the input first changes nothing" whole.mts cut.mts
augment -s 24 --seed 3 < img.mts | mts cat --skip 2 > whole.mts
mts cat --skip 2 img.mts | augment -s 24 --seed 3 > cut.mts
cmp -s whole.mts cut.mts && fail "record counter" "records without index got the same views after a cut" \
    || pass "without epoch/index, the record counter seeds the views"

# --eval: no randomness; any seed, either view, gives the same records.
augment --eval -s 24 --seed 1 < pairs.mts > e1.mts
augment --eval -s 24 --seed 2 < pairs.mts > e2.mts
body e1.mts > b1; body e2.mts > b2
augment --eval -s 24 < simclr.mts > e3.mts
ab=$(paste <(tensor a e3.mts | cut -d= -f2) <(tensor b e3.mts | cut -d= -f2) | awk -F'\t' '$1 != $2' | wc -l)
cmp -s b1 b2 && [ "$ab" -eq 0 ] && pass "--eval: the same whatever the seed or view" || fail "--eval" "$ab pairs differ"

# u16 and grey input.
mkstream 4 u16 1 30 36 > u16.mts
out=$(augment -s 16 < u16.mts | mts show)
head -1 <<<"$out" | grep -q 'channels=1 image_mean=\[0.5\] image_std=\[0.5\]' && [ "$(grep -c 'image=f32\[1,16,16\]' <<<"$out")" -eq 4 ] \
    && pass "grey u16 input: 1 channel out" || fail "u16" "$out"
augment -s 16 --u8 --eval < u16.mts > u8.mts
out=$(tensor image u8.mts)
# mkstream's u16 pattern is v * 256 with v in [0, 134]: about v in 8 bits.
bad=$(awk '{ if ($2 < 0 || $4 > 140 || $4 < 60) print }' <<<"$out" | wc -l)
[ "$bad" -eq 0 ] && pass "u16 is read at full 16-bit range (--u8 shows 8-bit values)" || fail "u16 range" "$out"
out=$(augment -s 16 --channels 3 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 < u16.mts | mts show)
head -1 <<<"$out" | grep -q 'channels=3 image_mean=\[0.485' && [ "$(grep -c 'image=f32\[3,16,16\]' <<<"$out")" -eq 4 ] \
    && pass "--channels 3 from grey, per-channel --mean/--std" || fail "--channels" "$out"

# Headers: concatenated streams keep theirs; pair-sample's size/dtype go.
out=$(cat img.mts pairs.mts | augment -s 8 | mts show --no-stats | awk '$2 == "header"')
[ "$(wc -l <<<"$out")" -eq 2 ] && grep -q 'tool="augment" .* mode="micle" pairs_per_epoch=300 image_size=8' <<<"$out" \
    && pass "a later header is passed through the same way" || fail "headers" "$out"
printf '\x83\xa3mts\x01\xa4size\x10\xa5dtype\xa2u8' | augment -s 8 > h.mts
out=$(header h.mts)
grep -q 'image_size=8' <<<"$out" && ! grep -q ' size=\| dtype=' <<<"$out" \
    && pass "the input's size and dtype (now wrong) are left out" || fail "size/dtype" "$out"
out=$(augment < /dev/null | mts show)
[ "$(wc -l <<<"$out")" -eq 1 ] && grep -q 'tool="augment"' <<<"$out" && pass "empty input: a header alone" || fail "empty" "$out"

# Contact sheet: K rows, one column per view, 2-pixel gaps.
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'; }
augment -s 24 --sheet sheet.png --sheet-count 4 < pairs.mts > /dev/null
[ "$(png_size sheet.png)" = "50 102" ] && pass "--sheet: 4 pairs, 2 views each: 50 x 102 PNG" || fail "sheet" "$(png_size sheet.png)"
augment -s 24 --u8 --sheet one.png < img.mts > /dev/null
[ "$(png_size one.png)" = "24 154" ] && pass "--sheet: 6 single images (fewer than --sheet-count 8): 24 x 154" \
    || fail "sheet single" "$(png_size one.png)"
check_fails "an unwritable sheet" 1 "cannot write the PNG" augment -s 8 --sheet /nonexistent/s.png < img.mts

# Bad input.
mkstream 2 f32 3 8 8 > f32.mts
check_fails "f32 images are refused with the byte offset" 1 "^augment: stdin: byte [0-9]+: key 'image': dtype f32: augment takes u8 or u16" augment < f32.mts
mkstream 2 u8 2 8 8 > c2.mts
check_fails "2-channel images are refused" 1 "stdin: byte [0-9]+: key 'image': expected an image of shape \(C, H, W\) with C = 1 or 3" augment < c2.mts
mkstream 2 u8 8 8 > r2.mts
check_fails "rank-2 images are refused" 1 "key 'image': expected an image of shape" augment < r2.mts
printf '\x81\xa3mts\x01\x81\xa4case\xa1x' > noimg.mts
check_fails "a record without images" 1 "^augment: stdin: byte 6: the record has no image tensor" augment < noimg.mts
printf '\x81\xa3mts\x01\x82\xa5image\x83\xa5dtype\xa2u8\xa5shape\x93\x01\x02\x02\xa4data\xc4\x04abcd\xa5epoch\xff' > neg.mts
check_fails "a negative epoch" 1 "key 'epoch': -1 is outside" augment < neg.mts
head -c 1000 img.mts > trunc.mts
check_fails "a truncated stream" 1 "trunc.mts: byte [0-9]+: truncated frame" augment trunc.mts
check_fails "a missing file" 1 "nope.mts: cannot open" augment nope.mts

# Usage errors.
check_fails "--size 0" 2 "--size: 0 is out of range" augment -s 0
check_fails "--channels 2" 2 "--channels: 1 or 3" augment --channels 2
check_fails "--mean with 3 values for grey output" 2 "--mean has 3 values, the output has 1 channel" augment --mean 0.1,0.2,0.3 u16.mts
check_fails "--area MAX < MIN" 2 "--area: expected MIN,MAX" augment --area 0.5,0.2
check_fails "--u8 with --std" 2 "--mean and --std go with f32" augment --u8 --std 0.2
check_fails "an unknown option" 2 "unknown option" augment --frobnicate

# A consumer that goes away: augment exits quietly.
mkstream 2000 u8 3 32 32 | augment -s 32 | head -c 10 > /dev/null 2> err
[ ! -s err ] && pass "SIGPIPE exits quietly" || fail "sigpipe" "$(cat err)"
augment --help | grep -q '^usage: augment' && pass "--help" || fail "--help"
augment --version | grep -q 'medssl' && pass "--version" || fail "--version"

# The real pipeline, when its tools are built: a pack, MICLe pairs, views.
if command -v mkpack > /dev/null && command -v pair-sample > /dev/null; then
    mkpack p.pack 12 3 2 3 20 20 > /dev/null
    out=$(pair-sample -q -m micle -e 2 p.pack | augment -s 16 | mts show)
    [ "$(grep -c 'a=f32\[3,16,16\].* b=f32\[3,16,16\]' <<<"$out")" -eq "$(awk '$2 == "record"' <<<"$out" | wc -l)" ] \
        && grep -q 'pairs_per_epoch=[0-9]* epochs=2' <<<"$out" \
        && pass "pair-sample | augment: every pair augmented, the sampler's header kept" || fail "pipeline" "$(head -3 <<<"$out")"
fi

# The crop and resize agree with PIL's bilinear resize of the same box.
if $PY -c 'import msgpack, numpy, PIL' 2>/dev/null; then
    augment --eval --u8 -s 24 img.mts > eval.mts
    out=$($PY - img.mts eval.mts <<'EOF'
import sys, msgpack, numpy as np
from PIL import Image
def images(path):
    for f in msgpack.Unpacker(open(path, "rb"), raw=False):
        if "mts" not in f:
            t = f["image"]
            yield np.frombuffer(t["data"], np.uint8).reshape(t["shape"])
worst = 0
for src, got in zip(images(sys.argv[1]), images(sys.argv[2])):
    c, h, w = src.shape
    side = 0.875 * min(h, w)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    for k in range(c):
        ref = np.asarray(Image.fromarray(src[k]).resize((24, 24), Image.BILINEAR, box=box), np.int16)
        worst = max(worst, int(np.abs(ref - got[k].astype(np.int16)).max()))
print(worst)
EOF
)
    [ "$out" -le 1 ] && pass "--eval crop + resize matches PIL's bilinear within 1/255 ($out)" || fail "PIL" "max difference $out"
else
    echo "skip - comparison with PIL: python3-pil, -numpy or -msgpack not installed"
fi

# --targets (PCRL): per view the colour-free view, flipped and turned as its
# code says, and the code itself.  With the colour operations on, the
# target is the u8 view without them: render each view again with them off
# (same seed: same crop, rotation and flips) and undo the code.
mkpairs 12 3 48 40 micle > tpairs.mts
augment -q --seed 5 -s 24 --rotate 20 --u8 --targets < tpairs.mts > targets.mts
augment -q --seed 5 -s 24 --rotate 20 --u8 --jitter-p 0 --grey-p 0 --blur-p 0 < tpairs.mts > plain.mts
augment -q --seed 5 -s 24 --targets < tpairs.mts > t1.mts
augment -q --seed 5 -s 24 < tpairs.mts > t0.mts
out=$(mts show --no-stats targets.mts | awk '$2 == "record"')
[ "$(grep -c 'a=u8\[3,24,24\] a_target=u8\[3,24,24\] a_code=f32\[6\].*b=u8\[3,24,24\] b_target=u8\[3,24,24\] b_code=f32\[6\]' <<<"$out")" -eq 12 ] \
    && pass "--targets: KEY_target and KEY_code after each view" || fail "--targets keys" "$out"
if $PY -c 'import msgpack, numpy' 2>/dev/null; then
    if res=$($PY - targets.mts plain.mts t1.mts t0.mts <<'PY' 2>&1
import sys, msgpack, numpy as np
def records(path):
    return [r for r in msgpack.Unpacker(open(path, "rb"), raw=False) if "mts" not in r]
def arr(t):
    return np.frombuffer(t["data"], dtype={"u8": "u1", "f32": "<f4"}[t["dtype"]]).reshape(t["shape"])
seen = set()
for t, p in zip(records(sys.argv[1]), records(sys.argv[2])):
    for v in "ab":
        code = arr(t[v + "_code"])
        k = int(np.argmax(code[2:]))
        assert sorted(code[2:]) == [0, 0, 0, 1] and code[0] in (0, 1) and code[1] in (0, 1), code
        seen.add((int(code[0]), int(code[1]), k))
        want = arr(p[v])
        if code[0]: want = np.flip(want, axis=1)
        if code[1]: want = np.flip(want, axis=2)
        want = np.rot90(want, k=k, axes=(1, 2))
        assert np.array_equal(arr(t[v + "_target"]), want), (v, code)
for t, p in zip(records(sys.argv[3]), records(sys.argv[4])):
    for v in "ab":   # the views themselves do not change with --targets
        assert t[v]["data"] == p[v]["data"], v
        assert 0 <= arr(t[v + "_target"]).min() and arr(t[v + "_target"]).max() <= 1
print(len(seen))
PY
); then
        [ "$res" -ge 4 ] && pass "--targets: the target is the colour-free view under its code ($res distinct codes); views unchanged, f32 targets in [0, 1]" \
            || fail "--targets codes" "only $res distinct codes"
    else
        fail "--targets against the colour-free view" "$res"
    fi
else
    echo "skip - --targets against the colour-free view: python3-msgpack or python3-numpy not installed"
fi
# Hard edges ring under resampling; targets stay in [0, 1] all the same.
if $PY -c 'import msgpack, numpy, PIL' 2>/dev/null; then
    $PY - <<'PY'
import numpy as np
from PIL import Image
with open("checks.csv", "w") as f:
    f.write("case,path,label,split\n")
    for i in range(4):
        y, x = np.mgrid[0:60, 0:60]
        Image.fromarray((((x // (3 + i)) + (y // (3 + i))) % 2 * 255).astype(np.uint8)).save(f"check{i}.png")
        f.write(f"c{i},check{i}.png,0,train\n")
PY
    case-pack -q -c 1 --size 60 -o checks.pack checks.csv
    pair-sample -q -e 8 checks.pack | augment -q --seed 2 -s 16 --targets > ctargets.mts
    if res=$($PY - ctargets.mts <<'PY' 2>&1
import sys, msgpack, numpy as np
lo, hi = 1, 0
for r in msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False):
    for v in "ab":
        if v + "_target" in r:
            t = np.frombuffer(r[v + "_target"]["data"], "<f4")
            lo, hi = min(lo, t.min()), max(hi, t.max())
assert 0 <= lo and hi <= 1, (lo, hi)
print(lo, hi)
PY
); then pass "--targets of hard edges stay in [0, 1] ($res)"; else fail "--targets of hard edges" "$res"; fi
fi
