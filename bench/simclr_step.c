// simclr_step: the time of one SimCLR training step through the library,
// as ntxent-step runs it: the 2N views of N pairs forward through the
// encoder and SimCLR v2's 2-layer projection head (training mode), NT-Xent
// (tau 0.1, both directions), backward to every parameter, one LARS update
// (momentum 0.9, eta 0.001, weight decay 1e-6; batch norms and biases left
// out of decay and trust ratio).  The peer is bench/simclr_step_torch.py.
//
//   build/bench/simclr_step [--depth 18] [--width 1] [--stem large|small]
//                           [--channels 3] [--size 224] [--pairs 16]
//                           [--warmup 2] [--steps 5] [--threads N]
//
// The input is uniform noise in [-1, 1), as the peer's torch.rand (the
// step's cost does not depend on the pixel values).  Prints one line per timed step, then a summary line
//   best_step_s S images_per_s R loss L
// where S is the fastest timed step (warm-up steps excluded: the first
// faults in the activation arena and BLIS's packing buffers) and
// R = 2N / S.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "step_args.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    step_args a = {.depth = 18, .channels = 3, .size = 224, .pairs = 16, .warmup = 2, .steps = 5,
                   .width = 1, .stem = RESNET_STEM_LARGE};
    step_args_parse(&a, argc, argv);
    const int channels = a.channels, size = a.size, pairs = a.pairs, warmup = a.warmup, steps = a.steps;
    blas_init(a.threads);

    model_config cfg = model_config_default();
    cfg.encoder = (resnet_config){.depth = a.depth, .width = a.width, .stem = a.stem, .in_ch = channels};
    cfg.head_layers = 2;
    model m;
    model_init(&m, &cfg, 1);
    optim_config oc = optim_defaults(OPTIM_LARS);
    oc.weight_decay = 1e-6;
    optimizer *o = optim_create(&m.params, &oc);
    // SimCLR's learning rate for this batch (0.3 x batch / 256); the value
    // does not change the step's cost.
    const double lr = 0.3 * pairs / 256;

    int rows = 2 * pairs;
    size_t nx = (size_t)rows * channels * size * size;
    float *x = xaligned_alloc(nx * sizeof(float));
    float *dz = xaligned_alloc((size_t)rows * cfg.proj_dim * sizeof(float));
    rng_t r = rng_make(1, 0, 0, 0);
    for (size_t i = 0; i < nx; i++)
        x[i] = 2 * rng_uniform(&r) - 1;
    char desc[200];
    model_describe(&cfg, desc, sizeof desc);
    printf("%s, %zu parameters; %s; %d pairs (%d images) of %dx%dx%d\n", desc, param_count(&m.params),
           blas_description(), pairs, rows, channels, size, size);

    double best = 0;
    float loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_seconds();
        param_zero_grad(&m.params);
        model_forward(&m, true, rows, size, size, x);
        loss = ntxent_loss(m.proj, rows, cfg.proj_dim, 0, rows, 0.1f, dz, NULL);
        model_backward(&m, dz, NULL);
        optim_step(o, lr);
        double t = now_seconds() - t0;
        printf("  step %d%s: %.3f s, loss %.4f\n", s + 1, s < warmup ? " (warm-up)" : "", t, loss);
        fflush(stdout);
        if (s >= warmup && (best == 0 || t < best))
            best = t;
    }
    printf("best_step_s %.4f images_per_s %.2f loss %.4f\n", best, rows / best, loss);
    free(x);
    free(dz);
    optim_free(o);
    model_free(&m);
    conv_workspace_release();
    return 0;
}
