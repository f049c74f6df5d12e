#!/usr/bin/env bash
# finetune-eval.sh: fine-tune on a fraction of the labels, then evaluate on
# test splits (see medssl-pipelines(7)):
#   pair-sample --mode single -f F | augment | finetune    (validation: augment --eval)
#   pair-sample --mode single --split T | augment --eval | embed | auc   for each test split
script=${SCRIPT_NAME:-finetune-eval.sh}
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
  --trainer-threads N threads of finetune (default: every core, or its share with --ranks)
  --ranks K           fine-tune over K processes under mpirun, one pipeline each on
                      its shard of every batch (see finetune(1)); implies --drop-last
  --mpirun "OPTS"     extra mpirun options, e.g. "--hostfile hosts --mca btl self,tcp"
  --drop-last         train on whole batches only: each epoch leaves out its last
                      (images mod batch) images, a different set each epoch; with
                      -- --micro-batch M, one process gives the bytes of --ranks
  -h, --help          this text
Options after -- go to finetune (--lr, --optimizer, --weight-decay, ...).
USAGE
}

fraction=1 label_seed=0 epochs=30 batch=64 size=224 linear=() random=0 val=val tests=test per_case=()
bootstrap=1000 seed=1 aug_opts="" train_threads="" ranks=0 mpi_opts="" drop_last=()
args=("$@")
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
        --trainer-threads) train_threads=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --mpirun) mpi_opts=$2; shift 2 ;;
        --drop-last) drop_last=(--drop-last); shift ;;
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
[[ $ranks =~ ^[0-9]+$ ]] || usage_error "--ranks $ranks: not a count of processes"
# (--batch may come after --drop-last)
if [ ${#drop_last[@]} -gt 0 ] || [ "$ranks" -gt 0 ]; then drop_last=(--drop-last --batch "$batch"); fi
mkdir -p "$outdir"

val_opts=()
[ "$val" != none ] && val_opts=(--val "$outdir/val.mts")
# Under mpirun (MEDSSL_RANKS): this rank's training pipeline only; the first
# run of the script prepares the validation images and evaluates.
if [ -z "${MEDSSL_RANKS:-}" ] && [ "$val" != none ]; then
    stage_1=(pair-sample -q --mode single --split "$val" --no-shuffle --labeled-only "$pack")
    stage_2=(augment --eval --size "$size" -o "$outdir/val.mts")
    run_stages "pair-sample (validation)" "augment (validation)"
fi

shard=() quiet=()
if [ -n "${MEDSSL_RANKS:-}" ]; then
    mpi_rank_setup
    shard=(--shard "$rank/$MEDSSL_RANKS")
    [ "$rank" -gt 0 ] && quiet=(-q)
fi
if [ -z "${MEDSSL_RANKS:-}" ] && [ "$ranks" -gt 0 ]; then
    mpi_command "$ranks" "$mpi_opts"
    set +e
    "${mpi[@]}" "$0" "${args[@]}"
    status=$?
    set -e
    [ $status -eq 0 ] || { echo "$script: fine-tuning over $ranks ranks failed with status $status" >&2; exit $status; }
else
    [ -n "$train_threads" ] || train_threads=$cores
    read -r -a aug_extra <<<"$aug_opts"
    stage_1=(pair-sample -q --mode single --epochs "$epochs" --seed "$seed" --label-fraction "$fraction"
             --label-seed "$label_seed" -T 1 "${drop_last[@]}" "${shard[@]}" "$pack")
    stage_2=(augment "${quiet[@]}" --seed $((seed + 1)) --size "$size" -T 1 "${aug_extra[@]}")
    stage_3=(finetune "${init[@]}" "${linear[@]}" "${val_opts[@]}" --batch "$batch" -T "$train_threads"
             --log "$outdir/finetune.tsv" -o "$outdir/finetune.ckpt" "$@")
    run_stages pair-sample augment finetune
    [ -n "${MEDSSL_RANKS:-}" ] && exit 0
fi

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
