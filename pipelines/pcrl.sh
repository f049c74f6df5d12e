#!/usr/bin/env bash
# pcrl.sh: PCRL pretraining (contrast + reconstruction by a decoder):
# simclr.sh with augment --targets and pcrl-step as the trainer; --pairs
# micle gives PCRL on MICLe pairs (see medssl-pipelines(7)).
SCRIPT_NAME=pcrl.sh TRAINER=pcrl-step exec "$(dirname "$0")/simclr.sh" "$@"
