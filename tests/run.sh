#!/usr/bin/env bash
# Runs every test program and tool test, then prints the closing summary
# "N passed, N failed" (one count per "ok"/"not ok" line).  A program that
# exits non-zero without reporting a failure (a crash) counts as one failure.
set -u
passed=0 failed=0 skipped=0
failures=()
for t in "$@"; do
    name=${t##*/}
    out=$( "$t" 2>&1 ); rc=$?
    ok=$(grep -c '^ok' <<<"$out")
    notok=$(grep -c '^not ok' <<<"$out")
    skip=$(grep -c '^skip' <<<"$out")
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        notok=1
        out+=$'\n'"not ok - $name exited with status $rc"
    fi
    passed=$((passed + ok)); failed=$((failed + notok)); skipped=$((skipped + skip))
    if [ "$notok" -gt 0 ]; then
        failures+=("$name")
        printf '%s\n' "$out" | sed "s|^|$name: |"
    else
        printf '%-28s %3d ok%s\n' "$name" "$ok" "$( [ "$skip" -gt 0 ] && echo ", $skip skipped")"
        grep '^skip' <<<"$out" | sed "s|^|    |"
    fi
done
[ ${#failures[@]} -gt 0 ] && echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
