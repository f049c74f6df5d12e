#!/usr/bin/env bash
# The Python example in mts(5) writes a stream our tools read, and reads one
# back; skipped when python3-msgpack or python3-numpy is missing.
. "$(dirname "$0")/common.bash"
man5="$(dirname "$0")/../../man/mts.5"
if ! $PY -c 'import msgpack, numpy' 2>/dev/null; then
    echo "skip - mts(5) Python example: python3-msgpack or python3-numpy not installed"
    exit 0
fi
sed -n '/^\.EX/,/^\.EE/p' "$man5" | sed '1d;$d' > "$T/example.py"
$PY "$T/example.py" > "$T/py.mts"
out=$(mts show "$T/py.mts")
grep -q 'header mts=1 tool="example.py"' <<<"$out" && [ "$(awk '$2 == "record"' <<<"$out" | grep -c 'image=u8\[1,4,4\]')" -eq 3 ] \
    && pass "the example's stream is read by mts" || fail "python writes" "$out"
mkstream 2 u8 2 2 > "$T/ours.mts"
out=$($PY "$T/example.py" "$T/ours.mts" 2>&1)
[ "$(awk '{print $1}' <<<"$out" | tr '\n' ' ')" = "case000000 case000000 " ] \
    && pass "the example reads a stream we wrote" || fail "python reads" "$out"
