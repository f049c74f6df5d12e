// Layer tests: every f32 layer against a naive double-precision reference
// written here, forward and backward.
//
// Forward: the f32 output must match the double reference to within
// FWD_TOL times the largest reference output (plus FWD_TOL relative).
//
// Backward: the objective is L = sum_i r_i y_i with fixed random r, so the
// gradient at the output is r.  The f32 backward's gradients (inputs,
// weights, gamma/beta, bias, residual) must match central differences of
// the double reference, L(v + h) - L(v - h) / 2h, to within GRAD_TOL times
// the largest gradient entry of that tensor (plus GRAD_TOL relative).  The
// references are exact in double and the differences are taken in double,
// so what is left is f32 rounding: at most 6e-7 of the largest entry in
// these cases, against tolerances of 1e-5.  A wrong stride, a lost term or
// a padding off by one gives errors of the order of a whole entry.
#include <cpuid.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "../fixture.h"
#include "act.h"
#include "blas.h"
#include "bn.h"
#include "conv.h"
#include "conv_direct.h"
#include "convk.h"
#include "cpu.h"
#include "linear.h"
#include "loss.h"
#include "pool.h"
#include "upsample.h"
#include "util.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-5

// ---- test data ----------------------------------------------------------

static uint64_t rng_state = 0x243f6a8885a308d3u;

static double uniform(double lo, double hi)
{
    // xorshift64*: plenty for test data.
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545f4914f6cdd1du;
    return lo + (hi - lo) * (double)(r >> 11) / 9007199254740992.0;
}

static float *random_f32(size_t n, double lo, double hi)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)uniform(lo, hi);
    return p;
}

static double *to_f64(const float *x, size_t n)
{
    double *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = x[i];
    return p;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

// f32 output against the double reference.
static void compare_forward(const char *what, const float *y, const double *ref, size_t n)
{
    double scale = max_abs(ref, n);
    for (size_t i = 0; i < n; i++) {
        double err = fabs(y[i] - ref[i]);
        EXPECT_MSG(err <= FWD_TOL * scale + FWD_TOL * fabs(ref[i]),
                   "%s forward [%zu]: %.9g, reference %.9g", what, i, y[i], ref[i]);
    }
}

// The objective L(inputs) as a function of the double inputs in ctx.
typedef double (*objective_fn)(void *ctx);

// Central differences of `objective` with respect to each element of var
// (at most max_checks of them, spread at random, when var is large),
// against the f32 analytic gradient.
static void check_gradient(const char *what, objective_fn objective, void *ctx, double *var,
                           size_t n, const float *analytic, double h, size_t max_checks)
{
    size_t checks = n < max_checks ? n : max_checks;
    size_t *index = xmalloc(checks * sizeof *index);
    double *fd = xmalloc(checks * sizeof *fd);
    for (size_t k = 0; k < checks; k++) {
        size_t i = checks == n ? k : (size_t)uniform(0, (double)n);
        double saved = var[i];
        var[i] = saved + h;
        double up = objective(ctx);
        var[i] = saved - h;
        double down = objective(ctx);
        var[i] = saved;
        index[k] = i;
        fd[k] = (up - down) / (2 * h);
    }
    double scale = max_abs(fd, checks);
    EXPECT_MSG(scale > 0, "%s: all finite differences are zero", what);
    for (size_t k = 0; k < checks; k++) {
        double err = fabs(analytic[index[k]] - fd[k]);
        EXPECT_MSG(err <= GRAD_TOL * scale + GRAD_TOL * fabs(fd[k]),
                   "%s gradient [%zu]: analytic %.9g, finite difference %.9g", what,
                   index[k], analytic[index[k]], fd[k]);
    }
    free(index);
    free(fd);
}

// ---- convolution --------------------------------------------------------

typedef struct {
    int n, ci, h, w, co, k, s, p, oh, ow;
    double *x, *wt, *r, *y;
} conv_case;

static void ref_conv(const conv_case *t, const double *x, const double *wt, double *y)
{
    for (int b = 0; b < t->n; b++)
        for (int o = 0; o < t->co; o++)
            for (int oy = 0; oy < t->oh; oy++)
                for (int ox = 0; ox < t->ow; ox++) {
                    double sum = 0;
                    for (int c = 0; c < t->ci; c++)
                        for (int ky = 0; ky < t->k; ky++)
                            for (int kx = 0; kx < t->k; kx++) {
                                int iy = oy * t->s - t->p + ky, ix = ox * t->s - t->p + kx;
                                if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
                                    continue;
                                sum += x[((b * t->ci + c) * t->h + iy) * t->w + ix] *
                                       wt[((o * t->ci + c) * t->k + ky) * t->k + kx];
                            }
                    y[((b * t->co + o) * t->oh + oy) * t->ow + ox] = sum;
                }
}

static double conv_objective(void *ctx)
{
    conv_case *t = ctx;
    ref_conv(t, t->x, t->wt, t->y);
    return dot(t->r, t->y, (size_t)t->n * t->co * t->oh * t->ow);
}

// Forward, then backward with dy = r; dx is checked both overwritten and
// accumulated onto existing values, and the weight gradient is added onto
// a non-zero one (layers accumulate into parameter gradients).
static void run_conv_case_once(const char *name, int n, int ci, int h, int w, int co, int k,
                               int s, int p)
{
    conv2d c;
    conv2d_init(&c, ci, co, k, s, p);
    conv_case t = {.n = n, .ci = ci, .h = h, .w = w, .co = co, .k = k, .s = s, .p = p};
    t.oh = conv2d_out_size(&c, h);
    t.ow = conv2d_out_size(&c, w);
    size_t nx = (size_t)n * ci * h * w, nw = (size_t)co * ci * k * k;
    size_t ny = (size_t)n * co * t.oh * t.ow;

    float *x = random_f32(nx, -1, 1);
    float *wt = random_f32(nw, -1, 1);
    float *r = random_f32(ny, -1, 1);
    memcpy(c.weight, wt, nw * sizeof(float));
    float *prior_grad = random_f32(nw, -1, 1);
    memcpy(c.weight_grad, prior_grad, nw * sizeof(float));
    t.x = to_f64(x, nx);
    t.wt = to_f64(wt, nw);
    t.r = to_f64(r, ny);
    t.y = xmalloc(ny * sizeof(double));

    float *y = xmalloc(ny * sizeof(float));
    conv2d_forward(&c, n, h, w, x, y);
    ref_conv(&t, t.x, t.wt, t.y);
    compare_forward(name, y, t.y, ny);

    float *dx = xmalloc(nx * sizeof(float));
    memset(dx, 0xff, nx * sizeof(float));  // NaN: must be overwritten
    conv2d_backward(&c, n, h, w, x, r, dx, false);
    for (size_t i = 0; i < nw; i++)
        c.weight_grad[i] -= prior_grad[i];

    char what[128];
    snprintf(what, sizeof what, "%s dx", name);
    check_gradient(what, conv_objective, &t, t.x, nx, dx, 1e-3, 400);
    snprintf(what, sizeof what, "%s dW", name);
    check_gradient(what, conv_objective, &t, t.wt, nw, c.weight_grad, 1e-3, 400);

    // Accumulating: dx2 = prior + dx, exactly as f32 addition gives it
    // (up to the order of the adds, hence a rounding-level tolerance).
    float *dx2 = random_f32(nx, -1, 1);
    float *prior_dx = xmalloc(nx * sizeof(float));
    memcpy(prior_dx, dx2, nx * sizeof(float));
    conv2d_backward(&c, n, h, w, x, r, dx2, true);
    for (size_t i = 0; i < nx; i++)
        EXPECT_MSG(fabsf(dx2[i] - (prior_dx[i] + dx[i])) <= 1e-5f * (1 + fabsf(dx[i])),
                   "%s accumulated dx [%zu]: %g, expected %g + %g", name, i, dx2[i],
                   prior_dx[i], dx[i]);

    conv2d_free(&c);
    free(x), free(wt), free(r), free(prior_grad), free(y), free(dx), free(dx2), free(prior_dx);
    free(t.x), free(t.wt), free(t.r), free(t.y);
}

// The kernel sets this CPU runs, widest first.
static int runnable_kernels(const convk **sets)
{
    int count = 0;
    static const char *const names[] = {"avx512", "avx2", "generic"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (convk_by_name(names[i]))
            sets[count++] = convk_by_name(names[i]);
    return count;
}

// The case on the im2col path, then on each direct path that runs the
// layer (padded rows: stride-1 convs that keep the size; channels last:
// every conv but 1x1 stride 1, strided ones with im2col's dx), with each
// kernel set this CPU runs.
static void run_conv_case(const char *name, int n, int ci, int h, int w, int co, int k, int s,
                          int p)
{
    char label[160];
    conv_set_path(CONV_PATH_IM2COL);
    snprintf(label, sizeof label, "%s (im2col)", name);
    run_conv_case_once(label, n, ci, h, w, co, k, s, p);
    conv2d probe = {.in_ch = ci, .out_ch = co, .kernel = k, .stride = s, .pad = p};
    const bool rows = conv_direct_supports(&probe), pointwise = k == 1 && s == 1 && p == 0;
    const convk *sets[3];
    for (int i = 0, count = pointwise ? 0 : runnable_kernels(sets); i < count; i++) {
        conv_direct_use_kernels(sets[i]);
        if (rows) {
            conv_set_path(CONV_PATH_ROWS);
            snprintf(label, sizeof label, "%s (rows, %s)", name, sets[i]->name);
            run_conv_case_once(label, n, ci, h, w, co, k, s, p);
        }
        conv_set_path(CONV_PATH_GATHER);
        snprintf(label, sizeof label, "%s (gather, %s)", name, sets[i]->name);
        run_conv_case_once(label, n, ci, h, w, co, k, s, p);
    }
    conv_direct_use_kernels(NULL);
    conv_set_path(CONV_PATH_AUTO);
}

TEST(conv_3x3_s1_p1) { run_conv_case("conv 3x3 s1 p1", 2, 3, 7, 5, 4, 3, 1, 1); }
TEST(conv_3x3_s2_p1) { run_conv_case("conv 3x3 s2 p1", 3, 2, 9, 6, 5, 3, 2, 1); }
TEST(conv_1x1_s1) { run_conv_case("conv 1x1 s1", 3, 5, 4, 6, 3, 1, 1, 0); }
TEST(conv_1x1_s2) { run_conv_case("conv 1x1 s2", 2, 4, 7, 8, 6, 1, 2, 0); }
TEST(conv_7x7_s2_p3) { run_conv_case("conv 7x7 s2 p3", 2, 3, 13, 11, 4, 7, 2, 3); }
TEST(conv_5x5_s3_p2_odd) { run_conv_case("conv 5x5 s3 p2", 2, 2, 10, 14, 3, 5, 3, 2); }
// How conv2d blocks the im2col columns (2 threads here).  Maps of 2000
// pixels: one image per block; the 1x1 conv multiplies the input directly,
// the 3x3 writes into the output directly.
TEST(conv_1x1_s1_direct) { run_conv_case("conv 1x1 s1 direct", 2, 3, 40, 50, 4, 1, 1, 0); }
TEST(conv_3x3_one_image_per_gemm) { run_conv_case("conv 3x3 per image", 2, 2, 40, 50, 3, 3, 1, 1); }
// 1000-pixel maps: 2 images per block.
TEST(conv_3x3_partial_fold) { run_conv_case("conv 3x3 partial fold", 4, 2, 25, 40, 3, 3, 1, 1); }
// 5 images of 100 pixels in 2 blocks of 2 and 3.
TEST(conv_3x3_uneven_groups) { run_conv_case("conv 3x3 uneven groups", 5, 2, 10, 10, 3, 3, 1, 1); }
// Maps over 4096 pixels are split into blocks, here in the middle of an
// output row (4899 pixels, 71 wide), with stride 1 and 2.
TEST(conv_3x3_split_map) { run_conv_case("conv 3x3 split map", 2, 2, 69, 71, 3, 3, 1, 1); }
TEST(conv_3x3_s2_split_map) { run_conv_case("conv 3x3 s2 split map", 2, 2, 137, 141, 3, 3, 2, 1); }
// A 1x1 conv with more outputs than inputs splits the weight gradient
// between the threads by output channel: on a split map, and on grouped
// small maps (no im2col, dx added through the grouped layout).
TEST(conv_1x1_split_map_more_outputs) { run_conv_case("conv 1x1 split map", 2, 3, 65, 65, 4, 1, 1, 0); }
TEST(conv_1x1_grouped_more_outputs) { run_conv_case("conv 1x1 grouped", 3, 2, 8, 8, 6, 1, 1, 0); }
// The direct path's edges: taps not a multiple of the weight gradient's 3
// (5x5 on one channel), a 7x7, channels just past a tile (9 outputs, 17
// inputs: 8-row tiles of AVX-512 and 4-row ones of AVX2), a 1x1 map
// (every tap but the centre in the padding), maps narrower than a tile.
TEST(conv_5x5_s1_p2_one_channel) { run_conv_case("conv 5x5 s1 p2", 2, 1, 9, 11, 6, 5, 1, 2); }
TEST(conv_7x7_s1_p3) { run_conv_case("conv 7x7 s1 p3", 1, 2, 12, 10, 3, 7, 1, 3); }
TEST(conv_3x3_tile_edges) { run_conv_case("conv 3x3 9 outputs 17 inputs", 2, 17, 6, 7, 9, 3, 1, 1); }
TEST(conv_3x3_one_pixel) { run_conv_case("conv 3x3 1x1 map", 3, 2, 1, 1, 3, 3, 1, 1); }
TEST(conv_3x3_one_row) { run_conv_case("conv 3x3 1x13 map", 2, 3, 1, 13, 2, 3, 1, 1); }

// ---- batch norm ---------------------------------------------------------

typedef struct {
    int n, c, hw;
    bool training, relu;
    double eps;
    double *x, *gamma, *beta, *residual, *rmean, *rvar, *r, *y;
} bn_case;

static void ref_bn(const bn_case *t, double *y)
{
    size_t stride = (size_t)t->c * t->hw;
    for (int c = 0; c < t->c; c++) {
        double mean = t->rmean[c], var = t->rvar[c];
        if (t->training) {
            double sum = 0, sq = 0, count = (double)t->n * t->hw;
            for (int b = 0; b < t->n; b++)
                for (int j = 0; j < t->hw; j++)
                    sum += t->x[b * stride + (size_t)c * t->hw + j];
            mean = sum / count;
            for (int b = 0; b < t->n; b++)
                for (int j = 0; j < t->hw; j++) {
                    double d = t->x[b * stride + (size_t)c * t->hw + j] - mean;
                    sq += d * d;
                }
            var = sq / count;
        }
        for (int b = 0; b < t->n; b++)
            for (int j = 0; j < t->hw; j++) {
                size_t i = b * stride + (size_t)c * t->hw + j;
                double v = t->gamma[c] * (t->x[i] - mean) / sqrt(var + t->eps) + t->beta[c];
                if (t->residual)
                    v += t->residual[i];
                y[i] = t->relu && v < 0 ? 0 : v;
            }
    }
}

static double bn_objective(void *ctx)
{
    bn_case *t = ctx;
    ref_bn(t, t->y);
    return dot(t->r, t->y, (size_t)t->n * t->c * t->hw);
}

static void run_bn_case(const char *name, int n, int c, int hw, bool training, bool residual,
                        bool relu)
{
    batchnorm bn;
    batchnorm_init(&bn, c);
    size_t nx = (size_t)n * c * hw;
    // An offset mean and a spread unlike 1, so that centring and scaling
    // both matter.
    float *x = random_f32(nx, 1, 4);
    float *res = residual ? random_f32(nx, -1, 1) : NULL;
    float *r = random_f32(nx, -1, 1);
    float *gamma = random_f32(c, 0.5, 1.5), *beta = random_f32(c, -0.5, 0.5);
    float *rmean = random_f32(c, 1, 3), *rvar = random_f32(c, 0.5, 2);
    memcpy(bn.weight, gamma, c * sizeof(float));
    memcpy(bn.bias, beta, c * sizeof(float));
    memcpy(bn.running_mean, rmean, c * sizeof(float));
    memcpy(bn.running_var, rvar, c * sizeof(float));

    bn_case t = {.n = n, .c = c, .hw = hw, .training = training, .relu = relu, .eps = bn.eps};
    t.x = to_f64(x, nx);
    t.gamma = to_f64(gamma, c);
    t.beta = to_f64(beta, c);
    t.residual = res ? to_f64(res, nx) : NULL;
    t.rmean = to_f64(rmean, c);
    t.rvar = to_f64(rvar, c);
    t.r = to_f64(r, nx);
    t.y = xmalloc(nx * sizeof(double));

    float *y = xmalloc(nx * sizeof(float));
    batchnorm_forward(&bn, training, n, hw, x, res, relu, y);
    ref_bn(&t, t.y);
    compare_forward(name, y, t.y, nx);

    if (training) {
        // Running statistics: momentum 0.1, unbiased variance.
        double count = (double)n * hw;
        for (int ch = 0; ch < c; ch++) {
            double sum = 0, sq = 0;
            for (int b = 0; b < n; b++)
                for (int j = 0; j < hw; j++)
                    sum += t.x[((size_t)b * c + ch) * hw + j];
            double mean = sum / count;
            for (int b = 0; b < n; b++)
                for (int j = 0; j < hw; j++) {
                    double d = t.x[((size_t)b * c + ch) * hw + j] - mean;
                    sq += d * d;
                }
            EXPECT_CLOSE(bn.running_mean[ch], 0.9 * rmean[ch] + 0.1 * mean, 1e-6, 1e-6);
            EXPECT_CLOSE(bn.running_var[ch], 0.9 * rvar[ch] + 0.1 * sq / (count - 1), 1e-6,
                         1e-6);
        }
        EXPECT(bn.num_batches_tracked == 1);
    } else {
        EXPECT(memcmp(bn.running_mean, rmean, c * sizeof(float)) == 0);
        EXPECT(memcmp(bn.running_var, rvar, c * sizeof(float)) == 0);
        EXPECT(bn.num_batches_tracked == 0);
    }

    float *dy = xmalloc(nx * sizeof(float)), *dx = xmalloc(nx * sizeof(float));
    memcpy(dy, r, nx * sizeof(float));
    batchnorm_backward(&bn, training, n, hw, x, relu ? y : NULL, relu, dy, dx);
    char what[128];
    snprintf(what, sizeof what, "%s dx", name);
    check_gradient(what, bn_objective, &t, t.x, nx, dx, 1e-4, 400);
    snprintf(what, sizeof what, "%s dgamma", name);
    check_gradient(what, bn_objective, &t, t.gamma, c, bn.weight_grad, 1e-4, 400);
    snprintf(what, sizeof what, "%s dbeta", name);
    check_gradient(what, bn_objective, &t, t.beta, c, bn.bias_grad, 1e-4, 400);
    if (residual) {
        // With relu, dy now holds the gradient at the residual.
        snprintf(what, sizeof what, "%s dresidual", name);
        check_gradient(what, bn_objective, &t, t.residual, nx, relu ? dy : r, 1e-4, 400);
    }

    // dx may be dy itself when the residual's gradient is not needed.
    if (!residual) {
        memset(bn.weight_grad, 0, c * sizeof(float));
        memset(bn.bias_grad, 0, c * sizeof(float));
        memcpy(dy, r, nx * sizeof(float));
        batchnorm_backward(&bn, training, n, hw, x, relu ? y : NULL, relu, dy, dy);
        EXPECT_MSG(memcmp(dy, dx, nx * sizeof(float)) == 0, "%s: in-place dx differs", name);
    }

    batchnorm_free(&bn);
    free(x), free(res), free(r), free(gamma), free(beta), free(rmean), free(rvar);
    free(y), free(dy), free(dx);
    free(t.x), free(t.gamma), free(t.beta), free(t.residual), free(t.rmean), free(t.rvar);
    free(t.r), free(t.y);
}

// hw = 30: three 8-wide blocks and a tail of 6 per plane.
TEST(bn2d_train) { run_bn_case("bn2d train", 3, 4, 30, true, false, false); }
TEST(bn2d_eval) { run_bn_case("bn2d eval", 3, 4, 30, false, false, false); }
TEST(bn2d_train_relu) { run_bn_case("bn2d train relu", 3, 4, 30, true, false, true); }
TEST(bn2d_train_add_relu) { run_bn_case("bn2d train add relu", 2, 5, 21, true, true, true); }
TEST(bn2d_eval_add_relu) { run_bn_case("bn2d eval add relu", 2, 5, 21, false, true, true); }
TEST(bn2d_train_add) { run_bn_case("bn2d train add", 2, 3, 16, true, true, false); }
TEST(bn1d_train) { run_bn_case("bn1d train", 6, 5, 1, true, false, false); }
TEST(bn1d_train_relu) { run_bn_case("bn1d train relu", 9, 7, 1, true, false, true); }
TEST(bn1d_eval) { run_bn_case("bn1d eval", 4, 5, 1, false, false, false); }

// Two training steps: the running statistics compound with momentum 0.1.
// The variance comes from one pass of shifted sums: a channel whose mean is
// 17000 standard deviations from 0, and whose first value (the shift) is 9
// deviations off the mean, keeps its mean, variance and output to float
// precision.
TEST(bn_large_mean_small_spread)
{
    const int n = 3, hw = 500;
    batchnorm bn;
    batchnorm_init(&bn, 1);
    float *x = random_f32((size_t)n * hw, -1, 1), *y = xmalloc((size_t)n * hw * sizeof(float));
    for (int i = 0; i < n * hw; i++)
        x[i] = 1000.0f + 0.1f * x[i];
    x[0] = 1000.5f;
    double mean = 0, var = 0;
    for (int i = 0; i < n * hw; i++)
        mean += x[i];
    mean /= n * hw;
    for (int i = 0; i < n * hw; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= n * hw;
    batchnorm_forward(&bn, true, n, hw, x, NULL, false, y);
    EXPECT_CLOSE(bn.batch_mean[0], mean, 6.2e-5, 0);  // an ulp of 1000 in f32
    EXPECT_CLOSE(1.0 / ((double)bn.batch_invstd[0] * bn.batch_invstd[0]), var + 1e-5, 0, 1e-5);
    for (int i = 0; i < n * hw; i++)
        EXPECT_CLOSE(y[i], (x[i] - mean) / sqrt(var + 1e-5), 2e-3, 0);
    batchnorm_free(&bn);
    free(x), free(y);
}

TEST(bn_running_stats_two_steps)
{
    batchnorm bn;
    batchnorm_init(&bn, 1);
    float a[4] = {1, 2, 3, 4}, b[4] = {-2, 0, 2, 8}, y[4];
    batchnorm_forward(&bn, true, 4, 1, a, NULL, false, y);
    batchnorm_forward(&bn, true, 2, 2, b, NULL, false, y);
    // Batch a: mean 2.5, unbiased variance 5/3.  Batch b: mean 2, 56/3.
    double m1 = 0.1 * 2.5, v1 = 0.9 + 0.1 * (5.0 / 3);
    EXPECT_CLOSE(bn.running_mean[0], 0.9 * m1 + 0.1 * 2.0, 1e-6, 1e-6);
    EXPECT_CLOSE(bn.running_var[0], 0.9 * v1 + 0.1 * (56.0 / 3), 1e-6, 1e-6);
    EXPECT(bn.num_batches_tracked == 2);
    batchnorm_free(&bn);
}

// ---- pooling ------------------------------------------------------------

typedef struct {
    int n, c, h, w, k, s, p, oh, ow;
    double *x, *r, *y;
} pool_case;

static void ref_maxpool(const pool_case *t, double *y)
{
    for (int plane = 0; plane < t->n * t->c; plane++)
        for (int oy = 0; oy < t->oh; oy++)
            for (int ox = 0; ox < t->ow; ox++) {
                double best = -INFINITY;
                for (int ky = 0; ky < t->k; ky++)
                    for (int kx = 0; kx < t->k; kx++) {
                        int iy = oy * t->s - t->p + ky, ix = ox * t->s - t->p + kx;
                        if (iy >= 0 && iy < t->h && ix >= 0 && ix < t->w)
                            best = fmax(best, t->x[((size_t)plane * t->h + iy) * t->w + ix]);
                    }
                y[((size_t)plane * t->oh + oy) * t->ow + ox] = best;
            }
}

static double maxpool_objective(void *ctx)
{
    pool_case *t = ctx;
    ref_maxpool(t, t->y);
    return dot(t->r, t->y, (size_t)t->n * t->c * t->oh * t->ow);
}

// All values negative, so a zero-padded window would be visibly wrong.
static void run_maxpool_case(const char *name, int n, int c, int h, int w, int k, int s, int p)
{
    pool_case t = {.n = n, .c = c, .h = h, .w = w, .k = k, .s = s, .p = p};
    t.oh = maxpool2d_out_size(h, k, s, p);
    t.ow = maxpool2d_out_size(w, k, s, p);
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * t.oh * t.ow;
    float *x = random_f32(nx, -3, -1), *r = random_f32(ny, -1, 1);
    t.x = to_f64(x, nx);
    t.r = to_f64(r, ny);
    t.y = xmalloc(ny * sizeof(double));
    float *y = xmalloc(ny * sizeof(float)), *dx = xmalloc(nx * sizeof(float));
    maxpool2d_forward(n, c, h, w, k, s, p, x, y);
    ref_maxpool(&t, t.y);
    compare_forward(name, y, t.y, ny);
    maxpool2d_backward(n, c, h, w, k, s, p, x, r, dx);
    char what[128];
    snprintf(what, sizeof what, "%s dx", name);
    // The function is piecewise linear; with random values no two in a
    // window are within h of each other, so the differences are exact.
    check_gradient(what, maxpool_objective, &t, t.x, nx, dx, 1e-6, 1000);
    free(x), free(r), free(y), free(dx), free(t.x), free(t.r), free(t.y);
}

TEST(maxpool_3x3_s2_p1) { run_maxpool_case("maxpool 3x3 s2 p1", 2, 3, 9, 8, 3, 2, 1); }
TEST(maxpool_2x2_s2) { run_maxpool_case("maxpool 2x2 s2", 2, 2, 6, 7, 2, 2, 0); }
TEST(maxpool_3x3_s1_p1) { run_maxpool_case("maxpool 3x3 s1 p1", 1, 2, 5, 6, 3, 1, 1); }

// Equal maxima: the first in row-major window order takes the gradient,
// every time.  A constant 4x4 plane, 3x3 windows, stride 2, padding 1:
// the windows start at (-1,-1), (-1,1), (1,-1), (1,1), so their first real
// pixels are (0,0), (0,1), (1,0), (1,1).
TEST(maxpool_ties)
{
    float x[16], y[4], dy[4] = {1, 2, 4, 8}, dx[16];
    for (int i = 0; i < 16; i++)
        x[i] = 0.5f;
    maxpool2d_forward(1, 1, 4, 4, 3, 2, 1, x, y);
    for (int i = 0; i < 4; i++)
        EXPECT(y[i] == 0.5f);
    maxpool2d_backward(1, 1, 4, 4, 3, 2, 1, x, dy, dx);
    float expect[16] = {1, 2, 0, 0, 4, 8};
    for (int i = 0; i < 16; i++)
        EXPECT_MSG(dx[i] == expect[i], "dx[%d] = %g, expected %g", i, dx[i], expect[i]);
    // A tie between a window's corner and its centre: the corner (first) wins.
    float z[9] = {7, 1, 1, 1, 7, 1, 1, 1, 1}, zy, zdy = 1, zdx[9];
    maxpool2d_forward(1, 1, 3, 3, 3, 1, 0, z, &zy);
    maxpool2d_backward(1, 1, 3, 3, 3, 1, 0, z, &zdy, zdx);
    EXPECT(zy == 7 && zdx[0] == 1 && zdx[4] == 0);
    // -0.0 and +0.0 tie; the first in row-major order gives the sign, as in
    // PyTorch (ReLU passes -0.0 through).  Column by column, +0.0 would win.
    float s[4] = {-1, -0.0f, +0.0f, -1}, sy, sdy = 1, sdx[4];
    maxpool2d_forward(1, 1, 2, 2, 2, 2, 0, s, &sy);
    maxpool2d_backward(1, 1, 2, 2, 2, 2, 0, s, &sdy, sdx);
    EXPECT_MSG(sy == 0 && signbit(sy), "max of {-1, -0, +0, -1} = %g, expected -0", sy);
    EXPECT(sdx[1] == 1 && sdx[2] == 0);
}

TEST(maxpool_nan_wins)
{
    float x[4] = {1, NAN, 3, 2}, y;
    maxpool2d_forward(1, 1, 2, 2, 2, 2, 0, x, &y);
    EXPECT(isnan(y));
    // Backward sends the gradient to the NaN, in a plane beside one without
    // NaN (the two take different paths).
    float x2[8] = {1, NAN, 3, 2, 1, 5, 3, 2}, y2[2], dy2[2] = {1, 1}, dx2[8];
    maxpool2d_forward(1, 2, 2, 2, 2, 2, 0, x2, y2);
    maxpool2d_backward(1, 2, 2, 2, 2, 2, 0, x2, dy2, dx2);
    EXPECT(isnan(y2[0]) && y2[1] == 5);
    float expect[8] = {0, 1, 0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 8; i++)
        EXPECT_MSG(dx2[i] == expect[i], "dx[%d] = %g, expected %g", i, dx2[i], expect[i]);
}

static double avgpool_objective(void *ctx)
{
    pool_case *t = ctx;
    int hw = t->h * t->w;
    double l = 0;
    for (int plane = 0; plane < t->n * t->c; plane++) {
        double sum = 0;
        for (int j = 0; j < hw; j++)
            sum += t->x[(size_t)plane * hw + j];
        t->y[plane] = sum / hw;
        l += t->r[plane] * t->y[plane];
    }
    return l;
}

TEST(avgpool_global)
{
    pool_case t = {.n = 3, .c = 4, .h = 5, .w = 7};
    int hw = t.h * t.w;
    size_t nx = (size_t)t.n * t.c * hw, ny = (size_t)t.n * t.c;
    float *x = random_f32(nx, -1, 2), *r = random_f32(ny, -1, 1);
    t.x = to_f64(x, nx);
    t.r = to_f64(r, ny);
    t.y = xmalloc(ny * sizeof(double));
    float y[12], *dx = xmalloc(nx * sizeof(float));
    avgpool_global_forward(t.n, t.c, hw, x, y);
    avgpool_objective(&t);
    compare_forward("avgpool", y, t.y, ny);
    avgpool_global_backward(t.n, t.c, hw, r, dx);
    check_gradient("avgpool dx", avgpool_objective, &t, t.x, nx, dx, 1e-3, 1000);
    free(x), free(r), free(dx), free(t.x), free(t.r), free(t.y);
}

// ---- linear and element-wise ---------------------------------------------

typedef struct {
    int n, in, out;
    double *x, *wt, *b, *r, *y;
} linear_case;

static double linear_objective(void *ctx)
{
    linear_case *t = ctx;
    for (int i = 0; i < t->n; i++)
        for (int o = 0; o < t->out; o++) {
            double s = t->b ? t->b[o] : 0;
            for (int j = 0; j < t->in; j++)
                s += t->x[i * t->in + j] * t->wt[o * t->in + j];
            t->y[i * t->out + o] = s;
        }
    return dot(t->r, t->y, (size_t)t->n * t->out);
}

static void run_linear_case(const char *name, int n, int in, int out, bool bias)
{
    linear l;
    linear_init(&l, in, out, bias);
    size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = random_f32(nx, -1, 1), *wt = random_f32(nw, -1, 1), *r = random_f32(ny, -1, 1);
    float *b = random_f32(out, -1, 1);
    memcpy(l.weight, wt, nw * sizeof(float));
    if (bias)
        memcpy(l.bias, b, out * sizeof(float));
    linear_case t = {.n = n, .in = in, .out = out};
    t.x = to_f64(x, nx);
    t.wt = to_f64(wt, nw);
    t.b = bias ? to_f64(b, out) : NULL;
    t.r = to_f64(r, ny);
    t.y = xmalloc(ny * sizeof(double));
    float *y = xmalloc(ny * sizeof(float)), *dx = xmalloc(nx * sizeof(float));
    linear_forward(&l, n, x, y);
    linear_objective(&t);
    compare_forward(name, y, t.y, ny);
    linear_backward(&l, n, x, r, dx);
    char what[128];
    snprintf(what, sizeof what, "%s dx", name);
    check_gradient(what, linear_objective, &t, t.x, nx, dx, 1e-3, 1000);
    snprintf(what, sizeof what, "%s dW", name);
    check_gradient(what, linear_objective, &t, t.wt, nw, l.weight_grad, 1e-3, 1000);
    if (bias) {
        snprintf(what, sizeof what, "%s db", name);
        check_gradient(what, linear_objective, &t, t.b, out, l.bias_grad, 1e-3, 1000);
    }
    linear_free(&l);
    free(x), free(wt), free(r), free(b), free(y), free(dx);
    free(t.x), free(t.wt), free(t.b), free(t.r), free(t.y);
}

TEST(linear_bias) { run_linear_case("linear with bias", 5, 7, 4, true); }
TEST(linear_no_bias) { run_linear_case("linear without bias", 6, 3, 9, false); }

TEST(relu_and_add)
{
    float x[5] = {-1, 0, 2, -0.5f, NAN}, y[5], dy[5] = {1, 2, 3, 4, 5}, dx[5];
    relu_forward(5, x, y);
    EXPECT(y[0] == 0 && y[1] == 0 && y[2] == 2 && y[3] == 0 && isnan(y[4]));
    relu_backward(5, y, dy, dx);
    EXPECT(dx[0] == 0 && dx[1] == 0 && dx[2] == 3 && dx[3] == 0 && dx[4] == 0);
    float a[3] = {1, 2, 3}, b[3] = {10, 20, 30};
    add_forward(3, a, b, a);
    EXPECT(a[0] == 11 && a[1] == 22 && a[2] == 33);
}

// ---- the decoder's layers without weights (act.h, upsample.h, MSE) --------
//
// One harness for all of them: up to two inputs, a double reference of the
// output, and the f32 backward's gradient of L = sum r y for each input.

typedef struct {
    int n, c, cb, h, w;     // cb: the second input's channels (concat)
    size_t in_n[2], out_n;  // element counts
    double *in[2], *r;
    void (*ref)(const void *t, double *y);
} op_case;

static void ref_upsample(const void *ctx, double *y)
{
    const op_case *t = ctx;
    for (int p = 0; p < t->n * t->c; p++)
        for (int i = 0; i < 2 * t->h; i++)
            for (int j = 0; j < 2 * t->w; j++)
                y[((size_t)p * 2 * t->h + i) * 2 * t->w + j] = t->in[0][((size_t)p * t->h + i / 2) * t->w + j / 2];
}

static void ref_concat(const void *ctx, double *y)
{
    const op_case *t = ctx;
    size_t hw = (size_t)t->h * t->w, sa = t->c * hw, sb = t->cb * hw;
    for (int i = 0; i < t->n; i++)
        for (size_t k = 0; k < sa + sb; k++)
            y[i * (sa + sb) + k] = k < sa ? t->in[0][i * sa + k] : t->in[1][i * sb + k - sa];
}

static void ref_sigmoid(const void *ctx, double *y)
{
    const op_case *t = ctx;
    for (size_t i = 0; i < t->out_n; i++)
        y[i] = 1 / (1 + exp(-t->in[0][i]));
}

static void ref_gate(const void *ctx, double *y)
{
    const op_case *t = ctx;
    size_t hw = (size_t)t->h * t->w;
    for (size_t i = 0; i < t->out_n; i++)
        y[i] = t->in[0][i] * t->in[1][i / hw];
}

static void ref_bias(const void *ctx, double *y)
{
    const op_case *t = ctx;
    size_t hw = (size_t)t->h * t->w;
    for (size_t i = 0; i < t->out_n; i++)
        y[i] = t->in[0][i] + t->in[1][(i / hw) % t->c];
}

static double op_objective(void *ctx)
{
    op_case *t = ctx;
    double *y = xmalloc(t->out_n * sizeof *y);
    t->ref(t, y);
    double l = dot(y, t->r, t->out_n);
    free(y);
    return l;
}

// Checks forward (y from the f32 layer) and, per input, the f32 gradient.
static void check_op(const char *what, op_case *t, const float *y, float *const grad[2])
{
    double *ref = xmalloc(t->out_n * sizeof *ref);
    t->ref(t, ref);
    compare_forward(what, y, ref, t->out_n);
    for (int k = 0; k < 2; k++)
        if (grad[k])
            check_gradient(what, op_objective, t, t->in[k], t->in_n[k], grad[k], 1e-4, 200);
    free(ref);
}

// The f32 copies of a case's inputs and of r.
static op_case op_make(int n, int c, int cb, int h, int w, size_t in0, size_t in1, size_t out, float **x0,
                       float **x1, float **r)
{
    op_case t = {.n = n, .c = c, .cb = cb, .h = h, .w = w, .in_n = {in0, in1}, .out_n = out};
    *x0 = random_f32(in0, -2, 2);
    *x1 = in1 ? random_f32(in1, -2, 2) : NULL;
    *r = random_f32(out, -1, 1);
    t.in[0] = to_f64(*x0, in0);
    t.in[1] = in1 ? to_f64(*x1, in1) : NULL;
    t.r = to_f64(*r, out);
    return t;
}

static void op_free(op_case *t, float *x0, float *x1, float *r)
{
    free(t->in[0]);
    free(t->in[1]);
    free(t->r);
    free(x0);
    free(x1);
    free(r);
}

TEST(upsample2x_nearest)
{
    int n = 2, c = 3, h = 5, w = 3;   // odd sizes: no even-size shortcut hides an index error
    size_t in = (size_t)n * c * h * w, out = 4 * in;
    float *x, *unused, *r;
    op_case t = op_make(n, c, 0, h, w, in, 0, out, &x, &unused, &r);
    t.ref = ref_upsample;
    float *y = xmalloc(out * sizeof *y), *dx = xmalloc(in * sizeof *dx);
    upsample2x_forward(n, c, h, w, x, y);
    upsample2x_backward(n, c, h, w, r, dx);
    check_op("upsample2x", &t, y, (float *[2]){dx, NULL});
    free(y);
    free(dx);
    op_free(&t, x, unused, r);
}

TEST(concat_channels)
{
    int n = 3, ca = 2, cb = 4, h = 3, w = 5;
    size_t hw = (size_t)h * w, na = (size_t)n * ca * hw, nb = (size_t)n * cb * hw;
    float *a, *b, *r;
    op_case t = op_make(n, ca, cb, h, w, na, nb, na + nb, &a, &b, &r);
    t.ref = ref_concat;
    float *y = xmalloc((na + nb) * sizeof *y), *da = xmalloc(na * sizeof *da), *db = xmalloc(nb * sizeof *db);
    concat_forward(n, ca, cb, hw, a, b, y);
    concat_backward(n, ca, cb, hw, r, da, db);
    check_op("concat", &t, y, (float *[2]){da, db});
    free(y);
    free(da);
    free(db);
    op_free(&t, a, b, r);
}

TEST(sigmoid)
{
    size_t count = 300;
    float *x, *unused, *r;
    op_case t = op_make(1, 1, 0, 1, 1, count, 0, count, &x, &unused, &r);
    t.ref = ref_sigmoid;
    float *y = xmalloc(count * sizeof *y), *dx = xmalloc(count * sizeof *dx);
    sigmoid_forward(count, x, y);
    sigmoid_backward(count, y, r, dx);
    check_op("sigmoid", &t, y, (float *[2]){dx, NULL});
    float big[2] = {-200, 200}, out[2];
    sigmoid_forward(2, big, out);
    EXPECT(out[0] == 0 && out[1] == 1);
    free(y);
    free(dx);
    op_free(&t, x, unused, r);
}

TEST(channel_gate)
{
    int n = 2, c = 5, h = 4, w = 3;
    size_t hw = (size_t)h * w, nx = (size_t)n * c * hw;
    float *x, *g, *r;
    op_case t = op_make(n, c, 0, h, w, nx, (size_t)n * c, nx, &x, &g, &r);
    t.ref = ref_gate;
    float *y = xmalloc(nx * sizeof *y), *dx = xmalloc(nx * sizeof *dx), *dg = xmalloc((size_t)n * c * sizeof *dg);
    gate_forward(n, c, hw, x, g, y);
    gate_backward(n, c, hw, x, g, r, dx, dg);
    check_op("gate", &t, y, (float *[2]){dx, dg});
    free(y);
    free(dx);
    free(dg);
    op_free(&t, x, g, r);
}

TEST(channel_bias)
{
    int n = 3, c = 4, h = 2, w = 5;
    size_t hw = (size_t)h * w, nx = (size_t)n * c * hw;
    float *x, *b, *r;
    op_case t = op_make(n, c, 0, h, w, nx, (size_t)c, nx, &x, &b, &r);
    t.ref = ref_bias;
    float *y = xmalloc(nx * sizeof *y), *db = xmalloc((size_t)c * sizeof *db);
    memcpy(y, x, nx * sizeof *y);
    bias_forward(n, c, hw, b, y);
    for (int k = 0; k < c; k++)
        db[k] = 0.5f;   // backward adds into the gradient
    bias_backward(n, c, hw, r, db);
    for (int k = 0; k < c; k++)
        db[k] -= 0.5f;
    check_op("bias", &t, y, (float *[2]){NULL, db});   // dx is dy itself
    free(y);
    free(db);
    op_free(&t, x, b, r);
}

// ---- one block of PCRL's decoder against PyTorch ---------------------------
//
// tests/fixtures/decoder.mts (tests/torch/make_decoder_fixtures.py): the gate
// MLP on the transformation code, the gated bottleneck upsampled and
// concatenated with a skip, conv + training-mode BN + ReLU, a conv with bias
// and a sigmoid, MSE against a target; every gradient from torch autograd in
// float64.  Composed here from lib/'s layers in f32.

// Loads `key` into dst (n floats) and checks the count.
static void load_into(const mts_reader *r, const mts_frame *f, const char *key, float *dst, size_t n)
{
    size_t count;
    float *v = fixture_f32(r, f, key, &count);
    EXPECT_MSG(count == n, "%s: %zu values, want %zu", key, count, n);
    memcpy(dst, v, (count < n ? count : n) * sizeof *dst);
    free(v);
}

static void check_grad_key(const mts_reader *r, const mts_frame *f, const char *what, const char *key,
                           const float *got, size_t n)
{
    char dkey[32];
    snprintf(dkey, sizeof dkey, "d_%s", key);
    fixture_expect_key(r, f, what, dkey, got, n);
}

TEST(decoder_block_torch_parity)
{
    mts_reader *r = mts_reader_open("tests/fixtures/decoder.mts", NULL);
    EXPECT_MSG(r, "cannot open tests/fixtures/decoder.mts (run from the top of the tree)");
    if (!r)
        return;
    mts_frame f;
    int cases = 0;
    while (mts_next_record(r, &f, NULL, NULL)) {
        char what[32];
        mts_req_str(r, &f, "case", what, sizeof what);
        int n = (int)mts_req_int(r, &f, "n"), c = (int)mts_req_int(r, &f, "c"), h = (int)mts_req_int(r, &f, "h"),
            w = (int)mts_req_int(r, &f, "w"), cs = (int)mts_req_int(r, &f, "skip_ch"),
            mid = (int)mts_req_int(r, &f, "mid"), co = (int)mts_req_int(r, &f, "out_ch"),
            hidden = (int)mts_req_int(r, &f, "hidden");
        int H = 2 * h, W = 2 * w;
        size_t hw = (size_t)h * w, HW = (size_t)H * W, nx = (size_t)n * c * hw, nu = (size_t)n * c * HW,
               ns = (size_t)n * cs * HW, ncat = nu + ns, nv = (size_t)n * mid * HW, no = (size_t)n * co * HW, count;
        float *x = fixture_f32(r, &f, "x", &count), *skip = fixture_f32(r, &f, "skip", &count),
              *code = fixture_f32(r, &f, "code", &count), *target = fixture_f32(r, &f, "target", &count);
        linear fc1, fc2;
        linear_init(&fc1, 6, hidden, true);
        linear_init(&fc2, hidden, c, true);
        conv2d conv, head;
        conv2d_init(&conv, c + cs, mid, 3, 1, 1);
        conv2d_init(&head, mid, co, 3, 1, 1);
        batchnorm bn;
        batchnorm_init(&bn, mid);
        float *head_b = xcalloc((size_t)co, sizeof *head_b), *d_head_b = xcalloc((size_t)co, sizeof *d_head_b);
        load_into(r, &f, "fc1_w", fc1.weight, (size_t)hidden * 6);
        load_into(r, &f, "fc1_b", fc1.bias, (size_t)hidden);
        load_into(r, &f, "fc2_w", fc2.weight, (size_t)c * hidden);
        load_into(r, &f, "fc2_b", fc2.bias, (size_t)c);
        load_into(r, &f, "conv_w", conv.weight, (size_t)mid * (c + cs) * 9);
        load_into(r, &f, "bn_w", bn.weight, (size_t)mid);
        load_into(r, &f, "bn_b", bn.bias, (size_t)mid);
        load_into(r, &f, "head_w", head.weight, (size_t)co * mid * 9);
        load_into(r, &f, "head_b", head_b, (size_t)co);

        // Forward.  a1, r1: (n, hidden); gate: (n, c); xg: (n, c, h, w);
        // u: (n, c, H, W); cat: (n, c + cs, H, W); v0, v: (n, mid, H, W);
        // out: (n, co, H, W).
        float *a1 = xmalloc((size_t)n * hidden * sizeof *a1), *r1 = xmalloc((size_t)n * hidden * sizeof *r1),
              *gate = xmalloc((size_t)n * c * sizeof *gate), *xg = xmalloc(nx * sizeof *xg),
              *u = xmalloc(nu * sizeof *u), *cat = xmalloc(ncat * sizeof *cat), *v0 = xmalloc(nv * sizeof *v0),
              *v = xmalloc(nv * sizeof *v), *out = xmalloc(no * sizeof *out), *dout = xmalloc(no * sizeof *dout);
        linear_forward(&fc1, n, code, a1);
        relu_forward((size_t)n * hidden, a1, r1);
        linear_forward(&fc2, n, r1, gate);
        sigmoid_forward((size_t)n * c, gate, gate);
        gate_forward(n, c, hw, x, gate, xg);
        upsample2x_forward(n, c, h, w, xg, u);
        concat_forward(n, c, cs, HW, u, skip, cat);
        conv2d_forward(&conv, n, H, W, cat, v0);
        batchnorm_forward(&bn, true, n, (int)HW, v0, NULL, true, v);
        conv2d_forward(&head, n, H, W, v, out);
        bias_forward(n, co, HW, head_b, out);
        sigmoid_forward(no, out, out);
        float loss = mse_loss(out, target, no, dout);
        EXPECT_CLOSE(loss, mts_req_f64(r, &f, "loss"), 0, 1e-5);
        fixture_expect_key(r, &f, what, "out", out, no);

        // Backward, in reverse.
        float *dv = xmalloc(nv * sizeof *dv), *dv0 = xmalloc(nv * sizeof *dv0), *dcat = xmalloc(ncat * sizeof *dcat),
              *du = xmalloc(nu * sizeof *du), *dskip = xmalloc(ns * sizeof *dskip), *dxg = xmalloc(nx * sizeof *dxg),
              *dx = xmalloc(nx * sizeof *dx), *dgate = xmalloc((size_t)n * c * sizeof *dgate),
              *dr1 = xmalloc((size_t)n * hidden * sizeof *dr1), *dcode = xmalloc((size_t)n * 6 * sizeof *dcode);
        sigmoid_backward(no, out, dout, dout);
        bias_backward(n, co, HW, dout, d_head_b);
        conv2d_backward(&head, n, H, W, v, dout, dv, false);
        batchnorm_backward(&bn, true, n, (int)HW, v0, v, true, dv, dv0);
        conv2d_backward(&conv, n, H, W, cat, dv0, dcat, false);
        concat_backward(n, c, cs, HW, dcat, du, dskip);
        upsample2x_backward(n, c, h, w, du, dxg);
        gate_backward(n, c, hw, x, gate, dxg, dx, dgate);
        sigmoid_backward((size_t)n * c, gate, dgate, dgate);
        linear_backward(&fc2, n, r1, dgate, dr1);
        relu_backward((size_t)n * hidden, r1, dr1, dr1);
        linear_backward(&fc1, n, code, dr1, dcode);

        check_grad_key(r, &f, what, "x", dx, nx);
        check_grad_key(r, &f, what, "skip", dskip, ns);
        check_grad_key(r, &f, what, "code", dcode, (size_t)n * 6);
        check_grad_key(r, &f, what, "fc1_w", fc1.weight_grad, (size_t)hidden * 6);
        check_grad_key(r, &f, what, "fc1_b", fc1.bias_grad, (size_t)hidden);
        check_grad_key(r, &f, what, "fc2_w", fc2.weight_grad, (size_t)c * hidden);
        check_grad_key(r, &f, what, "fc2_b", fc2.bias_grad, (size_t)c);
        check_grad_key(r, &f, what, "conv_w", conv.weight_grad, (size_t)mid * (c + cs) * 9);
        check_grad_key(r, &f, what, "bn_w", bn.weight_grad, (size_t)mid);
        check_grad_key(r, &f, what, "bn_b", bn.bias_grad, (size_t)mid);
        check_grad_key(r, &f, what, "head_w", head.weight_grad, (size_t)co * mid * 9);
        check_grad_key(r, &f, what, "head_b", d_head_b, (size_t)co);
        cases++;

        float *bufs[] = {x, skip, code, target, head_b, d_head_b, a1, r1, gate, xg, u, cat, v0, v, out, dout,
                         dv, dv0, dcat, du, dskip, dxg, dx, dgate, dr1, dcode};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            free(bufs[i]);
        linear_free(&fc1);
        linear_free(&fc2);
        conv2d_free(&conv);
        conv2d_free(&head);
        batchnorm_free(&bn);
    }
    EXPECT(cases == 2);
    mts_reader_close(r);
}

// ---- parameters ---------------------------------------------------------

TEST(param_registration)
{
    conv2d c;
    batchnorm bn;
    linear l;
    conv2d_init(&c, 3, 8, 3, 1, 1);
    batchnorm_init(&bn, 8);
    linear_init(&l, 8, 2, true);
    param_list params = {0};
    conv2d_register(&c, &params, "layer1.0.conv1");
    batchnorm_register(&bn, &params, "layer1.0.bn1");
    linear_register(&l, &params, "fc");
    EXPECT(params.count == 5);
    param_t *w = param_find(&params, "layer1.0.conv1.weight");
    EXPECT(w && w->rank == 4 && w->n == 216 && !w->no_decay && w->shape[1] == 3);
    param_t *g = param_find(&params, "layer1.0.bn1.weight");
    EXPECT(g && g->no_decay && g->n == 8 && g->w[0] == 1.0f);
    EXPECT(param_find(&params, "layer1.0.bn1.bias")->no_decay);
    EXPECT(!param_find(&params, "fc.weight")->no_decay);
    EXPECT(param_find(&params, "fc.bias")->no_decay);
    EXPECT(param_count(&params) == 216 + 16 + 18);
    param_list_free(&params);
    conv2d_free(&c);
    batchnorm_free(&bn);
    linear_free(&l);
}

// ---- determinism --------------------------------------------------------

// A small network's forward and backward; returns every output and
// gradient, concatenated.
static float *run_network(int threads, size_t *len)
{
    blas_set_threads(threads);
    rng_state = 12345;
    const int n = 4, ci = 8, h = 20, w = 20, co = 16, classes = 10;
    conv2d c1, c2;
    batchnorm b1, b2;
    linear fc;
    conv2d_init(&c1, ci, co, 3, 1, 1);
    conv2d_init(&c2, co, co, 1, 1, 0);
    batchnorm_init(&b1, co);
    batchnorm_init(&b2, co);
    linear_init(&fc, co, classes, true);
    float *w1 = random_f32((size_t)co * ci * 9, -0.3, 0.3), *w2 = random_f32(co * co, -0.3, 0.3);
    float *wf = random_f32(co * classes, -0.3, 0.3);
    memcpy(c1.weight, w1, (size_t)co * ci * 9 * sizeof(float));
    memcpy(c2.weight, w2, (size_t)co * co * sizeof(float));
    memcpy(fc.weight, wf, (size_t)co * classes * sizeof(float));

    const int ph = maxpool2d_out_size(h, 3, 2, 1), pw = maxpool2d_out_size(w, 3, 2, 1);
    size_t nx = (size_t)n * ci * h * w, na = (size_t)n * co * h * w, np = (size_t)n * co * ph * pw;
    float *x = random_f32(nx, -1, 1), *dlogits = random_f32((size_t)n * classes, -1, 1);
    float *a1 = xmalloc(na * 4), *z1 = xmalloc(na * 4), *p1 = xmalloc(np * 4);
    float *a2 = xmalloc(np * 4), *z2 = xmalloc(np * 4), *feat = xmalloc(n * co * 4);
    float *logits = xmalloc(n * classes * 4);
    float *dfeat = xmalloc(n * co * 4), *dz2 = xmalloc(np * 4), *da2 = xmalloc(np * 4);
    float *dp1 = xmalloc(np * 4), *dz1 = xmalloc(na * 4), *da1 = xmalloc(na * 4);
    float *dx = xmalloc(nx * 4);

    conv2d_forward(&c1, n, h, w, x, a1);
    batchnorm_forward(&b1, true, n, h * w, a1, NULL, true, z1);
    maxpool2d_forward(n, co, h, w, 3, 2, 1, z1, p1);
    conv2d_forward(&c2, n, ph, pw, p1, a2);
    batchnorm_forward(&b2, true, n, ph * pw, a2, p1, true, z2);
    avgpool_global_forward(n, co, ph * pw, z2, feat);
    linear_forward(&fc, n, feat, logits);

    linear_backward(&fc, n, feat, dlogits, dfeat);
    avgpool_global_backward(n, co, ph * pw, dfeat, dz2);
    batchnorm_backward(&b2, true, n, ph * pw, a2, z2, true, dz2, da2);
    memcpy(dp1, dz2, np * 4);  // the residual's gradient
    conv2d_backward(&c2, n, ph, pw, p1, da2, dp1, true);
    maxpool2d_backward(n, co, h, w, 3, 2, 1, z1, dp1, dz1);
    batchnorm_backward(&b1, true, n, h * w, a1, z1, true, dz1, da1);
    conv2d_backward(&c1, n, h, w, x, da1, dx, false);

    struct {
        const float *p;
        size_t n;
    } parts[] = {
        {logits, (size_t)n * classes}, {dx, nx}, {c1.weight_grad, (size_t)co * ci * 9},
        {c2.weight_grad, (size_t)co * co}, {b1.weight_grad, co}, {b1.bias_grad, co},
        {b2.weight_grad, co}, {b2.bias_grad, co}, {b1.running_var, co},
        {fc.weight_grad, (size_t)co * classes}, {fc.bias_grad, classes},
    };
    *len = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        *len += parts[i].n;
    float *all = xmalloc(*len * 4), *at = all;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        memcpy(at, parts[i].p, parts[i].n * 4);
        at += parts[i].n;
    }
    conv2d_free(&c1), conv2d_free(&c2), batchnorm_free(&b1), batchnorm_free(&b2);
    linear_free(&fc);
    free(w1), free(w2), free(wf), free(x), free(dlogits), free(a1), free(z1), free(p1);
    free(a2), free(z2), free(feat), free(logits), free(dfeat), free(dz2), free(da2);
    free(dp1), free(dz1), free(da1), free(dx);
    return all;
}

TEST(same_bytes_with_1_and_2_threads)
{
    size_t len1, len2;
    float *one = run_network(1, &len1);
    float *two = run_network(2, &len2);
    EXPECT(len1 == len2);
    EXPECT(memcmp(one, two, len1 * sizeof(float)) == 0);
    free(one);
    free(two);

    // A GEMM big enough that BLIS splits it between the threads.
    const int M = 300, N = 500, K = 700;
    float *A = random_f32((size_t)M * K, -1, 1), *B = random_f32((size_t)K * N, -1, 1);
    float *C1 = xmalloc((size_t)M * N * 4), *C2 = xmalloc((size_t)M * N * 4);
    blas_set_threads(1);
    gemm_f32(false, false, M, N, K, 1, A, K, B, N, 0, C1, N);
    blas_set_threads(2);
    gemm_f32(false, false, M, N, K, 1, A, K, B, N, 0, C2, N);
    EXPECT(memcmp(C1, C2, (size_t)M * N * 4) == 0);
    free(A), free(B), free(C1), free(C2);
}

// Forward and backward of one conv on `threads` threads; returns y, dx
// and dW concatenated.
static float *run_conv_threads(int threads, int n, int ci, int h, int w, int co, int k, int s,
                               int p, size_t *len)
{
    blas_set_threads(threads);
    rng_state = 777;
    conv2d c;
    conv2d_init(&c, ci, co, k, s, p);
    const int oh = conv2d_out_size(&c, h), ow = conv2d_out_size(&c, w);
    size_t nx = (size_t)n * ci * h * w, ny = (size_t)n * co * oh * ow, nw = (size_t)co * ci * k * k;
    float *wt = random_f32(nw, -1, 1), *x = random_f32(nx, -1, 1), *dy = random_f32(ny, -1, 1);
    memcpy(c.weight, wt, nw * sizeof(float));
    *len = ny + nx + nw;
    float *all = xmalloc(*len * sizeof(float));
    conv2d_forward(&c, n, h, w, x, all);
    conv2d_backward(&c, n, h, w, x, dy, all + ny, false);
    memcpy(all + ny + nx, c.weight_grad, nw * sizeof(float));
    conv2d_free(&c);
    free(wt), free(x), free(dy);
    return all;
}

// Every way conv2d splits its work: maps split into blocks, images grouped
// (evenly and not), 1x1 with the weight gradient split by rows or by
// outputs, a sum over many blocks (dW), on 1, 2, 3 and 7 threads (more
// threads than a 1x1 conv has input channels: some get no rows), the
// grouped dY copied per thread or once for all.
TEST(conv_same_bytes_with_1_2_3_7_threads)
{
    static const int shapes[][8] = {
        // n, ci, h, w, co, k, s, p
        {2, 2, 69, 71, 3, 3, 1, 1},  {2, 2, 137, 141, 3, 3, 2, 1}, {5, 3, 10, 10, 4, 3, 1, 1},
        {7, 4, 9, 9, 32, 1, 1, 0},   {3, 32, 9, 9, 4, 1, 1, 0},    {2, 3, 65, 65, 8, 1, 1, 0},
        {6, 16, 30, 30, 8, 3, 1, 1}, {4, 3, 40, 40, 5, 7, 2, 3},
        // On 7 threads, copies of this dY per thread would pass the
        // workspace budget: one shared copy instead.
        {64, 1, 8, 8, 2400, 1, 1, 0},
    };
    static const int thread_counts[] = {1, 2, 3, 7};
    enum { counts = sizeof thread_counts / sizeof thread_counts[0] };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *a = shapes[i];
        size_t len[counts];
        float *out[counts];
        for (int t = 0; t < counts; t++)
            out[t] = run_conv_threads(thread_counts[t], a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                                      a[7], &len[t]);
        for (int t = 1; t < counts; t++)
            EXPECT_MSG(len[t] == len[0] && memcmp(out[0], out[t], len[0] * sizeof(float)) == 0,
                       "conv n %d, %d -> %d, %dx%d, k %d s %d: %d threads differ from 1", a[0],
                       a[1], a[4], a[2], a[3], a[5], a[6], thread_counts[t]);
        for (int t = 0; t < counts; t++)
            free(out[t]);
    }
    blas_set_threads(2);
}

// One conv's forward, dx (accumulated onto `prior`) and dW, concatenated,
// on the path and kernel set given.
static float *conv_outputs(conv_path path, const convk *set, int n, int ci, int h, int w, int co,
                           int k, int pad, size_t *len)
{
    conv_set_path(path);
    conv_direct_use_kernels(set);
    rng_state = 4242;
    conv2d c;
    conv2d_init(&c, ci, co, k, 1, pad);
    size_t nx = (size_t)n * ci * h * w, ny = (size_t)n * co * h * w, nw = (size_t)co * ci * k * k;
    float *wt = random_f32(nw, -1, 1), *x = random_f32(nx, -1, 1), *dy = random_f32(ny, -1, 1);
    float *prior = random_f32(nx, -1, 1);
    memcpy(c.weight, wt, nw * sizeof(float));
    *len = ny + nx + nw;
    float *all = xmalloc(*len * sizeof(float));
    conv2d_forward(&c, n, h, w, x, all);
    memcpy(all + ny, prior, nx * sizeof(float));
    conv2d_backward(&c, n, h, w, x, dy, all + ny, true);
    memcpy(all + ny + nx, c.weight_grad, nw * sizeof(float));
    conv2d_free(&c);
    free(wt), free(x), free(dy), free(prior);
    conv_set_path(CONV_PATH_AUTO);
    conv_direct_use_kernels(NULL);
    return all;
}

// Shapes too big for finite differences, where the padded rows cut maps
// into several chunks (the last one shorter) and pad the weight gradient's
// images in several groups (the last one smaller), and where the channels-
// last path takes images in several groups: both direct paths, with every
// kernel set, agree with im2col + GEMM to rounding and give the same bytes
// on 1, 2 and 3 threads.
TEST(conv_direct_chunks_and_groups)
{
    static const int shapes[][6] = {
        // n, ci, h, w, co, k (pad k / 2)
        {5, 40, 61, 60, 36, 3},   // rows: 5 chunks of 13 rows (the last 9), dW groups of 2, 2, 1
        {37, 8, 4, 4, 12, 3},     // small maps, many images
        {40, 64, 8, 8, 20, 3},    // gather: 4 groups of 10 images
        {3, 6, 33, 31, 5, 5},
    };
    static const struct {
        conv_path path;
        const char *name;
    } paths[] = {{CONV_PATH_ROWS, "rows"}, {CONV_PATH_GATHER, "gather"}};
    const convk *sets[3];
    const int count = runnable_kernels(sets);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *a = shapes[i];
        size_t len, len2;
        float *ref = conv_outputs(CONV_PATH_IM2COL, NULL, a[0], a[1], a[2], a[3], a[4], a[5], a[5] / 2, &len);
        for (size_t p = 0; p < sizeof paths / sizeof *paths; p++)
            for (int k = 0; k < count; k++) {
                blas_set_threads(2);
                float *got = conv_outputs(paths[p].path, sets[k], a[0], a[1], a[2], a[3], a[4], a[5],
                                          a[5] / 2, &len2);
                double worst = 0;
                for (size_t e = 0; e < len; e++) {
                    double err = fabs((double)got[e] - ref[e]) / (1 + fabs(ref[e]));
                    worst = err > worst ? err : worst;
                }
                // dW sums up to 18300 products, in another order than the
                // GEMM's (and without FMA in the generic set): rounding
                // only.  A wrong tap or a lost row is off by far more.
                EXPECT_MSG(len2 == len && worst < 5e-4, "%s (%s) against im2col, shape %zu: relative error %g",
                           paths[p].name, sets[k]->name, i, worst);
                for (int threads = 1; threads <= 3; threads += 2) {
                    blas_set_threads(threads);
                    float *again = conv_outputs(paths[p].path, sets[k], a[0], a[1], a[2], a[3], a[4],
                                                a[5], a[5] / 2, &len2);
                    EXPECT_MSG(memcmp(again, got, len * sizeof(float)) == 0,
                               "%s (%s), shape %zu: %d threads differ from 2", paths[p].name,
                               sets[k]->name, i, threads);
                    free(again);
                }
                free(got);
            }
        free(ref);
    }
    blas_set_threads(2);
}

// MEDSSL_CONV_KERNELS, in a child (the choice is made once per process):
// returns the exit status, and what it printed in out.
static int child_conv_kernels(const char *value, char *out, size_t size)
{
    int fd[2];
    if (pipe(fd) != 0)
        die("test", "pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("test", "fork failed");
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        setenv("MEDSSL_CONV_KERNELS", value, 1);
        conv_direct_use_kernels(NULL);
        printf("%s\n", convk_selected()->name);
        fflush(stdout);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < size && (r = read(fd[0], out + got, size - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// The CPU's family (CPUID leaf 1, with the extended family).
static unsigned cpu_family(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    unsigned family = (a >> 8) & 0xf;
    return family == 0xf ? family + ((a >> 20) & 0xff) : family;
}

TEST(conv_kernels_chosen_by_name)
{
    char out[512];
    EXPECT(child_conv_kernels("generic", out, sizeof out) == 0 && strcmp(out, "generic\n") == 0);
    EXPECT(child_conv_kernels("auto", out, sizeof out) == 0);
    // The widest set, but avx2 on AMD family 19h (Zen 4's AVX-512 is two
    // 256-bit halves).
    bool zen4 = __builtin_cpu_is("amd") && cpu_family() == 0x19;
    const char *widest = __builtin_cpu_supports("avx512f") && !zen4 ? "avx512\n"
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "avx2\n"
                                                                                           : "generic\n";
    EXPECT_MSG(strcmp(out, widest) == 0, "auto chose %s", out);
    EXPECT(cpu_avx512_halved() == zen4);
    EXPECT(child_conv_kernels("sse9", out, sizeof out) == 1);
    EXPECT_MSG(strstr(out, "MEDSSL_CONV_KERNELS=sse9: no such kernel set (kernel sets: auto avx512 avx2 generic)"),
               "got: %s", out);
    if (!__builtin_cpu_supports("avx512f")) {
        EXPECT(child_conv_kernels("avx512", out, sizeof out) == 1);
        EXPECT_MSG(strstr(out, "this CPU cannot run that set"), "got: %s", out);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    blas_init(0);
    RUN(conv_3x3_s1_p1);
    RUN(conv_3x3_s2_p1);
    RUN(conv_1x1_s1);
    RUN(conv_1x1_s2);
    RUN(conv_7x7_s2_p3);
    RUN(conv_5x5_s3_p2_odd);
    RUN(conv_1x1_s1_direct);
    RUN(conv_3x3_one_image_per_gemm);
    RUN(conv_3x3_partial_fold);
    RUN(conv_3x3_uneven_groups);
    RUN(conv_3x3_split_map);
    RUN(conv_3x3_s2_split_map);
    RUN(conv_1x1_split_map_more_outputs);
    RUN(conv_1x1_grouped_more_outputs);
    RUN(conv_5x5_s1_p2_one_channel);
    RUN(conv_7x7_s1_p3);
    RUN(conv_3x3_tile_edges);
    RUN(conv_3x3_one_pixel);
    RUN(conv_3x3_one_row);
    RUN(conv_direct_chunks_and_groups);
    RUN(conv_kernels_chosen_by_name);
    RUN(conv_same_bytes_with_1_2_3_7_threads);
    RUN(bn2d_train);
    RUN(bn2d_eval);
    RUN(bn2d_train_relu);
    RUN(bn2d_train_add_relu);
    RUN(bn2d_eval_add_relu);
    RUN(bn2d_train_add);
    RUN(bn1d_train);
    RUN(bn1d_train_relu);
    RUN(bn1d_eval);
    RUN(bn_running_stats_two_steps);
    RUN(bn_large_mean_small_spread);
    RUN(maxpool_3x3_s2_p1);
    RUN(maxpool_2x2_s2);
    RUN(maxpool_3x3_s1_p1);
    RUN(maxpool_ties);
    RUN(maxpool_nan_wins);
    RUN(avgpool_global);
    RUN(linear_bias);
    RUN(linear_no_bias);
    RUN(relu_and_add);
    RUN(upsample2x_nearest);
    RUN(concat_channels);
    RUN(sigmoid);
    RUN(channel_gate);
    RUN(channel_bias);
    RUN(decoder_block_torch_parity);
    RUN(param_registration);
    RUN(same_bytes_with_1_and_2_threads);
    conv_workspace_release();
    return CHECK_DONE();
}
