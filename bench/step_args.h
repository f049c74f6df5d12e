// step_args: the command line of the training-step benchmarks
// (simclr_step.c, pcrl_step.c), the same as their PyTorch peers':
//   [--depth 18] [--width 1] [--stem large|small] [--channels 3] [--size 224]
//   [--pairs N] [--warmup 2] [--steps 5] [--threads N] [--micro M]
// (--micro: simclr_step's micro-batches of M pairs, as ntxent-step's.)
#ifndef MEDSSL_BENCH_STEP_ARGS_H
#define MEDSSL_BENCH_STEP_ARGS_H

#include <stdlib.h>
#include <string.h>

#include "resnet.h"
#include "util.h"

typedef struct {
    int depth, channels, size, pairs, warmup, steps, threads, micro;
    double width;
    resnet_stem stem;
} step_args;

// Parses argv over the defaults in *a; dies (usage) on anything else.
static inline void step_args_parse(step_args *a, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            die_usage("%s: missing value", opt);
        const char *val = argv[++i];
        if (strcmp(opt, "--depth") == 0)
            a->depth = atoi(val);
        else if (strcmp(opt, "--width") == 0)
            a->width = atof(val);
        else if (strcmp(opt, "--stem") == 0 && strcmp(val, "large") == 0)
            a->stem = RESNET_STEM_LARGE;
        else if (strcmp(opt, "--stem") == 0 && strcmp(val, "small") == 0)
            a->stem = RESNET_STEM_SMALL;
        else if (strcmp(opt, "--channels") == 0)
            a->channels = atoi(val);
        else if (strcmp(opt, "--size") == 0)
            a->size = atoi(val);
        else if (strcmp(opt, "--pairs") == 0)
            a->pairs = atoi(val);
        else if (strcmp(opt, "--warmup") == 0)
            a->warmup = atoi(val);
        else if (strcmp(opt, "--steps") == 0)
            a->steps = atoi(val);
        else if (strcmp(opt, "--threads") == 0)
            a->threads = atoi(val);
        else if (strcmp(opt, "--micro") == 0)
            a->micro = atoi(val);
        else
            die_usage("unknown option or value: %s %s", opt, val);
    }
    if (a->pairs < 2 || a->size < 8 || a->steps < 1 || a->warmup < 0 || (a->channels != 1 && a->channels != 3) ||
        a->micro < 0 || (a->micro && a->pairs % a->micro))
        die_usage("need --pairs >= 2, --size >= 8, --steps >= 1, --warmup >= 0, --channels 1 or 3, --micro "
                  "dividing --pairs");
}

#endif
