# Shared by the pipeline scripts (sourced): finding the tools, running a
# pipeline of stages, and naming the stage that failed.
set -eu -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Inside a checkout, prefer the freshly built tools.
[ -x "$here/../bin/ntxent-step" ] && PATH="$here/../bin:$PATH"
# OpenMP threads that spin while waiting steal the cores of the other stages.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cores=$(nproc)

die() { echo "$script: $*" >&2; exit 1; }
usage_error() { echo "$script: usage: $*" >&2; echo "Try '$script --help'." >&2; exit 2; }

# run_stages NAME1 NAME2 ...: runs "$stage1 | $stage2 | ..." from the arrays
# stage_1, stage_2, ... (each a command line), then reports the first stage
# that failed, with its status, so the message that matters is the last
# thing on the screen.
run_stages() {
    local names=("$@") n=$# cmd="" i
    for ((i = 1; i <= n; i++)); do
        local -n st="stage_$i"
        local q
        q=$(printf '%q ' "${st[@]}")
        cmd+="${cmd:+ | }$q"
    done
    local status=()
    set +e
    eval "$cmd"' ; status=("${PIPESTATUS[@]}")'
    set -e
    for ((i = 0; i < n; i++)); do
        if [ "${status[$i]}" -ne 0 ]; then
            echo "$script: stage $((i + 1)) (${names[$i]}) failed with status ${status[$i]}" >&2
            exit "${status[$i]}"
        fi
    done
}

# The value of KEY in a stream's first header (a checkpoint's step, ...).
header_value() { mts show --take 0 "$1" | head -1 | grep -o " $2=[^ ]*" | head -1 | cut -d= -f2; }

# --ranks K: mpi_command K "OPTS" sets the array mpi to the mpirun command
# that runs this script again once per rank (MEDSSL_RANKS tells those runs
# apart from the first one; OPTS: the user's extra mpirun options).
mpi_command() {
    command -v mpirun > /dev/null || die "--ranks: no mpirun (install openmpi-bin)"
    local root=() extra=()
    [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
    read -r -a extra <<<"$2"
    mpi=(mpirun "${root[@]}" -x MEDSSL_RANKS="$1" -x SCRIPT_NAME="$script" -x OMP_WAIT_POLICY -np "$1" "${extra[@]}")
}
# In a run under mpirun: sets rank, and threads to the rank's share of the
# cores unless given.  mpirun passes SIGINT and SIGTERM on as SIGTERM to
# every process of every rank and sends SIGKILL a second later
# (odls_base_sigkill_timeout): a rank's shell that died at once would make
# it kill the job before the trainers save, so the shell waits for its
# pipeline instead.
mpi_rank_setup() {
    trap : TERM INT
    rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}
    [ -n "$rank" ] || die "MEDSSL_RANKS is set but mpirun gave no rank"
    [ -n "$train_threads" ] || train_threads=$(( cores / MEDSSL_RANKS > 0 ? cores / MEDSSL_RANKS : 1 ))
}
