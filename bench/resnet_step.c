// resnet_step: the time of one ResNet training step (forward in training
// mode, backward to every parameter gradient), without loss or optimiser.
//
//   build/bench/resnet_step [--depth 50] [--width 1] [--batch 8] [--size 224]
//                           [--steps 5] [--threads N]
//
// Prints the kernel set, the activation memory, then per step the forward
// and backward times; the summary is the fastest step after the first
// (which also faults in the activation memory).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "resnet.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    int depth = 50, batch = 8, size = 224, steps = 5, threads = 0;
    double width = 1;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            die_usage("%s: missing value", opt);
        const char *val = argv[++i];
        if (strcmp(opt, "--depth") == 0)
            depth = atoi(val);
        else if (strcmp(opt, "--width") == 0)
            width = atof(val);
        else if (strcmp(opt, "--batch") == 0)
            batch = atoi(val);
        else if (strcmp(opt, "--size") == 0)
            size = atoi(val);
        else if (strcmp(opt, "--steps") == 0)
            steps = atoi(val);
        else if (strcmp(opt, "--threads") == 0)
            threads = atoi(val);
        else
            die_usage("unknown option '%s'", opt);
    }
    if (batch < 2 || size < 32 || steps < 2)
        die_usage("need --batch >= 2, --size >= 32, --steps >= 2");
    blas_init(threads);

    resnet m;
    resnet_config cfg = {.depth = depth, .width = width, .stem = RESNET_STEM_LARGE, .in_ch = 3};
    resnet_init(&m, &cfg, 1);
    size_t nx = (size_t)batch * 3 * size * size, nf = (size_t)batch * m.feature_dim;
    float *x = xaligned_alloc(nx * sizeof(float));
    float *features = xaligned_alloc(nf * sizeof(float));
    float *dfeatures = xaligned_alloc(nf * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < nf; i++)
        dfeatures[i] = (float)(i % 7) * 1e-3f;
    printf("%s\n", blas_description());
    printf("resnet%d x%g, batch %d, %dx%d: %zu parameters, %.0f MB activations\n", depth,
           width, batch, size, size, param_count(&m.params),
           resnet_memory_bytes(&m, batch, size, size) / 1e6);

    double best = 0, best_fwd = 0, best_bwd = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        resnet_forward(&m, true, batch, size, size, x, features);
        double t1 = now_seconds();
        param_zero_grad(&m.params);
        resnet_backward(&m, dfeatures);
        double t2 = now_seconds();
        printf("  step %d: forward %.3f s, backward %.3f s\n", s + 1, t1 - t0, t2 - t1);
        fflush(stdout);
        if (s > 0 && (best == 0 || t2 - t0 < best))
            best = t2 - t0, best_fwd = t1 - t0, best_bwd = t2 - t1;
    }
    printf("fastest step: forward %.3f s, backward %.3f s, %.1f images/s\n", best_fwd, best_bwd,
           batch / best);
    free(x);
    free(features);
    free(dfeatures);
    resnet_free(&m);
    conv_workspace_release();
    return 0;
}
