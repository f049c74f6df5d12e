# Shared helpers for the tool tests (sourced, not run): one "ok - name" or
# "not ok - name" line per check, as tests/run.sh counts them.
set -u
T=$(mktemp -d /tmp/medssl-tooltest-XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; shift; for line in "$@"; do echo "# $line"; done; }

# check NAME CMD...: the command succeeds.
check() {
    name=$1; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "exit $?: $out"; fi
}

# check_fails NAME STATUS PATTERN CMD...: the command exits with STATUS and
# its stderr matches PATTERN (grep -E).
check_fails() {
    name=$1 want=$2 pattern=$3; shift 3
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ "$rc" -eq "$want" ] && grep -Eq -- "$pattern" "$T/err"; then
        pass "$name"
    else
        fail "$name" "exit $rc (want $want), stderr: $(head -c 400 "$T/err")" "want /$pattern/"
    fi
}

# same NAME A B: two files have the same bytes.
same() {
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}
