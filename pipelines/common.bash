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
