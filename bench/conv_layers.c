// conv_layers: GFLOP/s of every distinct convolution shape of a model's
// training step, forward, backward-data and backward-weights, on each
// conv2d path (im2col + GEMM, direct) that runs the shape, against the
// SGEMM rate of a square GEMM on the same threads.
//
//   build/bench/conv_layers [--model c|r50|r18] [--threads N] [--batch N]
//
// Models: c = ResNet-18 small stem x0.5 on 1x32x32 (batch 256 views, the
// 128 pairs of step (c) of make bench); r50 = ResNet-50 on 3x224x224
// (batch 16: the 8 pairs of step (b)); r18 = ResNet-18 on 3x64x64 (batch
// 128: step (d)).  Backward-data is the time of the whole backward minus
// that of the weight gradient alone.  Each time is the best of 9 calls
// after one warm-up call.  FLOPs: 2 n out_ch in_ch k^2 oh ow per pass.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "conv.h"
#include "util.h"

typedef struct {
    int ci, co, k, s, p, h;   // input channels, outputs, kernel, stride, pad, input size
    int count;                // how many convs of the model have this shape
} shape;

static const shape model_c[] = {
    {1, 32, 3, 1, 1, 32, 1},     {32, 32, 3, 1, 1, 32, 4},   {32, 64, 3, 2, 1, 32, 1},
    {32, 64, 1, 2, 0, 32, 1},    {64, 64, 3, 1, 1, 16, 3},   {64, 128, 3, 2, 1, 16, 1},
    {64, 128, 1, 2, 0, 16, 1},   {128, 128, 3, 1, 1, 8, 3},  {128, 256, 3, 2, 1, 8, 1},
    {128, 256, 1, 2, 0, 8, 1},   {256, 256, 3, 1, 1, 4, 3},  {0, 0, 0, 0, 0, 0, 0},
};
static const shape model_r18[] = {
    {3, 64, 7, 2, 3, 64, 1},     {64, 64, 3, 1, 1, 16, 4},   {64, 128, 3, 2, 1, 16, 1},
    {64, 128, 1, 2, 0, 16, 1},   {128, 128, 3, 1, 1, 8, 3},  {128, 256, 3, 2, 1, 8, 1},
    {128, 256, 1, 2, 0, 8, 1},   {256, 256, 3, 1, 1, 4, 3},  {256, 512, 3, 2, 1, 4, 1},
    {256, 512, 1, 2, 0, 4, 1},   {512, 512, 3, 1, 1, 2, 3},  {0, 0, 0, 0, 0, 0, 0},
};
static const shape model_r50[] = {
    {3, 64, 7, 2, 3, 224, 1},     {64, 64, 1, 1, 0, 56, 1},     {64, 64, 3, 1, 1, 56, 3},
    {64, 256, 1, 1, 0, 56, 4},    {256, 64, 1, 1, 0, 56, 2},    {256, 128, 1, 1, 0, 56, 1},
    {128, 128, 3, 2, 1, 56, 1},   {256, 512, 1, 2, 0, 56, 1},   {128, 512, 1, 1, 0, 28, 4},
    {512, 128, 1, 1, 0, 28, 3},   {128, 128, 3, 1, 1, 28, 3},   {512, 256, 1, 1, 0, 28, 1},
    {256, 256, 3, 2, 1, 28, 1},   {512, 1024, 1, 2, 0, 28, 1},  {256, 1024, 1, 1, 0, 14, 6},
    {1024, 256, 1, 1, 0, 14, 5},  {256, 256, 3, 1, 1, 14, 5},   {1024, 512, 1, 1, 0, 14, 1},
    {512, 512, 3, 2, 1, 14, 1},   {1024, 2048, 1, 2, 0, 14, 1}, {512, 2048, 1, 1, 0, 7, 3},
    {2048, 512, 1, 1, 0, 7, 2},   {512, 512, 3, 1, 1, 7, 2},    {0, 0, 0, 0, 0, 0, 0},
};

static double best_of(int reps, void (*run)(void *), void *ctx)
{
    run(ctx);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        run(ctx);
        double t = now_seconds() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

typedef struct {
    conv2d c;
    int n, h;
    float *x, *y, *dy, *dx;
} job;

static void run_forward(void *p)
{
    job *j = p;
    conv2d_forward(&j->c, j->n, j->h, j->h, j->x, j->y);
}
static void run_weights(void *p)
{
    job *j = p;
    conv2d_backward(&j->c, j->n, j->h, j->h, j->x, j->dy, NULL, false);
}
static void run_backward(void *p)
{
    job *j = p;
    conv2d_backward(&j->c, j->n, j->h, j->h, j->x, j->dy, j->dx, false);
}

static float *filled(size_t n, unsigned seed)
{
    float *v = xaligned_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(((i + seed) * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return v;
}

// Seconds of forward, backward-data and backward-weights of one shape on
// the current path.
static void time_shape(const shape *s, int n, double t[3])
{
    job j = {.n = n, .h = s->h};
    conv2d_init(&j.c, s->ci, s->co, s->k, s->s, s->p);
    const int oh = conv2d_out_size(&j.c, s->h);
    const size_t nx = (size_t)n * s->ci * s->h * s->h, ny = (size_t)n * s->co * oh * oh;
    free(j.c.weight);
    j.c.weight = filled((size_t)s->co * s->ci * s->k * s->k, 3);
    j.x = filled(nx, 1);
    j.dy = filled(ny, 2);
    j.y = xaligned_alloc(ny * sizeof(float));
    j.dx = xaligned_alloc(nx * sizeof(float));
    t[0] = best_of(9, run_forward, &j);
    t[2] = best_of(9, run_weights, &j);
    t[1] = best_of(9, run_backward, &j) - t[2];
    conv2d_free(&j.c);
    free(j.x), free(j.y), free(j.dy), free(j.dx);
}

static double sgemm_rate(void)
{
    const int m = 1024;
    float *a = filled((size_t)m * m, 1), *b = filled((size_t)m * m, 2), *c = filled((size_t)m * m, 3);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = now_seconds();
        gemm_f32(false, false, m, m, m, 1, a, m, b, m, 0, c, m);
        double t = now_seconds() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * m * m * m / best / 1e9;
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    const char *model = "c";
    int threads = 0, batch = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0)
            model = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[i + 1]);
        else
            die_usage("unknown option '%s'", argv[i]);
    }
    if (argc % 2 == 0)
        die_usage("options take a value: [--model c|r50|r18] [--threads N] [--batch N]");
    const shape *shapes = strcmp(model, "c") == 0     ? model_c
                          : strcmp(model, "r50") == 0 ? model_r50
                          : strcmp(model, "r18") == 0 ? model_r18
                                                      : NULL;
    if (!shapes)
        die_usage("--model: c, r50 or r18");
    if (batch <= 0)
        batch = shapes == model_c ? 256 : shapes == model_r50 ? 16 : 128;
    blas_init(threads);
    printf("%s; direct kernels %s; SGEMM 1024^3: %.0f GFLOP/s\n", blas_description(),
           conv_kernels_name(), sgemm_rate());
    printf("model %s, batch %d; GFLOP/s forward / backward-data / backward-weights\n", model, batch);
    printf("%-28s %6s %-8s %8s %8s %8s %9s\n", "shape", "count", "path", "fwd", "bwd-data",
           "bwd-w", "ms/step");
    double total[2] = {0, 0};   // ms per step of the auto path, and of the best path per shape
    for (const shape *s = shapes; s->ci; s++) {
        const int oh = (s->h + 2 * s->p - s->k) / s->s + 1;
        const double flop = 2.0 * batch * s->co * s->ci * s->k * s->k * oh * oh;
        char name[64];
        snprintf(name, sizeof name, "%dx%d k%d s%d %d->%d", s->h, s->h, s->k, s->s, s->ci, s->co);
        double best_ms = 1e30;
        static const struct {
            conv_path path;
            const char *name;
        } paths[] = {{CONV_PATH_IM2COL, "im2col"}, {CONV_PATH_ROWS, "rows"}, {CONV_PATH_GATHER, "gather"},
                     {CONV_PATH_AUTO, "auto"}};
        for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
            const bool direct_runs = s->s == 1 && s->k > 1 && s->k == 2 * s->p + 1;
            const bool pointwise = s->k == 1 && s->s == 1 && s->p == 0;
            if ((paths[p].path == CONV_PATH_ROWS && !direct_runs) ||
                (paths[p].path != CONV_PATH_IM2COL && pointwise))
                continue;
            conv_set_path(paths[p].path);
            double t[3];
            time_shape(s, batch, t);
            const double ms = (t[0] + t[1] + t[2]) * 1e3 * s->count;
            printf("%-28s %6d %-8s %8.1f %8.1f %8.1f %9.1f\n", name, s->count, paths[p].name,
                   flop / t[0] / 1e9, flop / t[1] / 1e9, flop / t[2] / 1e9, ms);
            if (paths[p].path != CONV_PATH_AUTO && ms < best_ms)
                best_ms = ms;
            if (paths[p].path == CONV_PATH_AUTO || pointwise)
                total[0] += ms;
        }
        total[1] += best_ms;
    }
    conv_set_path(CONV_PATH_AUTO);
    printf("convolutions per step: %.0f ms as the auto rule runs them, %.0f ms with the faster path of each shape\n",
           total[0], total[1]);
    return 0;
}
