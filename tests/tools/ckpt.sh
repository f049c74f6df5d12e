#!/usr/bin/env bash
# ckpt: show (text and JSON), export and import round trips bit for bit,
# safetensors wherever --init and --ckpt take a checkpoint, conv1 summed
# for a grey model, bad input; with torch installed, a torchvision model
# into ours and ours into torchvision (strict), the outputs compared, and
# the man page's .pth <-> safetensors script.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$T"
export OMP_WAIT_POLICY=passive
records() { mts cat --no-headers -z 0 "$1"; }

mkpack p.pack 64 2 4 1 16 16 stripes
pair-sample -q -m single --no-shuffle p.pack | augment -q --eval --size 16 > test.mts
pair-sample -q -m simclr -e 1 --seed 5 p.pack | augment -q -T 1 --seed 7 --size 16 \
    | ntxent-step -q -T 1 --model resnet18 --width 0.25 --stem small --head-layers 2 --batch 16 -o pre.ckpt
pair-sample -q -m single -e 1 --seed 2 p.pack | augment -q -T 1 --seed 3 --size 16 \
    | finetune -q -T 1 --init pre.ckpt --batch 16 -o ft.ckpt

out=$(ckpt show pre.ckpt)
grep -q '^model        resnet18 x0.25, small stem, 1 channel, head 2 layers -> 128, 0 classes$' <<<"$out" \
    && grep -q '^parameters   733168 (encoder 699888, head 33280, classifier 0)$' <<<"$out" \
    && grep -q '^torchvision  none (width multiplier)$' <<<"$out" && grep -q '^optimizer    lars$' <<<"$out" \
    && grep -q '^step         4 (records 64, epoch 0)$' <<<"$out" \
    && grep -q '^made by      ntxent-step -q -T 1 --model resnet18' <<<"$out" \
    && grep -q '^trained on   simclr pairs, split train: [0-9]* cases, [0-9]* images, label fraction 1$' <<<"$out" \
    && pass "show: model, parameters, constructor, position, optimiser, data, origin" || fail "show" "$out"
ckpt show --json ft.ckpt > ft.json
$PY - ft.json <<'EOF' && pass "show --json" || fail "show --json" "$(cat ft.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "medssl" and j["config"]["depth"] == 18 and j["config"]["classes"] == 4, j
assert j["parameters"]["classifier"] == 4 * 128 + 4 and j["torchvision"] is None and j["optimizer"] == "", j
assert j["task"] == "multiclass" and j["class_names"] == ["class0", "class1", "class2", "class3"], j
assert j["made_by"]["tool"] == "finetune" and "--init" in j["made_by"]["args"], j
assert j["trained_on"].startswith("single images, split train: "), j
EOF

# Export and import: the same weights, the same outputs, bit for bit.
ckpt export --head -o pre.safetensors pre.ckpt
ckpt import -o back.ckpt pre.safetensors
ckpt export --head -o again.safetensors back.ckpt
same "export, import, export: the same bytes" pre.safetensors again.safetensors
embed -q -T 1 --ckpt pre.ckpt -k features test.mts | records /dev/stdin > a.rec
embed -q -T 1 --ckpt pre.safetensors -k features test.mts | records /dev/stdin > b.rec
embed -q -T 1 --ckpt back.ckpt -k features test.mts | records /dev/stdin > c.rec
same "embed reads a safetensors file: the same features" a.rec b.rec
same "an imported checkpoint gives the same features" a.rec c.rec
n=$(od -An -tu8 -N8 pre.safetensors | tr -d ' ')
[ $((n % 8)) -eq 0 ] && [ "$(head -c 9 pre.safetensors | tail -c 1)" = "{" ] \
    && head -c $((8 + n)) pre.safetensors | tail -c +9 | grep -q '"__metadata__":{"format":"pt"' \
    && pass "the header: length a multiple of 8, JSON, metadata format pt" || fail "header layout" "n=$n"
out=$(ckpt show pre.safetensors)
grep -q '^format       safetensors, 132 tensors' <<<"$out" && grep -q '^step         4 (records 64' <<<"$out" \
    && grep -q '^             medssl.width=0.25$' <<<"$out" && grep -q '^trained on   simclr pairs' <<<"$out" \
    && pass "show reads a safetensors file" || fail "show safetensors" "$out"
ckpt export --fc -o ft.safetensors ft.ckpt
embed -q -T 1 --ckpt ft.ckpt test.mts | records /dev/stdin > a.rec
embed -q -T 1 --ckpt ft.safetensors test.mts | records /dev/stdin > b.rec
same "a classifier exported (--fc) gives the same probabilities" a.rec b.rec
ckpt show ft.safetensors | grep -q '^task         multiclass: class0, class1, class2, class3$' \
    && pass "the task and class names travel in the metadata" || fail "class names" "$(ckpt show ft.safetensors)"

# --init takes safetensors: the same run as from the checkpoint.
for init in pre.ckpt pre.safetensors; do
    pair-sample -q -m single -e 1 --seed 2 p.pack | augment -q -T 1 --seed 3 --size 16 \
        | finetune -q -T 1 --init "$init" --batch 16 -o "ft-${init%.*}-${init#*.}.ckpt"
    pair-sample -q -m simclr -e 1 --seed 6 p.pack | augment -q -T 1 --seed 8 --size 16 \
        | ntxent-step -q -T 1 --batch 16 --init "$init" -o "nt-${init%.*}-${init#*.}.ckpt" 2>/dev/null
done
records ft-pre-ckpt.ckpt > a.rec
records ft-pre-safetensors.ckpt > b.rec
same "finetune --init FILE.safetensors: the run of --init FILE.ckpt" a.rec b.rec
records nt-pre-ckpt.ckpt > a.rec
records nt-pre-safetensors.ckpt > b.rec
same "ntxent-step --init FILE.safetensors (with its head): the run of --init FILE.ckpt" a.rec b.rec
cp pre.safetensors renamed.ckpt
embed -q -T 1 --ckpt renamed.ckpt -k features test.mts > /dev/null \
    && pass "a safetensors file is known by its bytes, whatever its name" || fail "sniff by content"

# A colour model into a grey one: conv1 summed over the colours.
mkpack c.pack 16 1 2 3 16 16 stripes
pair-sample -q -m single -e 1 c.pack | augment -q -T 1 --size 16 \
    | finetune -q -T 1 --random-init --model resnet18 --width 0.125 --stem small --batch 8 -o rgb.ckpt
ckpt export -o rgb.safetensors rgb.ckpt
check_fails "a colour model into a grey stream names --in-ch 1" 1 "3-channel images" \
    bash -c "finetune -q --init rgb.safetensors -o x.ckpt < test.mts"
ckpt import --in-ch 1 -o grey.ckpt rgb.safetensors
ckpt show grey.ckpt | grep -q '^model        resnet18 x0.125, small stem, 1 channel' \
    && embed -q -T 1 --ckpt grey.ckpt -k features test.mts > /dev/null \
    && pass "import --in-ch 1 makes a grey model that runs on grey images" || fail "grey import"

check_fails "show: not a checkpoint" 1 "ckpt: test.mts: not a checkpoint" ckpt show test.mts
head -c 5000 pre.safetensors > cut.safetensors
check_fails "a truncated safetensors file names the header" 1 "ckpt: cut.safetensors: header: a header of [0-9]+ bytes in a file of 5000" \
    ckpt show cut.safetensors
{ head -c $((8 + n)) pre.safetensors; head -c 100 /dev/zero; } > short.safetensors
check_fails "data cut short names a tensor" 1 "ckpt: short.safetensors: tensor '[a-z0-9._]+': data_offsets \[[0-9]+, [0-9]+\] past the data section \(100 bytes\)" \
    ckpt show short.safetensors
check_fails "export --head of a checkpoint without a head" 1 "ckpt: ft.ckpt: --head: this checkpoint has no projection head" \
    ckpt export --head -o x.safetensors ft.ckpt
check_fails "import of one of our checkpoints" 1 "ckpt: pre.ckpt: not a safetensors file" ckpt import -o x.ckpt pre.ckpt
check_fails "import --model names the difference" 1 "the file holds a resnet18, not the --model resnet50" \
    ckpt import --model resnet50 -o x.ckpt pre.safetensors
check_fails "--resume refuses safetensors" 1 "pre.safetensors: no optimiser state in it" \
    bash -c "pair-sample -q -m simclr p.pack | augment -q --size 16 | ntxent-step -q --batch 16 --resume pre.safetensors -o x.ckpt"
check_fails "an unknown option is a usage error" 2 "usage|unknown option" ckpt show --frobnicate pre.ckpt
check_fails "no command" 2 "say what to do" ckpt pre.ckpt
check_fails "--json goes with show" 2 "--json goes with 'ckpt show'" ckpt export --json -o x.safetensors pre.ckpt
check_fails "export needs -o" 2 "say where to write" ckpt export pre.ckpt
check_fails "unwritable output" 1 "cannot create" ckpt export -o /nonexistent/x.safetensors pre.ckpt
[ -z "$(ls -A | grep -E '^\.|^x\.')" ] && pass "no output and no temporary left by the failures" \
    || fail "leftovers" "$(ls -A)"
ckpt --help | grep -q '^usage: ckpt show' && pass "--help" || fail "--help"
ckpt --version | grep -q 'medssl' && pass "--version" || fail "--version"

# torchvision itself, both ways, and the man page's Python.
if ! $PY -c 'import torch, torchvision, numpy, msgpack' 2>/dev/null; then
    echo "skip - torchvision parity: python3-torch or python3-torchvision not installed (the committed fixtures of test_safetensors still run)"
    exit 0
fi
tv=$top/tests/torch/torchvision_safetensors.py
sed -n '/^\.EX/,/^\.EE/p' "$top/man/ckpt.1" | sed '1d;$d' > convert.py
mkpack p3.pack 24 1 4 3 32 32 stripes
pair-sample -q -m single --no-shuffle p3.pack | augment -q --eval --size 32 > test3.mts
$PY "$tv" make tv.pth 18 4 && $PY convert.py tv.pth tv.safetensors
embed -q --ckpt tv.safetensors -k logits test3.mts > ours.mts
out=$($PY "$tv" compare tv.safetensors test3.mts ours.mts) && pass "torchvision's resnet18 runs here: $out" \
    || fail "torchvision -> ours" "$out"
pair-sample -q -m single -e 1 --seed 2 p3.pack | augment -q --seed 3 --size 32 \
    | finetune -q --random-init --model resnet18 --stem large --batch 8 -o ft3.ckpt
ckpt export --fc -o ft3.safetensors ft3.ckpt
ckpt export -o enc3.safetensors ft3.ckpt
ckpt show ft3.safetensors | grep -q '^torchvision  torchvision.models.resnet18(num_classes=4)$' \
    && ckpt show enc3.safetensors | grep -q '^torchvision  torchvision.models.resnet18() without fc' \
    && ckpt show enc3.safetensors | grep -q '^timm         timm.create_model("resnet18", num_classes=0)$' \
    && pass "show names the torchvision and timm constructors" || fail "constructor" "$(ckpt show enc3.safetensors)"
out=$($PY - "$top/tests/torch" enc3.safetensors 2>&1 <<'EOF'
import sys, torchvision
sys.path.insert(0, sys.argv[1])
from torchvision_safetensors import read_safetensors
r = torchvision.models.resnet18().load_state_dict(read_safetensors(sys.argv[2]), strict=False)
print(sorted(r.missing_keys), r.unexpected_keys)
EOF
)
[ "$out" = "['fc.bias', 'fc.weight'] []" ] && pass "an encoder export loads into torchvision.models.resnet18() missing only fc.*" \
    || fail "strict=False load" "$out"
embed -q --ckpt ft3.ckpt -k logits test3.mts > ours.mts
out=$($PY "$tv" compare ft3.safetensors test3.mts ours.mts) \
    && pass "ours loads strictly into torchvision.models.resnet18: $out" || fail "ours -> torchvision" "$out"
$PY convert.py ft3.safetensors ft3.pth && $PY convert.py ft3.pth ft3b.safetensors && ckpt import -o ft3b.ckpt ft3b.safetensors
embed -q --ckpt ft3b.ckpt -k logits test3.mts | records /dev/stdin > a.rec
records ours.mts > b.rec
same "the man page's script: safetensors -> .pth -> safetensors keeps every weight" a.rec b.rec

# The protocol from PyTorch's weights: step 2 from them, the baseline fine-tuned from them.
"$top/pipelines/simclr.sh" --epochs 1 --batch 8 --size 32 --init tv.safetensors p3.pack s2.ckpt -- -q --head-layers 2 2>err.txt \
    && ckpt show s2.ckpt | grep -q '^model        resnet18 x1, large stem, 3 channels, head 2 layers' \
    && pass "simclr.sh --init a torchvision model (step 2 from imported weights)" || fail "simclr.sh --init" "$(cat err.txt)"
"$top/pipelines/finetune-eval.sh" --epochs 1 --batch 8 --size 32 --val none --bootstrap 20 p3.pack tv.safetensors ev \
    -- -q 2>err.txt && grep -q 'top-1 accuracy' ev/test.txt \
    && pass "finetune-eval.sh from a torchvision model (the supervised-init baseline)" || fail "finetune-eval.sh" "$(cat err.txt)"
