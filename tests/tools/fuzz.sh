#!/usr/bin/env bash
# Fuzzing, briefly.  The committed regression inputs (tests/fuzz/corpus: what
# the fuzzers found) go through the tool that reads that kind of file: each
# must end with status 0, 1 or 2, never a signal, and name the tool in its
# message.  Then, when clang is installed, every libFuzzer target runs for a
# few seconds from its seeds (make fuzz runs them longer; tests/fuzz/README.md).
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
corpus=$top/tests/fuzz/corpus
cd "$T"

# replay NAME TOOL ARGS...: ends by itself, and a failure says "TOOL: ...".
replay() {
    local name=$1 tool=$2
    shift
    "$@" < /dev/null > /dev/null 2> err.txt
    local rc=$?
    if [ "$rc" -eq 0 ] || { [ "$rc" -le 2 ] && grep -q "^$tool: " err.txt; }; then
        pass "$name ($tool: status $rc)"
    else
        fail "$name" "status $rc: $(head -c 600 err.txt)"
    fi
}
shopt -s nullglob
for f in "$corpus"/stream/*; do replay "regression input stream/${f##*/}" mts count "$f"; done
for f in "$corpus"/pack/*; do replay "regression input pack/${f##*/}" pair-sample -q "$f"; done
for f in "$corpus"/ckpt/*; do replay "regression input ckpt/${f##*/}" embed -q --ckpt "$f"; done
for f in "$corpus"/csv/*; do replay "regression input csv/${f##*/}" case-pack -q -o x.pack "$f"; done
for f in "$corpus"/image/*; do
    tail -c +2 "$f" > image  # the first byte holds the fuzzer's decoding options
    printf 'case,path\na,image\n' > image.csv
    replay "regression input image/${f##*/}" case-pack -q --strict -o x.pack image.csv
done

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
