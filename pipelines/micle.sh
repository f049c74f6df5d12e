#!/usr/bin/env bash
# micle.sh: MICLe pretraining (two distinct images of a case as the positive
# pair): simclr.sh with pair-sample --mode micle (see medssl-pipelines(7)).
SCRIPT_NAME=micle.sh MODE=micle exec "$(dirname "$0")/simclr.sh" "$@"
