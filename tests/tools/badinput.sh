#!/usr/bin/env bash
# Bad input, tool by tool: empty input, truncated input, the wrong kind of
# record, the wrong dtype or shape, NaN pixels, a label out of range, an
# unknown option, an output that cannot be written, a full disk.  Every row
# must end with its status (1: a failure, 2: a usage error), a message of
# the form "tool: where: what" (every line of stderr from the tool), and no
# output file, not even a hidden temporary (.NAME.XXXXXX), in the output
# folder.  Cells that make no sense for a tool, or that another test file
# already covers, are listed as such, so that the table is complete.
. "$(dirname "$0")/common.bash"
cd "$T"
export OMP_WAIT_POLICY=passive

# ---- inputs ------------------------------------------------------------------------------
model=(--model resnet18 --width 0.0625 --stem small --head-layers 2 --proj-dim 8 --batch 16)
random=(--random-init --model resnet18 --width 0.0625 --stem small --batch 16)
mkpack p.pack 40 2 4 1 16 16 stripes
mkpack p3.pack 20 1 4 3 16 16 stripes
pair-sample -q p.pack | augment -q --seed 1 --size 16 > pairs.mts
pair-sample -q p.pack | augment -q --seed 1 --size 12 > pairs12.mts
ntxent-step -q "${model[@]}" -o pre.ckpt pairs.mts
pair-sample -q -m single --split all p.pack | augment -q --eval --size 16 > images.mts
pair-sample -q -m single p3.pack | augment -q --eval --size 16 > images3.mts
pair-sample -q -m single p.pack > images-u8.mts
finetune -q --init pre.ckpt --batch 16 -o ft.ckpt images.mts
embed -q --ckpt ft.ckpt images.mts > scores.mts
: > empty
for f in pairs.mts images.mts images-u8.mts scores.mts pre.ckpt; do head -c $(($(stat -c %s $f) / 2)) $f > cut-$f; done
# Two streams one after the other; the first header's schedule ends where
# the second begins, so the trainer is given two epochs to reach it.
cat pairs.mts pairs12.mts > two-sizes.mts
vips black black.v 48 32 --bands 3
vips linear black.v grey.png 1 120 --uchar
cp grey.png grey2.png
vips linear black.v float.tif 1 0.5
printf 'case,path,label\na,grey.png,x\nb,grey2.png,y\n' > m.csv
printf 'case,path,label\na,grey.png,x\nb,grey.p' > cut-m.csv
printf 'case,path\na,float.tif\n' > float.csv
printf 'case,path\na,grey.png\nb,big.png\n' > big.csv
vips gaussnoise noise.v 160 160
vips cast noise.v big.png uchar
# Frames edited with msgpack in Python: the third record gets a NaN pixel, a
# label out of range, or loses its label; a pack's index gets a label out of
# range, or its header a channel count its images do not have.
cat > edit.py <<'PY'
import sys, msgpack, numpy as np
what, src, dst = sys.argv[1:4]
data = open(src, 'rb').read()
if what in ('nan', 'label', 'nolabel'):
    out, n = [], 0
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(data)
    for fr in u:
        if 'mts' not in fr:
            n += 1
            if n == 3 and what == 'nan':
                for k in ('image', 'a', 'b'):
                    if k in fr:
                        a = np.frombuffer(fr[k]['data'], '<f4').copy()
                        a[5] = np.nan
                        fr[k]['data'] = a.tobytes()
            elif n == 3 and what == 'label':
                fr['label'] = 7
            elif n == 3:
                del fr['label']
        out.append(msgpack.packb(fr, use_bin_type=True))
    data = b''.join(out)
elif what == 'pack-label':
    at = int.from_bytes(data[-8:], 'big')
    index = msgpack.unpackb(data[at:-29], raw=False)
    labels = np.frombuffer(index['label']['data'], '<i4').copy()
    labels[0] = 9
    index['label']['data'] = labels.tobytes()
    data = data[:at] + msgpack.packb(index, use_bin_type=True) + data[-29:]
elif what == 'pack-channels':
    assert data.count(b'\xa8channels\x03') == 1
    data = data.replace(b'\xa8channels\x03', b'\xa8channels\x01')
open(dst, 'wb').write(data)
PY
$PY edit.py nan pairs.mts nan-pairs.mts
$PY edit.py nan images.mts nan-images.mts
$PY edit.py label images.mts label-images.mts
$PY edit.py nolabel images.mts nolabel-images.mts
$PY edit.py pack-label p.pack label.pack
$PY edit.py pack-channels p3.pack channels.pack
# A damaged case record in a pack whose index is intact: 0xc1 (never valid
# in msgpack) for the type byte of the first record's first key.
first=$(mts show --no-stats p.pack | awk '$2 == "record" { print $1; exit }')
cp p.pack damaged.pack
printf '\xc1' | dd of=damaged.pack bs=1 seek=$((first + 1)) conv=notrunc status=none

# ---- the frame -------------------------------------------------------------------------------
# A 64 KiB tmpfs, filled before each full-disk row, for ENOSPC.
full=
mkdir full
if mount -t tmpfs -o size=64k tmpfs full 2>mount.err; then
    full=$T/full
    trap 'umount "$T/full"; rm -rf "$T"' EXIT
else
    echo "skip - full disk: cannot mount a tmpfs ($(head -1 mount.err)); run as root for these rows"
fi

# row TOOL CASE STATUS PATTERN CMD...: CMD fails with STATUS, every line of
# its stderr says "TOOL: ..." (usage errors add "Try 'TOOL --help'."), one
# matches "TOOL: where: ..." and PATTERN, and out/ is left empty.
row() {
    local tool=$1 case=$2 want=$3 pattern=$4
    shift 4
    rm -rf out
    mkdir out
    "$@" < /dev/null > /dev/null 2> err.txt
    local rc=$? left
    left=$(ls -A out)
    local stray
    stray=$(grep -v -e "^$tool: " -e "^Try '$tool --help'.$" err.txt | head -3)
    if [ "$rc" -eq "$want" ] && grep -Eq "^$tool: [^:]+: " err.txt && grep -Eq -- "$pattern" err.txt \
        && [ -z "$stray" ] && [ -z "$left" ]; then
        pass "$tool: $case (status $rc: $(grep -E -m1 -- "$pattern" err.txt | cut -c1-150))"
    else
        fail "$tool: $case" "status $rc (want $want), left in out/: '$left'" "stderr: $(head -c 500 err.txt)" \
            "want /$pattern/"
    fi
}
# full_row TOOL CASE PATTERN CMD...: row on a full disk (the tmpfs filled
# up): status 1, and nothing left on the tmpfs but the filler and the file
# named by $keep (a log, which is written as training goes, not atomically).
full_row() {
    local tool=$1 case=$2 pattern=$3
    shift 3
    [ -n "$full" ] || return 0
    rm -f "$full"/* "$full"/.[!.]*
    cat /dev/zero > "$full/filler" 2>/dev/null
    row "$tool" "$case" 1 "$pattern" "$@"
    local left
    left=$(ls -A "$full" | grep -v -x -e filler -e "${keep:-filler}")
    [ -z "$left" ] || fail "$tool: $case: nothing left on the full disk" "left: $left"
}
# other TOOL CASE WHY: a cell covered elsewhere or without meaning here.
other() { echo "# $1: $2: $3"; }

# ---- the table --------------------------------------------------------------------------------
#   tool         case                                status  message (grep -E)  /  command

other mts         "empty input"                      "not an error: an empty stream counts 0 records and cats to nothing"
row   mts         "truncated input"                  1 "byte [0-9]+: truncated frame"           mts cat -o out/x.mts cut-pairs.mts
row   mts         "wrong kind: a manifest"           1 "m.csv: byte 0: expected a msgpack map"  mts cat -o out/x.mts m.csv
other mts         "wrong dtype or shape"             "shown as <bad tensor: ...>: mts inspects, the consumers refuse"
other mts         "NaN pixels, label out of range"   "shown as they are: mts inspects"
other mts         "unknown option"                   "mts.sh"
row   mts         "unwritable output"                1 "out/no/x.mts: cannot create"           mts cat -o out/no/x.mts pairs.mts
row   mts         "standard output on a full device" 1 "stdout: write error: No space left"    bash -c "mts cat pairs.mts > /dev/full"
full_row mts      "full disk"                          "full/x.mts: write error: No space left" mts cat -o full/x.mts pairs.mts

other case-pack   "empty manifest, unreadable images, label not in --classes" "case-pack.sh"
row   case-pack   "truncated manifest"               1 "cut-m.csv: line 3: 2 fields, the header has 3" case-pack -q -o out/x.pack cut-m.csv
row   case-pack   "wrong kind: a pack as manifest"   1 "p.pack: line 1: "                      case-pack -q -o out/x.pack p.pack
row   case-pack   "wrong dtype: float pixels"        1 "float.tif: unsupported sample format \(float\)" \
                                                                                             case-pack -q --strict -o out/x.pack float.csv
other case-pack   "NaN pixels"                       "only float images hold NaN, and they are refused (row above)"
row   case-pack   "unknown option"                   2 "usage: unknown option"                 case-pack --frobnicate -o out/x.pack m.csv
row   case-pack   "unwritable output"                1 "out/no/x.pack: cannot create"          case-pack -q -o out/no/x.pack m.csv
full_row case-pack "full disk"                         "full/x.pack: write error: No space left" case-pack -q -s 160 -o full/x.pack big.csv

row   pair-sample "empty input"                      1 "empty: not a pack"                     pair-sample -q -o out/x.mts empty
other pair-sample "truncated pack, a stream given as a pack, unknown split" "pair-sample.sh"
row   pair-sample "a damaged case record"            1 "damaged.pack: case [0-9]+ \(case00000\): byte 1: invalid msgpack byte 0xc1" \
                                                                                             pair-sample -q -o out/x.mts damaged.pack
row   pair-sample "images unlike the header's"       1 "channels.pack: case 0 \(case00000\): image 0: expected u8 \(1, H, W\)" \
                                                                                             pair-sample -q --no-shuffle -o out/x.mts channels.pack
other pair-sample "NaN pixels"                       "packs hold u8 or u16 images"
row   pair-sample "label out of range"               1 "label.pack: index: case 0: label 9 out of range" \
                                                                                             pair-sample -q -o out/x.mts label.pack
row   pair-sample "unknown option"                   2 "usage: unknown option"                 pair-sample --frobnicate p.pack
row   pair-sample "unwritable output"                1 "out/no/x.mts: cannot create"           pair-sample -q -o out/no/x.mts p.pack
row   pair-sample "standard output on a full device" 1 "stdout: write error: No space left"    bash -c "pair-sample -q p.pack > /dev/full"
full_row pair-sample "full disk"                       "full/x.mts: write error: No space left" pair-sample -q -e 4 -o full/x.mts p.pack

other augment     "empty input"                      "not an error: a header alone (augment.sh), as a filter should"
row   augment     "truncated input"                  1 "stdin: byte [0-9]+: truncated frame"   bash -c "augment -q -o out/x.mts < cut-images-u8.mts"
row   augment     "wrong kind: a score stream"       1 "scores.mts: byte [0-9]+: the record has no image tensor" \
                                                                                             augment -q -o out/x.mts scores.mts
other augment     "wrong dtype or shape, unknown option" "augment.sh"
other augment     "NaN pixels, label out of range"   "u8/u16 input has no NaN; labels pass through untouched"
row   augment     "unwritable output"                1 "out/no/x.mts: cannot create"           augment -q -o out/no/x.mts images-u8.mts
row   augment     "standard output on a full device" 1 "stdout: write error: No space left"    bash -c "augment -q images-u8.mts > /dev/full"
full_row augment  "full disk"                          "full/x.mts: write error: No space left" augment -q -o full/x.mts images-u8.mts

row   ntxent-step "empty input"                      1 "empty: no pair records in the stream"  ntxent-step "${model[@]}" -o out/x.ckpt empty
row   ntxent-step "truncated input"                  1 "cut-pairs.mts: byte [0-9]+: truncated frame" ntxent-step "${model[@]}" -o out/x.ckpt cut-pairs.mts
row   ntxent-step "wrong kind: a score stream"       1 "scores.mts: byte [0-9]+: no 'a' image" ntxent-step "${model[@]}" -o out/x.ckpt scores.mts
other ntxent-step "image records, u8 images, 1-channel images into a 3-channel model" "e2e.sh"
row   ntxent-step "images of two sizes"              1 "'a' is \(1, 12, 12\); earlier images were \(1, 16, 16\)" \
                                                                                             ntxent-step "${model[@]}" --epochs 2 -o out/x.ckpt two-sizes.mts
row   ntxent-step "NaN pixels"                       1 "nan-pairs.mts: byte [0-9]+: 'a' has a NaN pixel" \
                                                                                             ntxent-step "${model[@]}" -o out/x.ckpt nan-pairs.mts
other ntxent-step "label out of range"               "pretraining reads no labels"
row   ntxent-step "unknown option"                   2 "usage: unknown option"                 ntxent-step --frobnicate -o out/x.ckpt pairs.mts
row   ntxent-step "--resume from a truncated checkpoint" 1 "cut-pre.ckpt: byte [0-9]+: truncated zstd frame" \
                                                                                             ntxent-step "${model[@]}" --resume cut-pre.ckpt -o out/x.ckpt pairs.mts
row   ntxent-step "--init from a stream"             1 "images.mts: not a checkpoint"          ntxent-step "${model[@]}" --init images.mts -o out/x.ckpt pairs.mts
row   ntxent-step "unwritable output"                1 "out/no/x.ckpt: cannot create"          ntxent-step "${model[@]}" -o out/no/x.ckpt pairs.mts
full_row ntxent-step "full disk"                       "full/x.ckpt: write error: No space left" ntxent-step "${model[@]}" -o full/x.ckpt pairs.mts
keep=log.tsv full_row ntxent-step "full disk under --log"           "full/log.tsv: write error: No space left" \
                                                                                             ntxent-step "${model[@]}" --log full/log.tsv -o out/x.ckpt pairs.mts

row   finetune    "empty input"                      1 "empty: no image records in the stream" finetune "${random[@]}" -o out/x.ckpt empty
row   finetune    "truncated input"                  1 "cut-images.mts: byte [0-9]+: truncated frame" finetune "${random[@]}" -o out/x.ckpt cut-images.mts
row   finetune    "wrong kind: a score stream"       1 "scores.mts: byte [0-9]+: no 'image' image" finetune "${random[@]}" -o out/x.ckpt scores.mts
other finetune    "wrong kind: a pair stream"        "e2e.sh"
row   finetune    "wrong dtype: u8 images"           1 "images-u8.mts: byte [0-9]+: 'image' is u8" finetune "${random[@]}" -o out/x.ckpt images-u8.mts
row   finetune    "3-channel images into a 1-channel model" 1 "pre.ckpt: the model takes 1-channel images, the stream has 3" \
                                                                                             finetune --init pre.ckpt -o out/x.ckpt images3.mts
row   finetune    "NaN pixels"                       1 "nan-images.mts: byte [0-9]+: 'image' has a NaN pixel" \
                                                                                             finetune "${random[@]}" -o out/x.ckpt nan-images.mts
row   finetune    "label out of range"               1 "label-images.mts: byte [0-9]+: label 7 is out of range \(4 classes\)" \
                                                                                             finetune "${random[@]}" -o out/x.ckpt label-images.mts
row   finetune    "an unlabeled record"              1 "case 'case[0-9]+' has no label"        finetune "${random[@]}" -o out/x.ckpt nolabel-images.mts
row   finetune    "unknown option"                   2 "usage: unknown option"                 finetune --frobnicate "${random[@]}" -o out/x.ckpt images.mts
row   finetune    "unwritable output"                1 "out/no/x.ckpt: cannot create"          finetune "${random[@]}" -o out/no/x.ckpt images.mts
full_row finetune "full disk"                          "full/x.ckpt: write error: No space left" finetune "${random[@]}" -o full/x.ckpt images.mts
keep=log.tsv full_row finetune "full disk under --log"              "full/log.tsv: write error: No space left" \
                                                                                             finetune "${random[@]}" --log full/log.tsv -o out/x.ckpt images.mts

other embed       "empty input"                      "not an error: a header alone, as augment (a filter)"
row   embed       "truncated input"                  1 "cut-images.mts: byte [0-9]+: truncated frame" embed --ckpt ft.ckpt -o out/x.mts cut-images.mts
row   embed       "wrong kind: a pair stream"        1 "pairs.mts: byte [0-9]+: no 'image' image: this is a pair record" \
                                                                                             embed --ckpt ft.ckpt -o out/x.mts pairs.mts
row   embed       "3-channel images into a 1-channel model" 1 "images3.mts: 3-channel images; the model takes 1" \
                                                                                             embed --ckpt ft.ckpt -o out/x.mts images3.mts
row   embed       "NaN pixels"                       1 "nan-images.mts: byte [0-9]+: 'image' has a NaN pixel" \
                                                                                             embed -q --ckpt ft.ckpt -o out/x.mts nan-images.mts
row   embed       "label out of range"               1 "label-images.mts: byte [0-9]+: label 7 is out of range" \
                                                                                             embed -q --ckpt ft.ckpt -o out/x.mts label-images.mts
row   embed       "a truncated checkpoint"           1 "cut-pre.ckpt: byte [0-9]+: truncated zstd frame" embed --ckpt cut-pre.ckpt -o out/x.mts images.mts
row   embed       "unknown option"                   2 "usage: unknown option"                 embed --frobnicate --ckpt ft.ckpt images.mts
row   embed       "unwritable output"                1 "out/no/x.mts: cannot create"           embed -q --ckpt ft.ckpt -o out/no/x.mts images.mts
row   embed       "standard output on a full device" 1 "stdout: write error: No space left"    bash -c "embed -q --ckpt ft.ckpt images.mts > /dev/full"
full_row embed    "full disk"                          "full/x.mts: write error: No space left" \
                                                                                             bash -c "cat images.mts images.mts images.mts | embed -q --ckpt ft.ckpt -k features -o full/x.mts"

row   auc         "empty input"                      1 "input: no score records"              auc -o out/r.txt empty
row   auc         "truncated input"                  1 "cut-scores.mts: byte [0-9]+: truncated frame" auc -o out/r.txt cut-scores.mts
row   auc         "wrong kind: an image stream"      1 "images.mts: byte [0-9]+: the record has neither 'probs' nor 'logits'" \
                                                                                             auc -o out/r.txt images.mts
other auc         "wrong shape, NaN scores, label out of range, unknown option, unwritable -o" "auc.sh"
row   auc         "standard output on a full device" 1 "stdout: write error: No space left"    bash -c "auc scores.mts > /dev/full"
full_row auc      "full disk"                          "full/r.txt: write error: No space left" auc -o full/r.txt scores.mts
