#!/bin/sh
# report.sh RUN "FRACTIONS": the results of a protocol run as a markdown
# table on stdout, and the plots beside it: RUN/label-efficiency.png (top-1
# against label fraction, a line per method), RUN/pretraining-loss.png (the
# loss curves of the three pretraining runs) and RUN/roc-*.png (auc's ROC
# curves of every method at the smallest fraction, test split).
set -eu
run=$1
fractions=$2

# "value low high" of a statistic in an auc --json report ("- - -" if absent).
stat() {
    [ -f "$1" ] || { echo "- - -"; return; }
    sed -n "s/.*\"$2\": {\"value\": \([^,]*\), \"ci\": \[\([^,]*\), \([^]]*\)\].*/\1 \2 \3/p" "$1" | head -1
}
cell() { # json statistic -> "0.812 [0.79, 0.83]"
    stat "$1" "$2" | awk '$1 == "-" { print "–"; next }
        { printf "%.3f [%.3f, %.3f]", $1, $2, $3 }'
}

methods="baseline simclr micle pcrl pcrl-micle"
label() {
    case $1 in
        baseline) echo "supervised, random init" ;;
        simclr) echo "SimCLR (natural -> cases) + fine-tune" ;;
        micle) echo "MICLe (natural -> cases) + fine-tune" ;;
        pcrl) echo "PCRL (natural -> cases) + fine-tune" ;;
        pcrl-micle) echo "PCRL on MICLe pairs (natural -> cases) + fine-tune" ;;
        natural) echo "SimCLR on natural images only" ;;
    esac
}

for split in test test_shift; do
    for metric in top1_accuracy mean_auc; do
        name=$([ $metric = top1_accuracy ] && echo "top-1 accuracy" || echo "mean one-vs-rest AUC")
        echo "### $split: $name per case (95% bootstrap interval over cases)"
        echo
        printf '| method |'; for f in $fractions 1; do printf ' %s%% labels |' "$(awk -v f=$f 'BEGIN { print f * 100 }')"; done; echo
        printf '|---|'; for f in $fractions 1; do printf -- '---:|'; done; echo
        for m in $methods; do
            printf '| %s |' "$(label $m)"
            for f in $fractions 1; do printf ' %s |' "$(cell "$run/ft-$m-$f/$split.json" $metric)"; done; echo
        done
        for m in natural simclr micle pcrl pcrl-micle; do
            printf '| linear evaluation: %s |' "$(label $m | sed 's/ + fine-tune//')"
            for f in $fractions; do printf ' |'; done
            printf ' %s |\n' "$(cell "$run/lin-$m-1/$split.json" $metric)"
        done
        echo
    done
done

# What validation chose: the learning rate of each method, and the epoch of
# each run.
echo "### Chosen on the val split"
echo
printf 'Fine-tuning learning rate (base, x batch/256):'
for m in $methods; do [ -f "$run/lr-$m" ] && printf ' %s %s;' "$m" "$(cat "$run/lr-$m")"; done
echo
echo
echo "| sweep run (smallest fraction) | best val accuracy |"
echo "|---|---:|"
for d in "$run"/sweep-*; do
    [ -f "$d/finetune.tsv" ] || continue
    awk -v name="${d##*/}" 'NR > 1 && $6 > b { b = $6 } END { printf "| %s | %.3f |\n", name, b }' "$d/finetune.tsv"
done
echo
echo "| run | epochs | chosen epoch (val accuracy) |"
echo "|---|---:|---:|"
for d in "$run"/ft-* "$run"/lin-*; do
    [ -f "$d/finetune.tsv" ] || continue
    awk -v name="${d##*/}" 'NR > 1 { n = $1; if ($6 > best) { best = $6; at = $1 } }
        END { printf "| %s | %d | %d (%.3f) |\n", name, n, at, best }' "$d/finetune.tsv"
done
echo

# ---- plots: SVG drawn with awk, rasterised by libvips -------------------------------
svg_to_png() { vips copy "$1" "$2" 2>/dev/null && rm -f "$1"; }

{
    echo "$fractions 1" | tr ' ' '\n' | grep -v '^$' | sort -g | tr '\n' ' ' | sed 's/^/FRACTIONS /'; echo
    for m in $methods; do
        for split in test test_shift; do
            printf 'LINE %s %s' "$m" "$split"
            for f in $fractions 1; do printf ' %s:%s' "$f" "$(stat "$run/ft-$m-$f/$split.json" top1_accuracy | cut -d' ' -f1)"; done
            echo
        done
    done
} | awk '
    /^FRACTIONS/ { nf = NF - 1; for (i = 2; i <= NF; i++) xs[i - 1] = $i; next }
    /^LINE/ { n++; m[n] = $2; sp[n] = $3; pts[n] = ""
        for (i = 4; i <= NF; i++) { split($i, p, ":"); if (p[2] != "-" && p[2] != "") { pts[n] = pts[n] " " p[1] ":" p[2]; if (p[2] < lo || lo == "") lo = p[2] } } }
    END {
        W = 640; H = 420; L = 70; R = 200; T = 30; B = 60
        lo = int(lo * 20) / 20; hi = 1
        col["baseline"] = "#777777"; col["simclr"] = "#1f77b4"; col["micle"] = "#d62728"
        col["pcrl"] = "#2ca02c"; col["pcrl-micle"] = "#9467bd"
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"13\">\n", W, H
        printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
        printf "<text x=\"%d\" y=\"20\" font-size=\"15\">Label efficiency: top-1 accuracy per case</text>\n", L
        # axes: x is log(fraction)
        x0 = log(xs[1]); x1 = log(xs[nf])
        for (i = 1; i <= nf; i++) { x = L + (log(xs[i]) - x0) / (x1 - x0) * (W - L - R)
            printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, T, x, H - B
            # A label too close to the previous one (90% and 100%) goes a line lower.
            dy = (i > 1 && x - last_x < 40 && !lowered) ? 14 : 0; lowered = dy > 0; last_x = x
            printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g%%</text>\n", x, H - B + 18 + dy, xs[i] * 100 }
        for (v = lo; v <= hi + 1e-9; v += 0.05) { y = H - B - (v - lo) / (hi - lo) * (H - T - B)
            printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L, y, W - R, y
            printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", L - 6, y + 4, v }
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">labeled train cases (log scale)</text>\n", (L + W - R) / 2, H - 15
        for (k = 1; k <= n; k++) {
            np = split(pts[k], q, " "); path = ""
            for (j = 1; j <= np; j++) { split(q[j], p, ":")
                x = L + (log(p[1]) - x0) / (x1 - x0) * (W - L - R); y = H - B - (p[2] - lo) / (hi - lo) * (H - T - B)
                path = path (j == 1 ? "M" : " L") sprintf("%.1f %.1f", x, y)
                printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, col[m[k]] }
            printf "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", path, col[m[k]], sp[k] == "test_shift" ? " stroke-dasharray=\"6 4\"" : ""
            ly = T + 20 * k
            printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", W - R + 12, ly, W - R + 40, ly, col[m[k]], sp[k] == "test_shift" ? " stroke-dasharray=\"6 4\"" : ""
            printf "<text x=\"%d\" y=\"%d\">%s, %s</text>\n", W - R + 46, ly + 4, m[k], sp[k] }
        print "</svg>" }' > "$run/label-efficiency.svg"
svg_to_png "$run/label-efficiency.svg" "$run/label-efficiency.png"

# Pretraining loss: a moving average over 20 steps of every run's log.
for m in natural simclr micle; do
    [ -f "$run/$m.tsv" ] && awk -v m=$m 'NR > 1 { s += $3; q[NR] = $3; if (NR > 21) s -= q[NR - 20]
        if (NR > 20) print m, $1, s / 20 }' "$run/$m.tsv"
done | awk '
    { n++; run[n] = $1; st[n] = $2; v[n] = $3; if ($2 > xmax) xmax = $2
      if (v[n] > hi || hi == "") hi = v[n]; if (v[n] < lo || lo == "") lo = v[n] }
    END {
        W = 640; H = 400; L = 70; R = 150; T = 30; B = 50
        col["natural"] = "#2ca02c"; col["simclr"] = "#1f77b4"; col["micle"] = "#d62728"
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"13\">\n", W, H
        printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
        printf "<text x=\"%d\" y=\"20\" font-size=\"15\">NT-Xent loss (moving average of 20 steps)</text>\n", L
        for (i = 0; i <= 4; i++) { y = T + i * (H - T - B) / 4; val = hi - i * (hi - lo) / 4
            printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L, y, W - R, y
            printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", L - 6, y + 4, val }
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step (0 to %d)</text>\n", (L + W - R) / 2, H - 15, xmax
        for (k = 1; k <= n; k++) {
            x = L + st[k] / xmax * (W - L - R); y = T + (hi - v[k]) / (hi - lo + 1e-9) * (H - T - B)
            d[run[k]] = d[run[k]] (d[run[k]] == "" ? "M" : " L") sprintf("%.1f %.1f", x, y) }
        k = 0
        for (r in d) { k++
            printf "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", d[r], col[r]
            printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", W - R + 12, T + 20 * k, W - R + 40, T + 20 * k, col[r]
            printf "<text x=\"%d\" y=\"%d\">%s</text>\n", W - R + 46, T + 20 * k + 4, r }
        print "</svg>" }' > "$run/pretraining-loss.svg"
svg_to_png "$run/pretraining-loss.svg" "$run/pretraining-loss.png"

smallest=$(echo $fractions | tr ' ' '\n' | sort -g | head -1)
for m in $methods; do
    scores="$run/ft-$m-$smallest/test.scores.mts"
    [ -f "$scores" ] && auc --roc "$run/roc-$m-$smallest.png" "$scores" > /dev/null
done
echo "Plots: label-efficiency.png, pretraining-loss.png, roc-{$(echo $methods | tr ' ' ,)}-$smallest.png"
