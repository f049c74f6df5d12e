#!/usr/bin/env bash
# Fuzzing, briefly.  The committed regression inputs (tests/fuzz/corpus: what
# the fuzzers found) go through the tool that reads that kind of file
# (tests/fuzz/replay.sh): each must end with status 0, 1 or 2, never a
# signal, and name the tool in its message.  Then, when clang is installed,
# every libFuzzer target runs for a few seconds from its seeds (make fuzz
# runs them longer; tests/fuzz/README.md).
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
corpus=$top/tests/fuzz/corpus
cd "$T"

while IFS=$'\t' read -r kind file rc verdict msg; do
    if [ "$verdict" = ok ]; then
        pass "regression input $kind/$file (status $rc${msg:+: $msg})"
    else
        fail "regression input $kind/$file" "status $rc: $msg"
    fi
done < <("$top/tests/fuzz/replay.sh" "$corpus")

resource=$(clang -print-resource-dir 2>/dev/null) || resource=
if [ ! -e "$resource/lib/linux/libclang_rt.fuzzer-x86_64.a" ]; then
    echo "skip - libFuzzer targets: clang and libclang-rt-14-dev are not installed"
    exit 0
fi
check "the libFuzzer targets build (make fuzzers)" make -s -C "$top" fuzzers
for target in "$top"/build/fuzz/fuzz_*; do
    if out=$("$top/tests/fuzz/run.sh" -c "$T/corpus" 4 "$target"); then
        pass "fuzz: $out"
    else
        fail "fuzz ${target##*/}" "$out"
    fi
done
