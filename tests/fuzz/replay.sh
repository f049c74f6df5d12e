#!/usr/bin/env bash
# Replays fuzz inputs through the tools that read each kind of file (the
# gcc build on PATH, not the fuzz build): stream -> mts count, pack ->
# pair-sample, ckpt -> embed --ckpt, csv -> case-pack, image -> case-pack
# --strict on a one-line manifest (the option byte stripped), dicom -> the
# same.  Prints one
# line per input: KIND FILE STATUS VERDICT MESSAGE, where VERDICT is "ok"
# (status 0, or 1/2 with a "tool: ..." message) or "BAD" (a signal, or a
# failure without a message).  Exits 1 when an input was BAD.
#
#   tests/fuzz/replay.sh CORPUS_ROOT      (folders CORPUS_ROOT/stream, ...)
set -uo pipefail
root=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/medssl-replay-XXXXXX)
trap 'rm -rf "$work"' EXIT
bad=0
for kind in stream pack ckpt csv image dicom; do
    [ -d "$root/$kind" ] || continue
    for f in "$root/$kind"/*; do
        [ -f "$f" ] || continue
        case $kind in
        stream) tool=mts; cmd=(mts count "$f") ;;
        pack) tool=pair-sample; cmd=(pair-sample -q -T 1 "$f") ;;
        ckpt) tool=embed; cmd=(embed -q -T 1 -k features --ckpt "$f") ;;
        csv) tool=case-pack; cmd=(case-pack -q -T 1 -o "$work/x.pack" "$f") ;;
        image | dicom)
            tail -c +2 "$f" > "$work/image"
            printf 'case,path\na,image\n' > "$work/image.csv"
            tool=case-pack
            cmd=(case-pack -q -T 1 --strict -o "$work/x.pack" "$work/image.csv")
            ;;
        esac
        (cd "$work" && timeout 60 "${cmd[@]}" < /dev/null > /dev/null 2> "$work/err")
        rc=$?
        msg=$(grep -a -m1 "^$tool: " "$work/err" | tr '\t' ' ')
        if [ $rc -eq 0 ] || { [ $rc -le 2 ] && [ -n "$msg" ]; }; then
            verdict=ok
        else
            verdict=BAD
            bad=1
            msg=$(head -c 300 "$work/err" | tr '\n\t' '  ')
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "${f##*/}" "$rc" "$verdict" "$msg"
    done
done
exit $bad
