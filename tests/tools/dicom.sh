#!/usr/bin/env bash
# DICOM in case-pack, on the real sample files of Debian's python3-pydicom
# (not copied here) and on small files made below: stored values against
# pydicom's (tests/fixtures/dicom_pydicom.txt), every lossless variant of
# one image alike, rescale -> window -> MONOCHROME1 in that order, refusals
# and malformed files named with their byte offset and tag, --layout dicom
# with --case-tag and --labels.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
D=/usr/lib/python3/dist-packages/pydicom/data/test_files
if [ ! -d "$D" ]; then
    echo "skip - DICOM tests: python3-pydicom's sample files are not installed (mk/deps.sh check)"
    exit 0
fi
cd "$T"

# Stored values: ours against pydicom's pixel_array, frame by frame.
fixture=$top/tests/fixtures/dicom_pydicom.txt
ours=$(cd "$D" && dicomvals $(cut -d' ' -f1 "$fixture" | sort -u) | sort)
if [ "$ours" = "$(cat "$fixture")" ]; then
    pass "stored values match pydicom's pixel_array ($(wc -l <"$fixture") frames of $(cut -d' ' -f1 "$fixture" | sort -u | wc -l) files: native LE/BE, implicit, deflated, RLE, RGB, YBR_FULL_422, multi-frame)"
else
    fail "stored values against pydicom" "$(diff <(echo "$ours") "$fixture" | head -20)"
fi

# Every lossless variant of one image decodes to the same stored values.
hashes=$(cd "$D" && dicomvals MR_small.dcm MR_small_RLE.dcm MR_small_jp2klossless.dcm MR_small_jpeg_ls_lossless.dcm \
    MR_small_bigendian.dcm MR_small_implicit.dcm MR_small_expb.dcm MR_small_padded.dcm | cut -d' ' -f2-)
[ "$(wc -l <<<"$hashes")" -eq 8 ] && [ "$(sort -u <<<"$hashes" | wc -l)" -eq 1 ] \
    && pass "MR_small: native LE, RLE, JPEG 2000 lossless, JPEG-LS lossless, big endian, implicit, padded alike" \
    || fail "MR_small variants" "$hashes"
hashes=$(cd "$D" && dicomvals SC_rgb_rle.dcm SC_rgb_gdcm_KY.dcm | cut -d' ' -f2-)
[ "$(sort -u <<<"$hashes" | wc -l)" -eq 1 ] && pass "SC_rgb: RLE and JPEG 2000 (RGB) alike" || fail "SC_rgb" "$hashes"
# Lossy JPEG: the RGB, YBR_FULL and YBR_FULL_422 twins of one image (dcmtk
# and GDCM, chroma subsampled or not) within a JPEG's loss of the lossless
# one: a mean difference under 3 of 255 (a colour transform applied twice,
# or not at all, is off by tens).
printf 'case,path\n' > jpeg.csv
for f in SC_rgb_rle.dcm SC_rgb_dcmtk_+eb+cr.dcm SC_rgb_dcmtk_+eb+cy+n1.dcm SC_rgb_dcmtk_+eb+cy+n2.dcm \
         SC_rgb_dcmtk_+eb+cy+np.dcm SC_rgb_dcmtk_+eb+cy+s2.dcm SC_rgb_dcmtk_+eb+cy+s4.dcm SC_rgb_jpeg_dcmtk.dcm \
         SC_rgb_jpeg_lossy_gdcm.dcm; do
    echo "$f,$D/$f" >> jpeg.csv
done
case-pack -q -o jpeg.pack --size 0 jpeg.csv
diffs=$(mts cat --no-headers jpeg.pack | $PY -c '
import sys, msgpack, numpy as np
recs = [r for r in msgpack.Unpacker(sys.stdin.buffer, raw=False) if "images" in r]
a = [np.frombuffer(r["images"][0]["data"], np.uint8).astype(float) for r in recs]
print(len(a) - 1, sum(np.abs(x - a[0]).mean() < 3 for x in a[1:]))')
[ "$diffs" = "8 8" ] && pass "JPEG baseline: 8 lossy RGB/YBR_FULL/YBR_FULL_422 files within 3 of the lossless image" \
    || fail "jpeg colour" "$diffs"

# Lossless JPEG (process 14), our decoder: the RGB sample (one scan per
# component, predictor 1) as its RLE twin; MR_small's values encoded by
# tests/helpers/mkljpeg.py (16-bit, predictors 1 to 7, a restart interval,
# a point transform) as MR_small.
hashes=$(cd "$D" && dicomvals SC_rgb_jpeg_gdcm.dcm SC_rgb_rle.dcm | cut -d' ' -f2-)
[ "$(sort -u <<<"$hashes" | wc -l)" -eq 1 ] && pass "lossless JPEG SV1, RGB: as RLE" || fail "ljpeg rgb" "$hashes"
$PY "$top/tests/helpers/mkljpeg.py" "$D/MR_small.dcm"
ref=$(dicomvals "$D/MR_small.dcm" | cut -d' ' -f2-)
hashes=$(dicomvals ljpeg_p[1-7].dcm ljpeg_rst.dcm | cut -d' ' -f2-)
[ "$(wc -l <<<"$hashes")" -eq 8 ] && [ "$(sort -u <<<"$hashes")" = "$ref" ] \
    && pass "lossless JPEG, 16-bit: predictors 1 to 7 and a restart interval decode to MR_small's values" \
    || fail "ljpeg predictors" "$ref" "$hashes"
dicomvals ljpeg_pt.dcm | grep -q ' 0 1 64 64 124 2144 ' && pass "lossless JPEG: the point transform" \
    || fail "ljpeg pt" "$(dicomvals ljpeg_pt.dcm)"
grep -Eq 'ljpeg_cut.dcm error: frame 0: lossless JPEG: byte [0-9]+: the coded data ends before pixel [0-9]+ of 4096' \
    <<<"$(dicomvals ljpeg_cut.dcm)" && pass "lossless JPEG cut short: an error, not grey" || fail "ljpeg cut" "$(dicomvals ljpeg_cut.dcm)"

# Refusals name the transfer syntax and a conversion command.
grep -q 'JPGExtended.dcm error: frame 0: transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended): Unsupported JPEG data precision 12; convert the file first, e.g. gdcmconv --raw IN OUT' \
    <<<"$(dicomvals "$D/JPGExtended.dcm")" && pass "12-bit JPEG refused with a conversion command" \
    || fail "12-bit" "$(dicomvals "$D/JPGExtended.dcm")"

# Malformed files: the byte offset and the tag.
head -c 140 "$D/CT_small.dcm" > cut140.dcm
head -c 3000 "$D/CT_small.dcm" > cut3000.dcm
printf 'case,path\na,%s\nb,cut140.dcm\nc,cut3000.dcm\nd,%s\n' "$D/MR_truncated.dcm" "$D/MR_small.dcm" > bad.csv
case-pack -o bad.pack --size 16 bad.csv 2>err.txt; rc=$?
[ $rc -eq 0 ] && grep -q "MR_truncated.dcm: byte 1488, tag (7FE0,0010): length 8192 runs past the end of the file (8130 bytes left) (skipped)" err.txt \
    && grep -Eq "cut140.dcm: byte 1[0-9]{2}, tag \(0002,[0-9A-F]{4}\): .* \(skipped\)" err.txt \
    && grep -Eq "cut3000.dcm: byte [0-9]+, tag \([0-9A-F]{4},[0-9A-F]{4}\): .*(runs past the end|ends inside).*\(skipped\)" err.txt \
    && grep -q "1 cases, 1 images.*skipped 3 files, 3 cases" err.txt \
    && pass "truncated files named with byte offset and tag, skipped" || fail "truncated" "rc=$rc $(cat err.txt)"
check_fails "--strict stops at a truncated DICOM file" 1 "MR_truncated.dcm: byte 1488, tag \(7FE0,0010\)" \
    case-pack -q --strict -o s.pack bad.csv

# Small files made here (explicit VR little endian unless told): the order
# of rescale, window and MONOCHROME1, and malformed structures.
$PY - <<'EOF'
import struct, zlib
LONG = {"OB", "OW", "SQ", "UN", "UT"}
def el(g, e, vr, val):
    val = val.encode() if isinstance(val, str) else val
    if len(val) % 2:
        val += b"\0" if vr in ("UI", "OB") else b" "
    if vr in LONG:
        return struct.pack("<HH2s2xI", g, e, vr.encode(), len(val)) + val
    return struct.pack("<HH2sH", g, e, vr.encode(), len(val)) + val
def us(g, e, v): return el(g, e, "US", struct.pack("<H", v))
def meta(ts="1.2.840.10008.1.2.1"):
    body = el(2, 0x10, "UI", ts)
    return b"\0" * 128 + b"DICM" + el(2, 0, "UL", struct.pack("<I", len(body))) + body
def image(rows, cols, bits, stored, signed, photometric, extra=b"", samples=1):
    return (el(0x10, 0x20, "LO", "P1") + us(0x28, 2, samples) + el(0x28, 4, "CS", photometric) +
            us(0x28, 0x10, rows) + us(0x28, 0x11, cols) + us(0x28, 0x100, bits) + us(0x28, 0x101, stored) +
            us(0x28, 0x102, stored - 1) + us(0x28, 0x103, signed) + extra)
def write(name, data):
    open(name, "wb").write(data)
# 1 x 4, 12 of 16 bits, signed, MONOCHROME1, slope 2, intercept -100,
# window 0/101.  Stored -10, 50, 100 and 0xF7FF (bits above 12 set: 2047).
px = struct.pack("<4H", 0xFFF6, 50, 100, 0xF7FF)
win = el(0x28, 0x1050, "DS", "0\\40") + el(0x28, 0x1051, "DS", "101\\80") + \
      el(0x28, 0x1052, "DS", "-100") + el(0x28, 0x1053, "DS", "2")
write("mono1.dcm", meta() + image(1, 4, 16, 12, 1, "MONOCHROME1", win) + el(0x7FE0, 0x10, "OW", px))
write("mono2.dcm", meta() + image(1, 4, 16, 12, 1, "MONOCHROME2", win) + el(0x7FE0, 0x10, "OW", px))
# The same file deflated.
body = image(1, 4, 16, 12, 1, "MONOCHROME1", win) + el(0x7FE0, 0x10, "OW", px)
z = zlib.compressobj(9, zlib.DEFLATED, -15)
write("mono1_dfl.dcm", meta("1.2.840.10008.1.2.1.99") + z.compress(body) + z.flush())
write("dfl_cut.dcm", (meta("1.2.840.10008.1.2.1.99") + zlib.compress(body)[2:-4])[:-5])
# A VOI LUT Sequence (preferred to the window beside it): 3 entries from
# the rescaled value 11.  Stored 0..3, intercept 10.
lut = struct.pack("<HH2sH", 0x28, 0x3002, b"US", 6) + struct.pack("<3H", 3, 11, 16) + \
      el(0x28, 0x3006, "OW", struct.pack("<3H", 0, 32768, 65535))
voi = struct.pack("<HH2s2xI", 0x28, 0x3010, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + \
      lut + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
extra = el(0x28, 0x1050, "DS", "100") + el(0x28, 0x1051, "DS", "10") + el(0x28, 0x1052, "DS", "10") + voi
write("voilut.dcm", meta() + image(1, 4, 16, 16, 0, "MONOCHROME2", extra) +
      el(0x7FE0, 0x10, "OW", struct.pack("<4H", 0, 1, 2, 3)))
bad_lut = struct.pack("<HH2sH", 0x28, 0x3002, b"US", 6) + struct.pack("<3H", 300, 11, 16) + \
      el(0x28, 0x3006, "OW", struct.pack("<3H", 0, 32768, 65535))
voi = struct.pack("<HH2s2xI", 0x28, 0x3010, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, len(bad_lut)) + \
      bad_lut + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
write("voilut_short.dcm", meta() + image(1, 4, 16, 16, 0, "MONOCHROME2", voi) +
      el(0x7FE0, 0x10, "OW", struct.pack("<4H", 0, 1, 2, 3)))
# Sequences nested 17 deep (undefined lengths), then the image.
seq = b""
for _ in range(17):
    seq = struct.pack("<HH2s2xI", 0x0008, 0x1140, b"SQ", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + \
          seq + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
write("deep.dcm", meta() + seq + image(1, 4, 16, 12, 1, "MONOCHROME2") + el(0x7FE0, 0x10, "OW", px))
# Pixel data too short for its rows and columns.
write("short.dcm", meta() + image(2, 4, 16, 12, 1, "MONOCHROME2") + el(0x7FE0, 0x10, "OW", px))
# An element declaring 4 GB.
write("huge.dcm", meta() + image(1, 4, 16, 12, 1, "MONOCHROME2") + struct.pack("<HH2s2xI", 0x7FE0, 0x10, b"OW", 0xFFFFFFF0) + px)
# Encapsulated RLE, two frames, an offset table pointing inside a fragment.
def rle_frame(vals):
    hi = bytes(v >> 8 for v in vals); lo = bytes(v & 255 for v in vals)
    segs = [bytes([len(hi) - 1]) + hi, bytes([len(lo) - 1]) + lo]
    head = struct.pack("<I", 2) + struct.pack("<I", 64) + struct.pack("<I", 64 + len(segs[0])) + b"\0" * 52
    d = head + b"".join(segs)
    return d + b"\0" * (len(d) % 2)
frames = [rle_frame([1, 2, 3, 4]), rle_frame([5, 6, 7, 8])]
def encaps(bot, frags):
    out = struct.pack("<HH2s2xI", 0x7FE0, 0x10, b"OB", 0xFFFFFFFF)
    out += struct.pack("<HHI", 0xFFFE, 0xE000, len(bot)) + bot
    for f in frags:
        out += struct.pack("<HHI", 0xFFFE, 0xE000, len(f)) + f
    return out + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
two = el(0x28, 8, "IS", "2")
good_bot = struct.pack("<2I", 0, 8 + len(frames[0]))
write("rle2.dcm", meta("1.2.840.10008.1.2.5") + image(1, 4, 16, 16, 0, "MONOCHROME2", two) + encaps(good_bot, frames))
write("rle2_badbot.dcm", meta("1.2.840.10008.1.2.5") + image(1, 4, 16, 16, 0, "MONOCHROME2", two) +
      encaps(struct.pack("<2I", 0, 12), frames))
bad = bytearray(frames[1]); bad[64] = 10   # a literal run longer than the row
write("rle2_badseg.dcm", meta("1.2.840.10008.1.2.5") + image(1, 4, 16, 16, 0, "MONOCHROME2", two) +
      encaps(good_bot, [frames[0], bytes(bad)]))
EOF
img() {   # img PACK: the first image's values, space separated
    mts cat --no-headers "$1" | $PY -c '
import sys, msgpack, numpy as np
r = next(r for r in msgpack.Unpacker(sys.stdin.buffer, raw=False) if "images" in r)
for t in r["images"]:
    print(" ".join(str(v) for v in np.frombuffer(t["data"], "<u2" if t["dtype"] == "u16" else np.uint8)))'
}
# Rescaled: -120, 0, 100, 3994.  Window c 0, w 101 (LINEAR): at or below
# -50.5 black, above 49.5 white, 0 -> 0.505.  MONOCHROME1 inverted after.
printf 'case,path\na,mono1.dcm\n' > m1.csv; printf 'case,path\na,mono2.dcm\n' > m2.csv
printf 'case,path\na,mono1_dfl.dcm\n' > m1d.csv
case-pack -q -o m1.pack --size 0 -c 1 m1.csv && case-pack -q -o m2.pack --size 0 -c 1 m2.csv
[ "$(img m2.pack)" = "0 129 255 255" ] && pass "rescale then the file's first window (LINEAR): 0 129 255 255" \
    || fail "window" "$(img m2.pack)"
[ "$(img m1.pack)" = "255 126 0 0" ] && pass "MONOCHROME1 inverted after the window: 255 126 0 0" \
    || fail "mono1" "$(img m1.pack)"
case-pack -q -o m1d.pack --size 0 -c 1 m1d.csv
[ "$(img m1d.pack)" = "255 126 0 0" ] && pass "deflated explicit VR little endian" || fail "deflate" "$(img m1d.pack)"
case-pack -q -o k1.pack --size 0 -c 1 --keep-16bit m1.csv && case-pack -q -o k2.pack --size 0 -c 1 --keep-16bit m2.csv
[ "$(img k2.pack)" = "32648 32768 32868 36762" ] && [ "$(img k1.pack)" = "32887 32767 32667 28773" ] \
    && pass "--keep-16bit: rescaled + 32768 (MONOCHROME1: 32767 - rescaled)" || fail "keep16" "$(img k2.pack) / $(img k1.pack)"
case-pack -q -o f.pack --size 0 -c 1 --window fixed:-120,3994 m2.csv
[ "$(img f.pack)" = "0 7 14 255" ] && pass "--window fixed in rescaled units" || fail "fixed" "$(img f.pack)"
printf 'case,path\na,voilut.dcm\n' > voi.csv
case-pack -q -o voi.pack --size 0 -c 1 voi.csv
[ "$(img voi.pack)" = "0 0 128 255" ] && pass "the VOI LUT Sequence, on rescaled values, before the window" \
    || fail "voi lut" "$(img voi.pack)"
printf 'case,path\na,rle2.dcm\n' > rle.csv
case-pack -q -o rle.pack --size 0 -c 1 --keep-16bit rle.csv
[ "$(img rle.pack)" = "$(printf '32769 32770 32771 32772\n32773 32774 32775 32776')" ] \
    && pass "RLE, two frames through the offset table: two instances" || fail "rle2" "$(img rle.pack)"

bad_file() {   # bad_file NAME PATTERN FILE
    printf 'case,path\na,%s\n' "$3" > one.csv
    check_fails "$1" 1 "$2" case-pack -q --strict -o x.pack one.csv
}
bad_file "sequences nested too deep" "deep.dcm: byte [0-9]+, tag \(0008,1140\): sequences nested more than 16 deep" deep.dcm
bad_file "pixel data shorter than the image" "short.dcm: byte [0-9]+, tag \(7FE0,0010\): 8 bytes of pixel data, fewer than the 16" short.dcm
bad_file "a 4 GB length in a small file" "huge.dcm: byte [0-9]+, tag \(7FE0,0010\): length 4294967280 runs past the end" huge.dcm
bad_file "an offset table entry inside a fragment" "rle2_badbot.dcm: byte [0-9]+: offset table entry 1 \(12\) is not the start of a fragment" rle2_badbot.dcm
bad_file "a VOI LUT shorter than its descriptor" "voilut_short.dcm: byte [0-9]+, tag \(0028,3010\): LUT Data of 6 bytes for 300 entries" voilut_short.dcm
bad_file "a broken RLE segment" "rle2_badseg.dcm: frame 1: RLE: segment 0 does not decode to 4 bytes" rle2_badseg.dcm
bad_file "a deflated data set cut short" "dfl_cut.dcm: byte [0-9]+, tag \(0000,0000\): deflated data set: " dfl_cut.dcm

# --layout dicom on the sample folder: every decodable image decoded, every
# other file named with its reason.
case-pack -o all.pack --size 32 --dir "$D" --layout dicom 2>err.txt; rc=$?
summary=$(grep 'all.pack: ' err.txt)
[ $rc -eq 0 ] && grep -q 'all.pack: 16 cases, 70 images' <<<"$summary" \
    && grep -q 'README.txt: not a DICOM file (skipped)' err.txt \
    && grep -q 'rtplan.dcm: no Pixel Data (7FE0,0010): not an image (skipped)' err.txt \
    && grep -q 'DICOM files without a PatientID: each is a case of its own' err.txt \
    && pass "the pydicom folder: $(sed 's/.*all.pack: //; s/; [0-9.]* s$//' <<<"$summary")" || fail "folder" "rc=$rc $(tail -5 err.txt)"
out=$(mts show --no-stats all.pack)
grep 'case="4MR1"' <<<"$out" | grep -q 'files=\["MR_small.dcm", "MR_small_RLE.dcm", ' \
    && pass "instances grouped by PatientID (4MR1: the MR_small variants)" || fail "grouping" "$(grep 4MR1 <<<"$out" | head -c 400)"
printf 'case,path\na,%s\na,%s\n' "$D/SC_rgb_rle_2frame.dcm" "$D/SC_rgb_rle_16bit_2frame.dcm" > frames.csv
case-pack -q -o frames.pack --size 8 frames.csv
grep -q 'images=\[u8\[3,8,8\], u8\[3,8,8\], u8\[3,8,8\], u8\[3,8,8\]\] .* pages=\[0, 1, 0, 1\]' <<<"$(mts show --no-stats frames.pack)" \
    && pass "multi-frame files: one instance per frame" || fail "frames" "$(mts show --no-stats frames.pack)"
case-pack -q -o patients.pack --size 8 --dir "$D/dicomdirtests" --layout dicom
case-pack -q -o series.pack --size 8 --dir "$D/dicomdirtests" --layout dicom --case-tag SeriesInstanceUID
cases() { mts count "$1" | cut -d' ' -f3; }
[ "$(cases patients.pack)" -eq 2 ] && [ "$(cases series.pack)" -eq 13 ] \
    && pass "--case-tag: 2 patients, 13 series in dicomdirtests" || fail "series" "$(cases patients.pack) $(cases series.pack)"
printf 'case,label,split\n77654033,cr,train\n98890234,ct,test\nnobody,ct,val\n' > labels.csv
case-pack -o lab.pack --size 8 --dir "$D/dicomdirtests" --layout dicom --labels labels.csv 2>err.txt
out=$(mts show --no-stats lab.pack)
grep -q 'task="multiclass" classes=\["cr", "ct"\]' <<<"$out" && grep -q 'case="77654033" split="train" label=0' <<<"$out" \
    && grep -q 'case="98890234" split="test" label=1' <<<"$out" && grep -q '1 of its 3 case ids match no DICOM file' err.txt \
    && pass "--labels: labels and splits by case id" || fail "labels" "$out $(cat err.txt)"
printf 'case,label,split\n77654033,cr,train\n77654033,cr,test\n' > leak.csv
check_fails "a case id in two splits" 1 "line 3: case '77654033' is in two splits \(train and test\)" \
    case-pack -o x.pack --dir "$D/dicomdirtests" --layout dicom --labels leak.csv
printf 'case,label\n77654033,cr\n98890234,ct\n77654033,cr\n' > twice.csv
check_fails "a case id listed twice" 1 "twice.csv: line 4: case '77654033' is listed twice" \
    case-pack -o x.pack --dir "$D/dicomdirtests" --layout dicom --labels twice.csv
check_fails "--case-tag needs --layout dicom" 2 "--labels and --case-tag need --dir ROOT --layout dicom" \
    case-pack -o x.pack --case-tag PatientID m1.csv
check_fails "an unknown --case-tag" 2 "--case-tag: 'Modality' is not" \
    case-pack -o x.pack --dir "$D" --layout dicom --case-tag Modality

# The same bytes whatever the thread count.
OMP_NUM_THREADS=1 case-pack -q -o t.pack --size 16 --dir "$D" --layout dicom && mv t.pack t1.pack
OMP_NUM_THREADS=2 case-pack -q -o t.pack --size 16 --dir "$D" --layout dicom && mv t.pack t2.pack
same "the same pack with 1 and 2 threads" t1.pack t2.pack
