#!/usr/bin/env bash
# simclr.sh: contrastive pretraining from a pack (see medssl-pipelines(7)):
#   pair-sample --mode simclr | augment | ntxent-step
# micle.sh and pcrl.sh run it with another pair mode or trainer.
script=${SCRIPT_NAME:-simclr.sh}
. "$(dirname "$0")/common.bash"
mode=${MODE:-simclr}
trainer=${TRAINER:-ntxent-step}
# pcrl-step needs each view's reconstruction target and transformation code.
targets=()
[ "$trainer" = pcrl-step ] && targets=(--targets)

usage() {
    cat <<USAGE
usage: $script [options] PACK OUT.ckpt [-- ${trainer^^} OPTIONS...]
Contrastive pretraining ($mode pairs) from PACK into OUT.ckpt:
  pair-sample --mode $mode | augment ${targets[*]}${targets:+ }| $trainer

  --pairs MODE      simclr (two views of one image) or micle (of two images of
                    a case; a single-image case gives two views of its image)
                    (default $mode)
  --epochs E        epochs (default 100)
  --batch N         pairs per step (default 256)
  --size S          augmented image size (default 224)
  --split LIST      splits to train on (default train)
  --seed S          sampling seed; augment uses S+1 (default 1)
  --init CKPT       start from this checkpoint (step 2 of the protocol), or from
                    a .safetensors file of torchvision's names (see ckpt(1))
  --resume          continue OUT.ckpt where it stopped (same options)
  --augment "OPTS"  extra augment options, e.g. "--rotate 15 --vflip-p 0.5"
  --augment-threads N  threads of augment (default 1)
  --trainer-threads N  threads of $trainer (default: every core, or its
                    share with --ranks; augment and pair-sample sleep while the
                    trainer works)
  --ranks K         train over K processes under mpirun, one pipeline each on
                    its shard of every batch (the same result as one process;
                    see ntxent-step(1); ntxent-step only)
  --mpirun "OPTS"   extra mpirun options, e.g. "--hostfile hosts --mca btl self,tcp"
  -h, --help        this text
Options after -- go to $trainer (model, --lr, --tau, --log, ...).
USAGE
}

epochs=100 batch=256 size=224 split=train seed=1 init="" resume=0 aug_opts="" aug_threads=1 train_threads=""
ranks=0 mpi_opts=""
args=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --pairs) mode=$2; shift 2
                 case $mode in simclr|micle) ;; *) usage_error "--pairs: '$mode' is not simclr or micle" ;; esac ;;
        --epochs) epochs=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --split) split=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --resume) resume=1; shift ;;
        --augment) aug_opts=$2; shift 2 ;;
        --augment-threads) aug_threads=$2; shift 2 ;;
        --trainer-threads) train_threads=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --mpirun) mpi_opts=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) usage_error "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || usage_error "$script [options] PACK OUT.ckpt [-- ${trainer^^} OPTIONS...]"
pack=$1 out=$2; shift 2
[ "${1:-}" = "--" ] && shift
[ -r "$pack" ] || die "$pack: cannot read"
[[ $ranks =~ ^[0-9]+$ ]] || usage_error "--ranks $ranks: not a count of processes"
[ "$ranks" -gt 0 ] && [ "$trainer" != ntxent-step ] && usage_error "--ranks: $trainer does not run over several processes yet (ntxent-step does)"

# --ranks K: this script again under mpirun, once per rank (MEDSSL_RANKS
# tells those runs apart from this one), each with its shard of the batches.
rank=0 shard=()
if [ "$ranks" -gt 0 ] && [ -z "${MEDSSL_RANKS:-}" ]; then
    mpi_command "$ranks" "$mpi_opts"
    exec "${mpi[@]}" -x MODE="$mode" "$0" "${args[@]}"
fi
if [ -n "${MEDSSL_RANKS:-}" ]; then
    mpi_rank_setup
    shard=(--shard "$rank/$MEDSSL_RANKS" --batch "$batch")
    [ "$rank" -gt 0 ] && aug_opts="-q $aug_opts"
fi
[ -n "$train_threads" ] || train_threads=$cores

start=0 from=()
if [ $resume = 1 ]; then
    [ -r "$out" ] || die "$out: no checkpoint to resume"
    step=$(header_value "$out" step) || die "$out: not a checkpoint"
    start=$((step * batch))
    from=(--resume "$out")
elif [ -n "$init" ]; then
    from=(--init "$init")
fi

read -r -a aug_extra <<<"$aug_opts"
stage_1=(pair-sample -q --mode "$mode" --epochs "$epochs" --seed "$seed" --split "$split" --start "$start" -T 1 \
         "${shard[@]}" "$pack")
stage_2=(augment --seed $((seed + 1)) --size "$size" -T "$aug_threads" "${targets[@]}" "${aug_extra[@]}")
stage_3=("$trainer" --batch "$batch" -T "$train_threads" "${from[@]}" -o "$out" "$@")
run_stages pair-sample augment "$trainer"
