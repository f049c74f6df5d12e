#!/usr/bin/env bash
# case-pack: formats (JPEG, PNG, WebP, 8/16-bit and multi-page TIFF), resizing,
# channels, labels, folder trees, bad input, determinism across threads.
. "$(dirname "$0")/common.bash"
cd "$T"

# Test images, made at test time.
vips black black.v 64 48 --bands 3
vips linear black.v rgb.jpg 1 100 --uchar
vips linear black.v rgb.png 1 150 --uchar
vips linear black.v rgb.webp 1 200 --uchar
vips black g.v 30 60
vips linear g.v grey.png 1 77 --uchar
vips linear black.v rgba_in.v 1 10 --uchar
vips bandjoin_const rgba_in.v rgba.png 255
mktiff g16.tif 20 10 1 16 1
mktiff pages.tif 20 10 3 16 1
mktiff rgb8.tif 16 16 2 8 3
head -c 3000 /dev/urandom > noise.jpg
head -c 600 rgb.jpg > truncated.jpg

cat > m.csv <<CSV
case,path,label,split
a,rgb.jpg,cat,train
a,rgb.png,cat,train
b,rgb.webp,dog,train
c,grey.png,dog,test
d,rgba.png,cat,test
e,g16.tif,bird,train
f,pages.tif,bird,train
g,rgb8.tif,cat,train
CSV
check "packs JPEG, PNG, WebP, RGBA PNG, 8/16-bit and multi-page TIFF" case-pack -q -o p.pack --size 32 m.csv
out=$(mts show p.pack)
rec() { awk -v c="case=\"$1\"" '$2 == "record" && $3 == c' <<<"$out"; }
grep -q 'images=\[u8\[3,32,43\]{min 100 max 100 mean 100}, u8\[3,32,43\]{min 150 max 150' <<<"$(rec a)" \
    && pass "JPEG and PNG resized to a short side of 32 (64x48 -> 43x32)" || fail "jpeg/png" "$(rec a)"
grep -q 'u8\[3,32,43\]{min 200 max 200' <<<"$(rec b)" && pass "WebP" || fail "webp" "$(rec b)"
grep -q 'u8\[3,64,32\]{min 77 max 77' <<<"$(rec c)" && pass "grey PNG becomes 3 channels, portrait kept" \
    || fail "grey" "$(rec c)"
grep -q 'images=\[u8\[3,32,43\]{min 10 max 10' <<<"$(rec d)" && pass "alpha band dropped" || fail "rgba" "$(rec d)"
[ "$(rec f | grep -o 'u8\[3,32,64\]' | wc -l)" -eq 3 ] && grep -q 'pages=\[0, 1, 2\]' <<<"$(rec f)" \
    && pass "multi-page TIFF: one instance per page" || fail "pages" "$(rec f)"
grep -q 'u8\[3,32,32\].*u8\[3,32,32\].*pages=\[0, 1\]' <<<"$(rec g)" && pass "8-bit RGB TIFF pages" || fail "rgb8 tiff" "$(rec g)"
grep -q 'classes=\["bird", "cat", "dog"\]' <<<"$out" && grep -q 'label=2' <<<"$(rec b)" \
    && pass "classes sorted, labels are indices" || fail "classes" "$(head -1 <<<"$out")"

# 16 bits: kept exactly, or windowed.
printf 'case,path\nk,pages.tif\n' > p16.csv
case-pack -q -o k16.pack --size 0 --keep-16bit -c 1 p16.csv
grep -q 'images=\[u16\[1,10,20\]{min 0 max 1502 mean 751}, u16\[1,10,20\]{min 4099 max 5601 mean 4850}, u16\[1,10,20\]{min 8198 max 9700 mean 8949}\]' \
    <<<"$(mts show k16.pack)" && pass "16-bit pages kept exactly (--keep-16bit --size 0)" || fail "keep16" "$(mts show k16.pack)"
case-pack -q -o w16.pack --size 0 -c 1 --window fixed:0,1502 p16.csv
grep -q 'images=\[u8\[1,10,20\]{min 0 max 255 mean 127.' <<<"$(mts show w16.pack)" \
    && pass "16-bit windowed to 8 bits (fixed window)" || fail "window" "$(mts show w16.pack)"
case-pack -q -o pw.pack --size 0 -c 1 p16.csv
[ "$(mts show pw.pack | grep -o 'u8\[1,10,20\]{min 0 max 255' | wc -l)" -eq 3 ] \
    && pass "default percentile window stretches each page" || fail "percentile" "$(mts show pw.pack)"

check "--crop makes squares" case-pack -q -o c.pack --size 24 --crop -c 1 m.csv
[ "$(mts show c.pack | grep -o 'u8\[1,24,24\]' | wc -l)" -eq 11 ] && pass "--crop: every image 1x24x24" \
    || fail "crop" "$(mts show c.pack)"

# EXIF orientation on the JPEG fast path: a 40x20 photo, bright top-left
# quadrant, tagged 6 (turn 90 degrees clockwise to display) is packed 20
# wide and 40 high with the bright quadrant top-right, as libvips shows it.
vips black q0.v 20 10 && vips linear q0.v q1.v 1 255 --uchar && vips black q2.v 20 10
vips join q1.v q2.v q3.v horizontal && vips black q4.v 40 10 && vips join q3.v q4.v quad.v vertical
vips copy quad.v quad.jpg
perl -0777 -pe 's/\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00/\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00/' quad.jpg > quad6.jpg
printf 'case,path,label\na,quad6.jpg,x\n' > quad.csv
case-pack -q --size 10 -c 1 -o quad.pack quad.csv
quadrants=$(mts cat --no-headers quad.pack | /usr/bin/python3 -c '
import sys, msgpack, numpy as np
r = next(r for r in msgpack.Unpacker(sys.stdin.buffer, raw=False) if "images" in r)
t = r["images"][0]
a = np.frombuffer(t["data"], np.uint8).reshape(t["shape"])[0].astype(float)
print(a.shape, round(a[:8, 6:].mean()), round(a[:8, :4].mean()), round(a[12:].mean()))')
[ "$quadrants" = "(20, 10) 255 0 0" ] && pass "JPEG: the EXIF orientation is applied" || fail "orientation" "$quadrants"

# Sizes come from the source, not from the decoder's size (rounded up at
# its DCT scale, 3/8 here): an 801x601 JPEG is packed as its PNG twin.
vips black odd.v 801 601 --bands 3 && vips linear odd.v odd.jpg 1 90 --uchar && vips linear odd.v odd.png 1 90 --uchar
printf 'case,path,label\na,odd.jpg,x\nb,odd.png,x\n' > odd.csv
case-pack -q --size 224 -o odd.pack odd.csv
sizes=$(mts show odd.pack | grep -o 'u8\[3,[0-9]*,[0-9]*\]' | sort -u)
[ "$sizes" = "u8[3,224,299]" ] && pass "JPEG: the size from the source's (801x601 -> 299x224, as PNG)" \
    || fail "jpeg size" "$sizes"
# Colour to grey: BT.601 luma whatever the format (pure red: 76, as PIL).
vips black red0.v 16 16 --bands 3 && vips linear red0.v red.v "1 1 1" "255 0 0" --uchar
vips copy red.v red.png && vips copy red.v "red.jpg[Q=100]" && vips copy red.v red.webp[lossless]
printf 'case,path,label\na,red.png,x\nb,red.jpg,x\nc,red.webp,x\n' > red.csv
case-pack -q -c 1 --size 16 -o red.pack red.csv
greys=$(mts show red.pack | grep -o 'u8\[1,16,16\]{min [0-9]* max [0-9]*' | sort -u)
[ "$greys" = "u8[1,16,16]{min 76 max 76" ] && pass "grey: BT.601 luma for PNG, JPEG and WebP alike (red -> 76)" \
    || fail "grey" "$greys"
# A long thin image scaled up past --max-pixels is refused, not allocated.
vips black thin.v 2000 2 && vips linear thin.v thin.jpg 1 50 --uchar && vips linear thin.v thin.png 1 50 --uchar
printf 'case,path,label\na,rgb.jpg,x\nb,thin.jpg,x\nc,thin.png,x\n' > thin.csv
case-pack -o thin.pack --size 224 --max-pixels 10000000 thin.csv 2>err.txt; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '2000x2 resized to 224000x224 pixels, over the limit of 10000000 (--max-pixels) (skipped)' err.txt)" -eq 2 ] \
    && pass "an output over --max-pixels is refused (JPEG and PNG)" || fail "thin" "rc=$rc $(cat err.txt)"

# Determinism: the same bytes whatever the thread count.
OMP_NUM_THREADS=1 case-pack -q -o t.pack --size 32 m.csv && mv t.pack t1.pack
OMP_NUM_THREADS=2 case-pack -q -o t.pack --size 32 m.csv && mv t.pack t2.pack
same "the same pack with 1 and 2 threads" t1.pack t2.pack

# Bad files: skipped with the reason, or fatal with --strict.
printf 'case,path,label\nx,rgb.jpg,a\ny,noise.jpg,b\nz,truncated.jpg,a\nw,nothere.png,b\n' > bad.csv
case-pack -o bad.pack --size 16 bad.csv 2>err.txt; rc=$?
[ $rc -eq 0 ] && grep -q 'noise.jpg: not a known image format (skipped)' err.txt \
    && grep -q 'nothere.png: No such file or directory (skipped)' err.txt \
    && grep -q 'truncated.jpg: .*(skipped)' err.txt \
    && grep -q '1 cases, 1 images, 2 classes (multiclass); skipped 3 files, 3 cases' err.txt \
    && pass "unreadable files are named, skipped and counted" || fail "skip" "rc=$rc $(cat err.txt)"
# Library warnings in our form: once per file with a count, silenced by -q.
# A grey PNG carrying an RGB ICC profile (as PIL writes them) makes libpng
# warn at every header parse; the chunk is lifted from an RGB PNG.
vips black b3.v 8 8 --bands 3 && vips copy b3.v rgbicc.png[profile=srgb]
vips gaussnoise noise.v 96 96 --mean 128 --sigma 40 --seed 7 && vips cast noise.v noisy.jpg uchar
/usr/bin/python3 - <<'PY'
import struct
def chunks(d):
    i = 8
    while i < len(d):
        n, = struct.unpack('>I', d[i:i + 4]); yield d[i + 4:i + 8], d[i:i + 12 + n]; i += 12 + n
iccp = [c for t, c in chunks(open('rgbicc.png', 'rb').read()) if t == b'iCCP'][0]
g = open('grey.png', 'rb').read()
out = g[:8] + b''.join(c + (iccp if t == b'IHDR' else b'') for t, c in chunks(g))
open('greyicc.png', 'wb').write(out)
open('greyicc2.png', 'wb').write(out)
# A PNG whose image data fails its CRC, and a JPEG with damaged entropy-coded data.
d = bytearray(g); i = d.find(b'IDAT'); d[i + 8] ^= 0xff; open('crc.png', 'wb').write(d)
d = bytearray(open('noisy.jpg', 'rb').read()); n = len(d)
for k in range(n // 2, n // 2 + 60, 7): d[k] = 0xff if d[k] != 0xff else 0
open('damaged.jpg', 'wb').write(d)
PY
printf 'case,path\nx,greyicc.png\ny,greyicc2.png\nz,rgb.png\n' > icc.csv
case-pack -T 2 -o icc.pack --size 16 icc.csv 2>err.txt; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c "greyicc2*.png: warning: iCCP: profile 'icc': 'RGB ': RGB color space not permitted on grayscale PNG ([0-9]* times)\$" err.txt)" -eq 2 ] \
    && ! grep -q -e VIPS-WARNING -e '^(process' err.txt \
    && pass "library warnings: once per file, with a count, in our form" || fail "warnings" "rc=$rc $(cat err.txt)"
case-pack -q -o icc.pack --size 16 icc.csv 2>err.txt; rc=$?
[ $rc -eq 0 ] && [ ! -s err.txt ] && pass "-q silences library warnings" || fail "warnings -q" "rc=$rc $(cat err.txt)"
printf 'case,path\nx,crc.png\ny,damaged.jpg\nz,rgb.png\n' > damaged.csv
for size in 16 0; do
    case-pack -q -o dmg.pack --size $size damaged.csv 2>err.txt; rc=$?
    [ $rc -eq 0 ] && grep -q 'crc.png: cannot .*(skipped)' err.txt && grep -q 'damaged.jpg: cannot decode: .*(skipped)' err.txt \
        && [ "$(mts count dmg.pack | cut -d' ' -f3)" -eq 1 ] \
        && pass "damaged PNG and JPEG data refused, named even under -q (--size $size)" || fail "damaged $size" "rc=$rc $(cat err.txt)"
done
# A format libvips would hand to ImageMagick (a PGM here) is refused by name.
printf 'P5\n2 2\n255\n\020\040\060\100' > grey.pgm
printf 'case,path,label\nx,rgb.jpg,a\ny,grey.pgm,b\n' > pgm.csv
check_fails "a format outside JPEG/PNG/WebP/GIF/TIFF is refused by name" 1 \
    "grey.pgm: a format for libvips's magick loader, not read here" case-pack -q --strict -o g.pack pgm.csv
check_fails "--strict stops at the first bad file" 1 "noise.jpg: not a known image format" \
    case-pack -q --strict -o s.pack bad.csv
[ ! -e s.pack ] && [ -z "$(ls -A | grep '^\.s\.pack')" ] && pass "no pack (and no temporary) after a failure" \
    || fail "leftover" "$(ls -A)"

printf 'case,path\n' > empty.csv
check_fails "an empty manifest" 1 "empty manifest" case-pack -o e.pack empty.csv
: > zero.csv
check_fails "a zero-byte manifest" 1 "empty manifest" case-pack -o e.pack zero.csv
printf 'id,path\na,rgb.jpg\n' > nocase.csv
check_fails "a missing column" 1 "no column 'case' \(--case-col\)" case-pack -o e.pack nocase.csv
check "--case-col names it" case-pack -q -o e.pack --case-col id nocase.csv
printf 'case,path\na,rgb.jpg\nb,rgb.jpg\n' > dup.csv
check_fails "a duplicate path" 1 "the path 'rgb.jpg' is listed twice" case-pack -o e.pack dup.csv
check_fails "a label not in --classes" 1 "line 7: label 'bird' is not in the class list" \
    case-pack -o e.pack --classes cat,dog m.csv
printf 'case,path,split\na,rgb.jpg,train\na,rgb.png,test\n' > split2.csv
check_fails "a case in two splits" 1 "case 'a' is in two splits" case-pack -o e.pack split2.csv
printf 'case,path,label\na,rgb.jpg,cat\na,rgb.png,dog\n' > lab2.csv
check_fails "a case with two labels" 1 "case 'a' has different labels" case-pack -o e.pack lab2.csv
printf 'case,path\n"a,1",rgb.jpg\n"b ""q""",rgb.png\nc,"rgb.webp\n' > quote.csv
check_fails "an unclosed quote names its line" 1 "line 4: a quoted field is not closed" case-pack -o e.pack quote.csv
check_fails "no output is a usage error" 2 "name the pack with -o" case-pack m.csv
check_fails "--crop without --size" 2 "--crop needs --size" case-pack -o x.pack --size 0 --crop m.csv
check_fails "a bad window" 2 "--window" case-pack -o x.pack --window percentile:9 m.csv

# Multi-label: ';'-separated findings, or 0/1 columns.
printf 'case,path,findings\na,rgb.jpg,edema;effusion\nb,rgb.png,\nc,grey.png,effusion\n' > ml.csv
case-pack -q -o ml.pack --size 8 --label-col findings --multilabel ml.csv
out=$(mts show ml.pack)
grep -q 'task="multilabel" classes=\["edema", "effusion"\]' <<<"$out" && grep -q 'case="a".*label=\[1, 1\]' <<<"$out" \
    && grep -q 'case="b".*label=\[0, 0\]' <<<"$out" && pass "multi-label from ';'-separated findings" || fail "multilabel" "$out"
printf 'case,path,edema,effusion\na,rgb.jpg,1,0\nb,rgb.png,0,1\n' > mlc.csv
case-pack -q -o mlc.pack --size 8 --label-cols edema,effusion mlc.csv
grep -q 'case="b".*label=\[0, 1\]' <<<"$(mts show mlc.pack)" && pass "multi-label from 0/1 columns" \
    || fail "label-cols" "$(mts show mlc.pack)"

# Folder trees.
mkdir -p tree/cat/k1 tree/dog/k2 tree/dog/k3 flat/p1 flat/p2
cp rgb.jpg rgb.png tree/cat/k1/; cp rgb.webp tree/dog/k2/; cp grey.png tree/dog/k3/
cp rgb.jpg flat/p1/; cp rgb.png rgb.webp flat/p2/
case-pack -q --dir tree --layout class/case -o tree.pack --size 8
out=$(mts show tree.pack)
grep -q 'case="k1" split="train" label=0 images=\[u8\[3,8,11\], u8\[3,8,11\]\]' <<<"$(mts show --no-stats tree.pack)" \
    && grep -q 'case="k3".*label=1' <<<"$out" && pass "folder tree class/case" || fail "tree" "$out"
case-pack -q --dir flat -o flat.pack --size 8
grep -q 'task="none"' <<<"$(mts show flat.pack)" && [ "$(mts count flat.pack | cut -d' ' -f3)" -eq 2 ] \
    && pass "folder tree case/files, unlabeled" || fail "flat" "$(mts show flat.pack)"

# The pack reads as a stream: pipes into mts like any stream.
[ "$(cat p.pack | mts count | cut -d' ' -f3)" -eq 7 ] && pass "a pack is a stream (7 case records)" \
    || fail "pack as stream" "$(cat p.pack | mts count)"
check "--zstd compresses each case" case-pack -q -z 3 -o z.pack --size 32 m.csv
records() { mts show "$1" | awk '$2 == "record" { $1 = ""; print }'; }
[ "$(records z.pack | md5sum)" = "$(records t1.pack | md5sum)" ] \
    && pass "compressed records read back the same" || fail "zstd pack"
case-pack --help | grep -q '^usage: case-pack' && pass "--help" || fail "--help"
