// dist: the exact sums (one process: the same code as every rank of K runs
// on its partials), global batch norm and a model's micro-batched gradients
// against the plain ones.  K ranks against one process: tests/tools/mpi.sh.
#include <math.h>
#include <string.h>

#include "../check.h"
#include "blas.h"
#include "bn.h"
#include "dist.h"
#include "model.h"
#include "rng.h"
#include "util.h"

enum { PARTS = 16, VALUES = 40 };

// Partials (PARTS, VALUES) whose magnitudes span 2^-40 to 2^78 between
// columns and 2^40 within each, signs mixed: a sum where the order matters
// in floating point.
static void fill_parts(double *parts)
{
    rng_t r = rng_make(11, 0, 0, 0);
    for (int p = 0; p < PARTS; p++)
        for (int i = 0; i < VALUES; i++)
            parts[p * VALUES + i] = ldexp(rng_normal(&r), 2 * i - 40 + (int)rng_below(&r, 40));
}

TEST(exact_sum_does_not_depend_on_the_order)
{
    double parts[PARTS * VALUES], shuffled[PARTS * VALUES], a[VALUES], b[VALUES];
    fill_parts(parts);
    // The partials in reverse order, as another split over ranks would
    // deliver them.
    for (int p = 0; p < PARTS; p++)
        memcpy(shuffled + p * VALUES, parts + (PARTS - 1 - p) * VALUES, VALUES * sizeof(double));
    dist_sum_f64(parts, PARTS, VALUES, 1, a);
    dist_sum_f64(shuffled, PARTS, VALUES, 1, b);
    EXPECT(memcmp(a, b, sizeof a) == 0);
    // A floating-point sum in the two orders differs somewhere (else this
    // test would show nothing).
    int differ = 0;
    for (int i = 0; i < VALUES; i++) {
        double f = 0, g = 0;
        for (int p = 0; p < PARTS; p++) {
            f += parts[p * VALUES + i];
            g += shuffled[p * VALUES + i];
        }
        differ += f != g;
    }
    EXPECT(differ > 0);
}

TEST(exact_sum_keeps_54_bits_of_each_group)
{
    double parts[PARTS * VALUES], sum[VALUES];
    fill_parts(parts);
    dist_sum_f64(parts, PARTS, VALUES, 1, sum);
    // Group 1: each value on its own grid, 62 - 4 bits below its largest
    // partial; long double's 64 bits give the reference.
    for (int i = 0; i < VALUES; i++) {
        long double ref = 0;
        double big = 0;
        for (int p = 0; p < PARTS; p++) {
            ref += parts[p * VALUES + i];
            big = fmax(big, fabs(parts[p * VALUES + i]));
        }
        EXPECT_MSG(fabsl(sum[i] - ref) <= ldexp(big, -52), "value %d: %.17g against %.17Lg", i, sum[i], ref);
    }
    // One grid for the whole vector (group VALUES): the small values keep
    // only what the largest leaves them, but the largest stays exact to 2^-52.
    double one_grid[VALUES];
    dist_sum_f64(parts, PARTS, VALUES, VALUES, one_grid);
    EXPECT_CLOSE(one_grid[VALUES - 1], sum[VALUES - 1], 0, 1e-15);
    EXPECT(one_grid[0] != sum[0]);
}

TEST(exact_sum_of_floats_adds_into_its_output)
{
    float parts[PARTS * VALUES], out[VALUES];
    double wide[PARTS * VALUES], ref[VALUES];
    rng_t r = rng_make(5, 0, 0, 0);
    for (int k = 0; k < PARTS * VALUES; k++)
        wide[k] = parts[k] = rng_normal(&r);
    for (int i = 0; i < VALUES; i++)
        out[i] = 1;
    dist_sum_f32_add(parts, PARTS, VALUES, out);
    dist_sum_f64(wide, PARTS, VALUES, VALUES, ref);
    for (int i = 0; i < VALUES; i++)
        EXPECT(out[i] == (float)(1 + (float)ref[i]));
}

TEST(exact_sum_of_zeros_nan_and_infinity)
{
    double parts[2 * 3] = {0, 1, 2, 0, NAN, INFINITY}, sum[3];
    dist_sum_f64(parts, 2, 3, 1, sum);
    EXPECT(sum[0] == 0 && !signbit(sum[0]));
    EXPECT(isnan(sum[1]) && isnan(sum[2]));
}

// A batch norm over micro-batches (one process: the global batch is the
// local one) against the plain one: the same statistics, output and
// gradients to rounding, and a mean far from the shift (the running mean,
// 0 at first) still fine.
TEST(global_batch_norm_matches_the_local_one)
{
    enum { n = 8, c = 3, hw = 30, micro = 2 };
    const size_t nx = (size_t)n * c * hw;
    batchnorm a, b;
    batchnorm_init(&a, c);
    batchnorm_init(&b, c);
    b.micro = micro;
    rng_t r = rng_make(9, 0, 0, 0);
    float *x = xmalloc(nx * sizeof(float)), *ya = xmalloc(nx * sizeof(float)), *yb = xmalloc(nx * sizeof(float));
    float *da = xmalloc(nx * sizeof(float)), *db = xmalloc(nx * sizeof(float));
    float *ga = xmalloc(nx * sizeof(float)), *gb = xmalloc(nx * sizeof(float));
    for (size_t i = 0; i < nx; i++) {
        x[i] = 300 + 2 * rng_normal(&r);
        da[i] = db[i] = rng_normal(&r);
    }
    for (int ch = 0; ch < c; ch++)
        a.weight[ch] = b.weight[ch] = 0.5f + (float)ch;
    batchnorm_forward(&a, true, n, hw, x, NULL, true, ya);
    batchnorm_forward(&b, true, n, hw, x, NULL, true, yb);
    for (int ch = 0; ch < c; ch++) {
        EXPECT_CLOSE(b.batch_mean[ch], a.batch_mean[ch], 0, 1e-7);
        EXPECT_CLOSE(b.batch_invstd[ch], a.batch_invstd[ch], 0, 1e-5);
        EXPECT_CLOSE(b.running_mean[ch], a.running_mean[ch], 0, 1e-7);
        EXPECT_CLOSE(b.running_var[ch], a.running_var[ch], 0, 1e-5);
    }
    double worst = 0;
    for (size_t i = 0; i < nx; i++)
        worst = fmax(worst, fabs(ya[i] - yb[i]));
    EXPECT_MSG(worst < 1e-4, "outputs differ by %g", worst);
    batchnorm_backward(&a, true, n, hw, x, ya, true, da, ga);
    batchnorm_backward(&b, true, n, hw, x, yb, true, db, gb);
    worst = 0;
    double scale = 0;
    for (size_t i = 0; i < nx; i++) {
        worst = fmax(worst, fabs(ga[i] - gb[i]));
        scale = fmax(scale, fabs(ga[i]));
    }
    EXPECT_MSG(worst < 1e-4 * scale, "dx differs by %g of %g", worst, scale);
    for (int ch = 0; ch < c; ch++) {
        EXPECT_CLOSE(b.bias_grad[ch], a.bias_grad[ch], 1e-5, 1e-5);
        EXPECT_CLOSE(b.weight_grad[ch], a.weight_grad[ch], 1e-4, 1e-4);
    }
    batchnorm_free(&a);
    batchnorm_free(&b);
    free(x), free(ya), free(yb), free(da), free(db), free(ga), free(gb);
}

// A model's gradients over micro-batches of 2 images (the encoder's convs,
// the head's linear layers, the classifier with its bias) against the plain
// ones: rounding apart, the same sums.
TEST(micro_batched_gradients_match_the_plain_ones)
{
    enum { N = 8, H = 8, W = 8 };
    model_config cfg = model_config_default();
    cfg.encoder = (resnet_config){.depth = 18, .width = 0.125, .stem = RESNET_STEM_SMALL, .in_ch = 1};
    cfg.head_layers = 2;
    cfg.head_hidden = 16;
    cfg.proj_dim = 8;
    cfg.classes = 3;
    model a, b;
    model_init(&a, &cfg, 4);
    model_init(&b, &cfg, 4);
    model_set_micro(&b, 2);
    rng_t r = rng_make(2, 0, 0, 0);
    float x[N * H * W], dproj[N * 8], dlogits[N * 3];
    for (int i = 0; i < N * H * W; i++)
        x[i] = rng_normal(&r);
    for (int i = 0; i < N * 8; i++)
        dproj[i] = rng_normal(&r);
    for (int i = 0; i < N * 3; i++)
        dlogits[i] = rng_normal(&r);
    model *ms[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        param_zero_grad(&ms[k]->params);
        model_forward(ms[k], true, N, H, W, x);
        model_backward(ms[k], dproj, dlogits);
    }
    int checked = 0;
    for (int p = 0; p < a.params.count; p++) {
        const param_t *pa = &a.params.items[p], *pb = &b.params.items[p];
        double big = 0, worst = 0;
        for (size_t i = 0; i < pa->n; i++) {
            big = fmax(big, fabs(pa->g[i]));
            worst = fmax(worst, fabs(pa->g[i] - pb->g[i]));
        }
        EXPECT_MSG(worst <= 1e-3 * big, "%s: gradients differ by %g of %g", pa->name, worst, big);
        checked += big > 0;
    }
    EXPECT(checked == a.params.count);
    model_free(&a);
    model_free(&b);
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    blas_init(0);
    RUN(exact_sum_does_not_depend_on_the_order);
    RUN(exact_sum_keeps_54_bits_of_each_group);
    RUN(exact_sum_of_floats_adds_into_its_output);
    RUN(exact_sum_of_zeros_nan_and_infinity);
    RUN(global_batch_norm_matches_the_local_one);
    RUN(micro_batched_gradients_match_the_plain_ones);
    return CHECK_DONE();
}
