#!/usr/bin/env bash
# auc: AUC, mean and top-k equal scikit-learn's on the committed fixtures (to
# 1e-9), undefined classes, bootstrap determinism, outputs, bad input.
. "$(dirname "$0")/common.bash"

FIX=$(cd "$(dirname "$0")/../fixtures" && pwd)
EXPECTED=$FIX/auc_expected.txt

# json_values FILE: "KEY VALUE" lines from auc --json (one class per line):
# auc.K, undefined.K (reason with _ for spaces), mean_auc, top1, top3.
json_values() {
    awk '
        function number(key) {
            return match($0, "\"" key "\": [-0-9.eE+]+") ? substr($0, RSTART + length(key) + 4, RLENGTH - length(key) - 4) : ""
        }
        /"index": / {
            k = number("index")
            if ((v = number("auc")) != "") print "auc." k, v
            if (match($0, /"undefined": "[a-z ]+"/)) {
                r = substr($0, RSTART + 14, RLENGTH - 15); gsub(/ /, "_", r); print "undefined." k, r
            }
        }
        /^  "mean_auc": / && (v = number("value")) != "" { print "mean_auc", v }
        /^  "top1_accuracy": \{/ { print "top1", number("value") }
        /^  "top3_accuracy": \{/ { print "top3", number("value") }
    ' "$1"
}

# compare RUN JSON: every expected value of RUN is in the JSON (numbers to
# 1e-9), and the JSON has no value that is not expected.
compare() {
    awk -v run="$1" '
        FNR == NR { if ($1 == run) want[$2] = $3; next }
        { got[$1] = $2 }
        END {
            bad = 0
            for (k in want) {
                if (!(k in got)) { print "# missing " k; bad = 1; continue }
                if (want[k] ~ /^[a-z_]+$/) { if (got[k] != want[k]) { print "# " k ": " got[k] " != " want[k]; bad = 1 } }
                else if (got[k] - want[k] > 1e-9 || want[k] - got[k] > 1e-9) {
                    printf "# %s: %.17g, sklearn %.17g\n", k, got[k], want[k]; bad = 1
                }
            }
            for (k in got) if (!(k in want)) { print "# unexpected " k; bad = 1 }
            if (length(want) == 0) { print "# no expected values for " run; bad = 1 }
            exit bad
        }' "$EXPECTED" <(json_values "$2")
}

# against RUN FIXTURE [OPTIONS...]
against() {
    run=$1 fixture=$2; shift 2
    if ! auc --json "$@" "$FIX/$fixture" > "$T/$run.json" 2>"$T/err"; then
        fail "$run: equals sklearn" "exit $?: $(cat "$T/err")"
    elif diag=$(compare "$run" "$T/$run.json"); then
        pass "$run: AUC per class, mean$( grep -q "^$run top1" "$EXPECTED" && echo ", top-1/top-3") equal sklearn to 1e-9"
    else
        fail "$run: equals sklearn" "$diag"
    fi
}

against multiclass auc_multiclass.mts
against multiclass_logits auc_multiclass_logits.mts
against multilabel auc_multilabel.mts
against multilabel_logits auc_multilabel_logits.mts
against multilabel_logits_mean auc_multilabel_logits.mts --per-case mean
against per_image auc_per_image.mts
against per_image_mean auc_per_image.mts --per-case mean
against undefined_mc auc_undefined_mc.mts
against undefined_ml auc_undefined_ml.mts

# ---- undefined classes ----------------------------------------------------------------

auc "$FIX/auc_undefined_mc.mts" > "$T/u.txt" 2> "$T/u.err"
grep -q '^2 .* undefined (no positives)$' "$T/u.txt" && grep -q 'macro mean AUC (3 of 4 classes): 0\.4360' "$T/u.txt" \
    && pass "text: a class without positives is 'undefined (no positives)', the mean says 3 of 4" \
    || fail "undefined text" "$(cat "$T/u.txt")"
grep -q "^auc: class '2': no positives among the 60 records: AUC undefined, left out of the mean" "$T/u.err" \
    && pass "a warning on stderr names the undefined class" || fail "undefined warning" "$(cat "$T/u.err")"
grep -q '"index": 1, .*"auc": null, "ci": null, "ci_resamples": 0, "undefined": "no negatives"' "$T/undefined_ml.json" \
    && grep -q '"classes_defined": 2, "classes": 3' "$T/undefined_ml.json" \
    && pass "JSON: null AUC with the reason, classes_defined" || fail "undefined json" "$(cat "$T/undefined_ml.json")"
! grep -qi nan "$T/u.txt" "$T/undefined_mc.json" "$T/undefined_ml.json" \
    && pass "no NaN anywhere in the reports" || fail "NaN in a report"

# ---- bootstrap ----------------------------------------------------------------------------

auc -b 300 -s 7 -T 1 --json "$FIX/auc_multiclass.mts" > "$T/b1.json"
auc -b 300 -s 7 -T 2 --json "$FIX/auc_multiclass.mts" > "$T/b2.json"
same "bootstrap: same seed, 1 or 2 threads, same bytes" "$T/b1.json" "$T/b2.json"
auc -b 300 -s 8 --json "$FIX/auc_multiclass.mts" > "$T/b3.json"
cmp -s "$T/b1.json" "$T/b3.json" && fail "another seed gives other intervals" || pass "another seed gives other intervals"
awk '/"ci": \[/ { n++; match($0, /"ci": \[[^]]*\]/); split(substr($0, RSTART + 7, RLENGTH - 8), ci, ", ")
                   if (!(ci[1] + 0 < ci[2] + 0)) bad = 1
                   if ($0 !~ /"ci_resamples": 300/) bad = 1 }
     END { exit bad || n != 8 }' "$T/b1.json" \
    && pass "bootstrap: 8 intervals (5 classes, mean, top-1, top-3), low < high, all 300 resamples usable" \
    || fail "bootstrap intervals" "$(cat "$T/b1.json")"
cmp -s <(json_values "$T/b1.json") <(json_values "$T/multiclass.json") \
    && pass "bootstrap leaves the point estimates alone" || fail "bootstrap changes estimates"

# 12 records: some resamples miss a class; they are skipped for it and counted.
mts cat --take 12 "$FIX/auc_multiclass.mts" > "$T/small.mts"
auc -b 500 "$T/small.mts" > "$T/small.txt" 2>/dev/null
grep -Eq '\] \([0-9]+ of 500 resamples\)' "$T/small.txt" \
    && pass "resamples without a class's positives are skipped and counted" || fail "skipped resamples" "$(cat "$T/small.txt")"

# Per-image records resample whole cases: a case's images move together.
auc -b 200 --json "$FIX/auc_per_image.mts" > "$T/pi.json"
grep -q '"unit": "case"' "$T/pi.json" && grep -q '"cases": 120,' "$T/pi.json" && grep -q '"rows": 238,' "$T/pi.json" \
    && pass "per-image records: 238 rows in 120 cases" || fail "per-image" "$(head -12 "$T/pi.json")"

# ---- input forms and outputs --------------------------------------------------------

mts cat -o "$T/mc.mts.zst" "$FIX/auc_multiclass.mts"
auc --json "$T/mc.mts.zst" > "$T/z.json"
same "zstd input gives the same report" "$T/z.json" "$T/multiclass.json"
cat "$FIX/auc_multiclass.mts" "$FIX/auc_per_image.mts" | auc --json > "$T/cat.json"
grep -q '"records": 538,' "$T/cat.json" && pass "concatenated streams with the same classes" || fail "concatenated" "$(head -8 "$T/cat.json")"
check_fails "concatenated streams of two tasks" 1 "stdin: byte 21727: this header says multilabel, but a header said multiclass" \
    sh -c "cat '$FIX/auc_multiclass.mts' '$FIX/auc_multilabel.mts' | auc"

auc -o "$T/report.json" --json "$FIX/auc_multiclass.mts"
same "-o writes the report to a file" "$T/report.json" "$T/multiclass.json"
[ -z "$(find "$T" -name '.report.json.*')" ] && pass "-o leaves no temporary behind" || fail "temporary left"
check_fails "-o into a missing directory" 1 "cannot create" auc -o /nonexistent/dir/r.json "$FIX/auc_multiclass.mts"

auc --roc "$T/roc.png" "$FIX/auc_multiclass.mts" > /dev/null
head -c 8 "$T/roc.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' && [ "$(vipsheader -f height "$T/roc.png")" -eq 560 ] \
    && pass "--roc out.png writes a PNG 560 pixels high" || fail "--roc png"
auc --roc "$T/roc.svg" "$FIX/auc_undefined_mc.mts" > /dev/null 2>&1
[ "$(grep -c '<polyline' "$T/roc.svg")" -eq 3 ] && grep -q '2 (undefined: no positives)' "$T/roc.svg" \
    && pass "--roc out.svg: a curve per defined class, the undefined one named in the legend" \
    || fail "--roc svg" "$(grep -c '<polyline' "$T/roc.svg") curves"

# ---- bad input ------------------------------------------------------------------------

offset() { awk -v run="$1" '$1 == run && $2 == "offset" { print $3 }' "$EXPECTED"; }
check_fails "a label out of range names the byte offset" 1 \
    "auc_bad_label_range.mts: byte $(offset bad_label_range): label 5 is out of range: the scores have 5 classes \(0 to 4\)" \
    auc "$FIX/auc_bad_label_range.mts"
check_fails "a record with another number of scores" 1 \
    "auc_bad_k_mismatch.mts: byte $(offset bad_k_mismatch): key 'probs' has 4 scores, but the records before have 5" \
    auc "$FIX/auc_bad_k_mismatch.mts"
check_fails "a NaN score" 1 "auc_bad_nan.mts: byte $(offset bad_nan): key 'probs': score 2 is NaN" \
    auc "$FIX/auc_bad_nan.mts"
check_fails "multi-label after multi-class records" 1 \
    "auc_bad_mixed.mts: byte $(offset bad_mixed): this record's label \(an array\) says multilabel, but an earlier record's label \(an integer\) said multiclass" \
    auc "$FIX/auc_bad_mixed.mts"
check_fails "a label that contradicts the header's task" 1 \
    "auc_bad_task.mts: byte $(offset bad_task): this record's label \(an integer\) says multiclass, but a header said multilabel" \
    auc "$FIX/auc_bad_task.mts"
check_fails "--per-case mean: a case with two labels" 1 \
    "auc_bad_case_labels.mts: byte $(offset bad_case_labels): case 'b0': the label differs" \
    auc --per-case mean "$FIX/auc_bad_case_labels.mts"
check "without --per-case the same stream is fine" auc "$FIX/auc_bad_case_labels.mts"
check_fails "--key names a tensor the records lack" 1 "byte [0-9]+: the record has no key 'logits'" \
    auc --key logits "$FIX/auc_multiclass.mts"
mts cat --take 0 "$FIX/auc_multiclass.mts" > "$T/empty.mts"
check_fails "a stream without records" 1 "no score records" auc "$T/empty.mts"
check_fails "a missing file" 1 "nope.mts: cannot open: No such file" auc "$T/nope.mts"
check_fails "--per-case takes none or mean" 2 "--per-case: 'max'" auc --per-case max "$FIX/auc_multiclass.mts"
check_fails "a bad number of resamples" 2 "--bootstrap: 'x' is not an integer" auc -b x "$FIX/auc_multiclass.mts"
check_fails "an unknown option" 2 "unknown option" auc --frobnicate

auc --help | grep -q '^usage: auc' && pass "--help" || fail "--help"
auc --version | grep -q 'medssl' && pass "--version" || fail "--version"
