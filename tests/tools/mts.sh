#!/usr/bin/env bash
# mts: show, count, cat, compression round trips, selection, bad input.
. "$(dirname "$0")/common.bash"

mkstream 5 u8 3 8 8 > "$T/a.mts"
MKSTREAM_OUT="$T/b.mts.zst" mkstream 4 f32 2 3

out=$(mts show "$T/a.mts")
[ "$(awk '$2 == "record"' <<<"$out" | wc -l)" -eq 5 ] && grep -q 'image=u8\[3,8,8\]{min' <<<"$out" \
    && pass "show prints a line per record with tensor stats" || fail "show" "$out"

out=$(mts count "$T/a.mts" "$T/b.mts.zst")
[ "$out" = "2 headers, 9 records, $(( $(stat -c %s "$T/a.mts") + $(mts cat -z 0 "$T/b.mts.zst" | wc -c) )) bytes" ] \
    && pass "count adds files, raw and compressed" || fail "count" "$out"

mts cat -o "$T/a.mts.zst" "$T/a.mts"
mts cat -z 0 < "$T/a.mts.zst" > "$T/a2.mts"
same "cat compresses (.zst name) and decompresses (-z 0) to the same bytes" "$T/a.mts" "$T/a2.mts"
head -c 4 "$T/a.mts.zst" | od -An -tx1 | grep -q '28 b5 2f fd' \
    && pass "a .zst output starts with the zstd magic" || fail "zstd magic"

mts cat -z 3 -T 2 "$T/a.mts" > "$T/mt.zst"
mts cat -z 0 "$T/mt.zst" > "$T/mt.mts"
same "zstd with worker threads round-trips" "$T/a.mts" "$T/mt.mts"

cat "$T/a.mts" "$T/a.mts.zst" "$T/b.mts.zst" | mts count > "$T/n"
grep -q "^3 headers, 14 records" "$T/n" && pass "concatenated raw and zstd streams on a pipe" \
    || fail "concatenated" "$(cat "$T/n")"

out=$(mts show --skip 1 --take 2 "$T/a.mts" | awk '$2 == "record"' | wc -l)
[ "$out" -eq 2 ] && pass "--skip/--take select records" || fail "skip/take" "$out"
out=$(mts cat --skip 3 "$T/a.mts" | mts show --no-stats | awk '{print $3}' | head -3 | tr '\n' ' ')
[ "$out" = 'mts=1 case="case000001" case="case000002" ' ] && pass "cat --skip keeps the header" \
    || fail "cat --skip" "$out"

head -c 100 "$T/a.mts" > "$T/trunc.mts"
check_fails "a truncated stream names the byte offset" 1 "trunc.mts: byte 100: truncated frame" mts count "$T/trunc.mts"
printf 'hello' > "$T/text"
check_fails "text is not a stream" 1 "byte 0: expected a msgpack map" mts show "$T/text"
check_fails "a missing file" 1 "nope.mts: cannot open: No such file" mts show "$T/nope.mts"
check_fails "unknown option is a usage error" 2 "usage" mts --frobnicate
check_fails "cat to an unwritable place" 1 "cannot create" mts cat -o /nonexistent/dir/x.mts "$T/a.mts"
check_fails "a bad number" 2 "--take: 'x' is not an integer" mts show --take x "$T/a.mts"
printf '\xdf\xff\xff\xff\xff' > "$T/hostile"
check_fails "a hostile map count is refused" 1 "over the limit of 1048576" mts show "$T/hostile"
MTS_MAX_FRAME=100 mts count "$T/a.mts" >/dev/null 2>"$T/err"
grep -q "MTS_MAX_FRAME" "$T/err" && pass "MTS_MAX_FRAME lowers the frame limit" || fail "limit env" "$(cat "$T/err")"

# A consumer that goes away: upstream exits quietly (no "Broken pipe").
mkstream 2000 u8 3 32 32 | mts cat | head -c 10 > /dev/null 2>"$T/err"
[ ! -s "$T/err" ] && pass "SIGPIPE exits quietly" || fail "sigpipe" "$(cat "$T/err")"

mts --help | grep -q '^usage: mts' && pass "--help" || fail "--help"
mts --version | grep -q 'medssl' && pass "--version" || fail "--version"
