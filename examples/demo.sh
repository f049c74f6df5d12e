#!/bin/sh
# make demo: the main job on built-in data: the three-step protocol
# (SimCLR, MICLe and PCRL pretraining, fine-tuning at 10% and 50% of the labels
# against a supervised baseline, evaluation in distribution and under shift)
# on a reduced Fashion-MNIST case dataset; prints the results table.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
exec make --no-print-directory -C "$top/examples/fmnist-mi" -j"$(nproc)" demo
