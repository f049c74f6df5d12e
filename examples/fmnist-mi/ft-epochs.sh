#!/bin/sh
# ft-epochs.sh PACK FRACTION BUDGET: fine-tuning epochs that show about
# BUDGET images at this label fraction (at least 3), so that runs at every
# fraction take about the same time.
set -eu
images=$(pair-sample -q --mode single --label-fraction "$2" "$1" | mts show -n 0 | grep -o ' images=[0-9]*' | cut -d= -f2)
awk -v b="$3" -v n="$images" 'BEGIN { e = int(b / n + 0.5); print (e < 3 ? 3 : e) }'
