// simclr_step: the time of one SimCLR training step through the library,
// as ntxent-step runs it: the 2N views of N pairs forward through the
// encoder and SimCLR v2's 2-layer projection head (training mode), NT-Xent
// (tau 0.1, both directions), backward to every parameter, one LARS update
// (momentum 0.9, eta 0.001, weight decay 1e-6; batch norms and biases left
// out of decay and trust ratio).  The peer is bench/simclr_step_torch.py.
//
//   build/bench/simclr_step [--depth 18] [--width 1] [--stem large|small]
//                           [--channels 3] [--size 224] [--pairs 16]
//                           [--warmup 2] [--steps 5] [--threads N] [--micro M]
//
// --micro M: the sums over the batch per micro-batch of M pairs, added
// exactly (dist.h), as ntxent-step always takes them.  Under mpirun -np K
// (with --micro) each rank runs pairs/K of the pairs as ntxent-step does
// (the projections gathered, the whole loss on every rank, the gradient of
// its own rows), and rank 0 also prints, per timed step, the seconds of
// each exchange: the gather of the projections, the batch norms' sums, the
// weight gradients' sums, the rest (flags), and the fixed-point conversions.
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
#include "dist.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "step_args.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    dist_init(&argc, &argv);
    step_args a = {.depth = 18, .channels = 3, .size = 224, .pairs = 16, .warmup = 2, .steps = 5,
                   .width = 1, .stem = RESNET_STEM_LARGE};
    step_args_parse(&a, argc, argv);
    const int channels = a.channels, size = a.size, pairs = a.pairs, warmup = a.warmup, steps = a.steps;
    const int K = dist_size(), rank = dist_rank();
    if (K > 1 && (!a.micro || pairs % K || (pairs / K) % a.micro))
        die_usage("under mpirun -np %d: give --micro M with --pairs a multiple of %d x M", K, K);
    const int local = pairs / K;   // this rank's pairs
    blas_init(a.threads);

    model_config cfg = model_config_default();
    cfg.encoder = (resnet_config){.depth = a.depth, .width = a.width, .stem = a.stem, .in_ch = channels};
    cfg.head_layers = 2;
    model m;
    model_init(&m, &cfg, 1);
    if (a.micro)
        model_set_micro(&m, 2 * a.micro);
    optim_config oc = optim_defaults(OPTIM_LARS);
    oc.weight_decay = 1e-6;
    optimizer *o = optim_create(&m.params, &oc);
    // SimCLR's learning rate for this batch (0.3 x batch / 256); the value
    // does not change the step's cost.
    const double lr = 0.3 * pairs / 256;

    const int rows = 2 * pairs, local_rows = 2 * local;
    size_t nx = (size_t)local_rows * channels * size * size;
    float *x = xaligned_alloc(nx * sizeof(float));
    float *z = xaligned_alloc((size_t)rows * cfg.proj_dim * sizeof(float));
    float *dz = xaligned_alloc((size_t)rows * cfg.proj_dim * sizeof(float));
    rng_t r = rng_make(1, (uint64_t)rank, 0, 0);
    for (size_t i = 0; i < nx; i++)
        x[i] = 2 * rng_uniform(&r) - 1;
    char desc[200];
    model_describe(&cfg, desc, sizeof desc);
    if (rank == 0)
        printf("%s, %zu parameters; %s; %d pairs (%d images) of %dx%dx%d; %s%s\n", desc, param_count(&m.params),
               blas_description(), pairs, rows, channels, size, size, dist_description(),
               a.micro ? ", micro-batches" : "");

    double best = 0;
    float loss = 0;
    const size_t zrows = (size_t)local_rows * cfg.proj_dim;
    for (int s = 0; s < warmup + steps; s++) {
        double mpi0, conv0, mpi1, conv1;
        dist_times(&mpi0, &conv0);
        dist_mpi_split x0 = dist_mpi_times();
        double t0 = now_seconds();
        param_zero_grad(&m.params);
        model_forward(&m, true, local_rows, size, size, x);
        dist_allgather(m.proj, zrows * sizeof(float), z);
        loss = ntxent_loss(z, rows, cfg.proj_dim, 0, rows, 0.1f, dz, NULL);
        model_backward(&m, dz + (size_t)rank * zrows, NULL);
        optim_step(o, lr);
        double t = now_seconds() - t0;
        // The slowest rank's step is the step.
        int us = (int)(t * 1e6);
        dist_max_int(&us, 1);
        t = us * 1e-6;
        dist_times(&mpi1, &conv1);
        dist_mpi_split x1 = dist_mpi_times();
        if (rank == 0) {
            printf("  step %d%s: %.3f s, loss %.4f", s + 1, s < warmup ? " (warm-up)" : "", t, loss);
            if (dist_active())
                printf("; exchanges %.4f s: gather %.4f, batch-norm sums %.4f, gradient sums %.4f, flags %.4f; "
                       "conversions %.4f s; %lld calls, %lld bytes", mpi1 - mpi0, x1.gather - x0.gather,
                       x1.sum_f64 - x0.sum_f64, x1.sum_f32 - x0.sum_f32, x1.other - x0.other, conv1 - conv0,
                       x1.calls - x0.calls, x1.bytes - x0.bytes);
            printf("\n");
            fflush(stdout);
        }
        if (s >= warmup && (best == 0 || t < best))
            best = t;
    }
    if (rank == 0)
        printf("best_step_s %.4f images_per_s %.2f loss %.4f\n", best, rows / best, loss);
    free(x);
    free(z);
    free(dz);
    optim_free(o);
    model_free(&m);
    conv_workspace_release();
    dist_finalize();
    return 0;
}
