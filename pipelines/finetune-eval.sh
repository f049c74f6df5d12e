#!/usr/bin/env bash
# finetune-eval.sh: fine-tune on a fraction of the labels, then evaluate on
# test splits (see medssl-pipelines(7)):
#   pair-sample --mode single -f F | augment | finetune    (validation: augment --eval)
#   pair-sample --mode single --split T | augment --eval | embed | auc   for each test split
script=finetune-eval.sh
. "$(dirname "$0")/common.bash"

usage() {
    cat <<USAGE
usage: $script [options] PACK (INIT.ckpt | --random-init) OUTDIR [-- FINETUNE OPTIONS...]
Fine-tune on PACK's train split and evaluate (INIT may be a .safetensors file
of torchvision's names, e.g. supervised ImageNet weights); writes OUTDIR/finetune.ckpt,
OUTDIR/finetune.tsv, and per test split OUTDIR/<split>.scores.mts (embed's
output), <split>.json and <split>.txt (auc's report).

  --fraction F        label fraction of the train cases (default 1)
  --label-seed S      which cases (default 0)
  --epochs E          (default 30)
  --batch N           (default 64)
  --size S            image size (default 224)
  --linear            linear evaluation (frozen encoder)
  --random-init       no pretrained encoder (supervised baseline); with it, the
                      model options go after -- (e.g. -- --model resnet18)
  --val SPLIT         validation split for choosing the epoch (default val; none: no validation)
  --test LIST         test splits, comma-separated (default test)
  --per-case          average the images of each case before scoring
  --bootstrap N       bootstrap resamples for the intervals (default 1000)
  --seed S            sampling and augmentation seed (default 1)
  --augment "OPTS"    extra augment options for training
  -h, --help          this text
Options after -- go to finetune (--lr, --optimizer, --weight-decay, ...).
USAGE
}

fraction=1 label_seed=0 epochs=30 batch=64 size=224 linear=() random=0 val=val tests=test per_case=()
bootstrap=1000 seed=1 aug_opts=""
while [ $# -gt 0 ]; do
    case $1 in
        --fraction) fraction=$2; shift 2 ;;
        --label-seed) label_seed=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --linear) linear=(--linear); shift ;;
        --random-init) random=1; shift ;;
        --val) val=$2; shift 2 ;;
        --test) tests=$2; shift 2 ;;
        --per-case) per_case=(--per-case mean); shift ;;
        --bootstrap) bootstrap=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --augment) aug_opts=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) usage_error "unknown option $1" ;;
        *) break ;;
    esac
done
# --random-init may also stand where INIT.ckpt would, as the usage line shows.
[ $# -ge 2 ] && [ "$2" = --random-init ] && { random=1; set -- "$1" "${@:3}"; }
need=$((3 - random))
[ $# -ge $need ] || usage_error "$script [options] PACK (INIT.ckpt | --random-init) OUTDIR [-- FINETUNE OPTIONS...]"
pack=$1; shift
if [ $random = 1 ]; then init=(--random-init); else init=(--init "$1"); shift; fi
outdir=$1; shift
[ "${1:-}" = "--" ] && shift
[ -r "$pack" ] || die "$pack: cannot read"
mkdir -p "$outdir"

val_opts=()
if [ "$val" != none ]; then
    stage_1=(pair-sample -q --mode single --split "$val" --no-shuffle --labeled-only "$pack")
    stage_2=(augment --eval --size "$size" -o "$outdir/val.mts")
    run_stages "pair-sample (validation)" "augment (validation)"
    val_opts=(--val "$outdir/val.mts")
fi

read -r -a aug_extra <<<"$aug_opts"
stage_1=(pair-sample -q --mode single --epochs "$epochs" --seed "$seed" --label-fraction "$fraction"
         --label-seed "$label_seed" -T 1 "$pack")
stage_2=(augment --seed $((seed + 1)) --size "$size" -T 1 "${aug_extra[@]}")
stage_3=(finetune "${init[@]}" "${linear[@]}" "${val_opts[@]}" --batch "$batch" --log "$outdir/finetune.tsv"
         -o "$outdir/finetune.ckpt" "$@")
run_stages pair-sample augment finetune

IFS=, read -r -a test_splits <<<"$tests"
for t in "${test_splits[@]}"; do
    stage_1=(pair-sample -q --mode single --split "$t" --no-shuffle "$pack")
    stage_2=(augment --eval --size "$size")
    stage_3=(embed -q --ckpt "$outdir/finetune.ckpt" "${per_case[@]}" -o "$outdir/$t.scores.mts")
    run_stages "pair-sample ($t)" "augment ($t)" "embed ($t)"
    auc --bootstrap "$bootstrap" --seed "$seed" --json -o "$outdir/$t.json" "$outdir/$t.scores.mts"
    auc --bootstrap "$bootstrap" --seed "$seed" "$outdir/$t.scores.mts" > "$outdir/$t.txt"
    echo "$script: $t: $(grep -E 'top-1 accuracy|mean AUC' "$outdir/$t.txt" | sed 's/  */ /g' | paste -sd ';' | sed 's/;/; /g')" >&2
done
