#!/usr/bin/env bash
# Every tool has a man page that renders cleanly and documents every long
# option its --help lists; every pipeline script has --help.
. "$(dirname "$0")/common.bash"
top=$(cd "$(dirname "$0")/../.." && pwd)
for tool in "$top"/bin/*; do
    name=${tool##*/}
    page="$top/man/$name.1"
    if [ ! -f "$page" ]; then
        fail "$name has a man page" "no man/$name.1"
        continue
    fi
    warnings=$(man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$warnings" ] && pass "man/$name.1 renders without warnings" || fail "man/$name.1 warnings" "$warnings"
    text=$(MANWIDTH=200 man -l "$page" 2>/dev/null)
    missing=""
    for opt in $("$tool" --help | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
        grep -q -- "$opt" <<<"$text" || missing+=" $opt"
    done
    [ -z "$missing" ] && pass "man/$name.1 documents every option of --help" || fail "man/$name.1 options" "missing:$missing"
done
for script in "$top"/pipelines/*.sh; do
    "$script" --help | grep -q '^usage:' && pass "${script##*/} --help" || fail "${script##*/} --help"
done
