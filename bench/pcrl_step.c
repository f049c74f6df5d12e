// pcrl_step: the time of one PCRL training step through the library, as
// pcrl-step runs it (lib/training/pcrl.h): the student (encoder + 2-layer head of
// width 128) on the N views a, the momentum teacher on the N views b,
// InfoNCE against a queue of 16384 keys (tau 0.2), the decoder's three
// reconstructions (ordinary, momentum, hybrid) with their MSEs, backward
// through decoder and student, one SGD update (momentum 0.9, weight decay
// 1e-4), the teacher's EMA and the queue's update.  The peer is
// bench/pcrl_step_torch.py.
//
//   build/bench/pcrl_step [--depth 18] [--width 1] [--stem large|small]
//                         [--channels 3] [--size 224] [--pairs 8]
//                         [--warmup 2] [--steps 5] [--threads N]
//
// Input: views uniform in [-1, 1), targets uniform in [0, 1), codes of
// alternating flips and turns (the cost does not depend on the values).
// Prints one line per step, then "best_step_s S images_per_s R loss L"
// with R = 2N / S (both views of each pair are encoded).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "optim.h"
#include "pcrl.h"
#include "rng.h"
#include "step_args.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    step_args a = {.depth = 18, .channels = 3, .size = 224, .pairs = 8, .warmup = 2, .steps = 5,
                   .width = 1, .stem = RESNET_STEM_LARGE};
    step_args_parse(&a, argc, argv);
    const int channels = a.channels, size = a.size, pairs = a.pairs, warmup = a.warmup, steps = a.steps;
    blas_init(a.threads);

    model_config cfg = model_config_default();
    cfg.encoder = (resnet_config){.depth = a.depth, .width = a.width, .stem = a.stem, .in_ch = channels};
    cfg.head_layers = 2;
    cfg.head_hidden = 128;
    pcrl_config pc = pcrl_defaults();
    pcrl p;
    pcrl_init(&p, &cfg, &pc, 1);
    char err[200];
    if (!unet_size_ok(&p.decoder, size, size, err, sizeof err))
        die_usage("%s", err);
    optim_config oc = optim_defaults(OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 1e-4;
    optimizer *o = optim_create(&p.params, &oc);
    const double lr = 0.03 * pairs / 256;

    size_t plane = (size_t)channels * size * size, nx = 2 * (size_t)pairs * plane;
    float *x = xaligned_alloc(nx * sizeof(float)), *targets = xaligned_alloc(nx * sizeof(float));
    float *codes = xcalloc(2 * (size_t)pairs * 6, sizeof(float));
    rng_t r = rng_make(1, 0, 0, 0);
    for (size_t i = 0; i < nx; i++) {
        x[i] = 2 * rng_uniform(&r) - 1;
        targets[i] = rng_uniform(&r);
    }
    for (int v = 0; v < 2 * pairs; v++) {
        codes[v * 6 + 0] = (float)(v % 2);
        codes[v * 6 + 1] = (float)(v / 2 % 2);
        codes[v * 6 + 2 + v % 4] = 1;
    }
    char desc[200];
    model_describe(&cfg, desc, sizeof desc);
    printf("%s + decoder, %zu parameters; %s; %d pairs of %dx%dx%d, queue %d\n", desc, param_count(&p.params),
           blas_description(), pairs, channels, size, size, pc.queue);

    double best = 0;
    pcrl_losses l = {0};
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        pcrl_step(&p, pairs, size, size, x, targets, codes, &l);
        optim_step(o, lr);
        pcrl_update_teacher(&p);
        double t = now_seconds() - t0;
        printf("  step %d%s: %.3f s, loss %.4f\n", s + 1, s < warmup ? " (warm-up)" : "", t, l.loss);
        fflush(stdout);
        if (s >= warmup && (best == 0 || t < best))
            best = t;
    }
    printf("best_step_s %.4f images_per_s %.2f loss %.4f\n", best, 2 * pairs / best, l.loss);
    free(x);
    free(targets);
    free(codes);
    optim_free(o);
    pcrl_free(&p);
    conv_workspace_release();
    return 0;
}
