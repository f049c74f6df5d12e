// Tests of lib/training/loss: hand-computed values, gradients against central finite
// differences of independent double-precision references, the multi-process
// shares of NT-Xent, thread-count independence, and parity with PyTorch 1.13
// through tests/fixtures/loss.mts (written by tests/torch/make_loss_fixtures.py;
// run from the top of the tree, as make check does).
//
// Tolerances.  The library computes in float with double sums; references
// are double.  Observed errors are at most 1.3e-7 relative for losses and
// 4e-7 of the largest gradient element; the tests allow 2e-6 and 4e-6 of the
// largest element (max-norm), about ten times that, which a missing or
// doubled term (the normalisation's projection, a direction, the
// temperature) still misses by orders of magnitude.
#include "loss.h"

#include <math.h>
#include <string.h>

#include "../check.h"
#include "../fixture.h"
#include "blas.h"
#include "rng.h"
#include "stream.h"
#include "util.h"

#define LOSS_RTOL 2e-6
#define GRAD_TOL 4e-6      // of max |reference gradient|
#define FD_STEP 1e-5

// ---- double references, written from the definitions -----------------------

// The share of anchors [lo, hi) of NT-Xent: rows 2k, 2k+1 pair up, the sum
// over anchors divided by the number of pairs.
static double ntxent_ref(const double *z, int rows, int dim, int lo, int hi, double tau)
{
    double *u = xmalloc((size_t)rows * dim * sizeof(double));
    for (int r = 0; r < rows; r++) {
        double n = 0;
        for (int d = 0; d < dim; d++)
            n += z[r * dim + d] * z[r * dim + d];
        n = fmax(sqrt(n), 1e-12);
        for (int d = 0; d < dim; d++)
            u[r * dim + d] = z[r * dim + d] / n;
    }
    double total = 0;
    for (int i = lo; i < hi; i++) {
        double denom = 0, positive = 0;
        for (int j = 0; j < rows; j++) {
            if (j == i)
                continue;
            double s = 0;
            for (int d = 0; d < dim; d++)
                s += u[i * dim + d] * u[j * dim + d];
            denom += exp(s / tau);
            if (j == (i ^ 1))
                positive = exp(s / tau);
        }
        total += -log(positive / denom);
    }
    free(u);
    return total / (rows / 2);
}

static double softmax_xent_ref(const double *x, const int *labels, int n, int classes)
{
    double total = 0;
    for (int i = 0; i < n; i++) {
        double denom = 0;
        for (int c = 0; c < classes; c++)
            denom += exp(x[i * classes + c]);
        total += -log(exp(x[i * classes + labels[i]]) / denom);
    }
    return total / n;
}

static double sigmoid_bce_ref(const double *x, const double *t, int n, int classes)
{
    double total = 0;
    for (int k = 0; k < n * classes; k++) {
        double p = 1.0 / (1.0 + exp(-x[k]));
        total += -(t[k] * log(p) + (1 - t[k]) * log(1 - p));
    }
    return total / (n * classes);
}

// ---- helpers -------------------------------------------------------------------

static void fill_normal(rng_t *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_normal(r);
}

static double *to_double(const float *x, size_t n)
{
    double *d = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

// Max-norm comparison: max |got - want| <= tol * max |want|.
#define EXPECT_GRAD_CLOSE(got, want, n, tol) expect_grad_close(__FILE__, __LINE__, got, want, n, tol)
static void expect_grad_close(const char *file, int line, const float *got, const double *want,
                              size_t n, double tol)
{
    double max_want = 0, max_err = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        max_want = fmax(max_want, fabs(want[i]));
        double err = fabs(got[i] - want[i]);
        if (!(err <= max_err)) {  // also catches NaN
            max_err = err;
            worst = i;
        }
    }
    if (!(max_err <= tol * max_want))
        check_fail(file, line, "element %zu: %.9g, expected %.9g (max error %.3g > %.3g * %.3g)",
                   worst, got[worst], want[worst], max_err, tol, max_want);
}

// Central differences of f at x (n doubles), one element at a time.
typedef double (*objective)(const double *x, const void *ctx);
static double *finite_differences(objective f, double *x, size_t n, const void *ctx)
{
    double *g = xmalloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++) {
        double keep = x[k];
        x[k] = keep + FD_STEP;
        double up = f(x, ctx);
        x[k] = keep - FD_STEP;
        double down = f(x, ctx);
        x[k] = keep;
        g[k] = (up - down) / (2 * FD_STEP);
    }
    return g;
}

typedef struct {
    int rows, dim, lo, hi;
    double tau;
} ntxent_args;

static double ntxent_objective(const double *z, const void *ctx)
{
    const ntxent_args *a = ctx;
    return ntxent_ref(z, a->rows, a->dim, a->lo, a->hi, a->tau);
}

// ---- NT-Xent ---------------------------------------------------------------------

// Two pairs along e1 and e2, tau = 1: each anchor has s = 1 with its positive
// and 0 with both negatives, so l = log(1 + 2/e) and the summed loss is
// 4 l / 2 = 2 l (the mean over anchors would be l).  With all rows equal,
// every candidate ties: l = log 3, loss 2 log 3, no anchor counted correct.
TEST(ntxent_hand_values)
{
    float z[4 * 2] = {3, 0, 0.5f, 0, 0, 2, 0, 1};
    float dz[4 * 2];
    int correct = -1;
    float loss = ntxent_loss(z, 4, 2, 0, 4, 1.0f, dz, &correct);
    EXPECT_CLOSE(loss, 2 * log(1 + 2 / exp(1.0)), 0, LOSS_RTOL);
    EXPECT(correct == 4);
    // Rows are scaled copies of their positive: moving a row along itself
    // changes nothing, so its gradient is orthogonal to it.
    for (int r = 0; r < 4; r++)
        EXPECT_CLOSE(dz[r * 2] * z[r * 2] + dz[r * 2 + 1] * z[r * 2 + 1], 0, 1e-7, 0);

    float same[4 * 3] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
    loss = ntxent_loss(same, 4, 3, 0, 4, 0.1f, NULL, &correct);
    EXPECT_CLOSE(loss, 2 * log(3.0), 0, LOSS_RTOL);
    EXPECT(correct == 0);
}

// The loss against the double reference, and dz against central differences
// of the reference: the whole batch, then the share of anchors [3, 9) (an odd
// start: a share need not hold whole pairs) whose dz reaches every row.
TEST(ntxent_gradient_vs_finite_differences)
{
    enum { ROWS = 12, DIM = 6 };
    rng_t r = rng_make(1, 0, 0, 0);
    float z[ROWS * DIM], dz[ROWS * DIM];
    fill_normal(&r, z, ROWS * DIM, 1.0f);
    for (int i = 1; i < ROWS; i += 2)  // second views near their first
        for (int d = 0; d < DIM; d++)
            z[i * DIM + d] = z[(i - 1) * DIM + d] + 0.7f * rng_normal(&r);
    double *zd = to_double(z, ROWS * DIM);
    const int ranges[2][2] = {{0, ROWS}, {3, 9}};
    for (int k = 0; k < 2; k++) {
        ntxent_args a = {ROWS, DIM, ranges[k][0], ranges[k][1], 0.3};
        float loss = ntxent_loss(z, ROWS, DIM, a.lo, a.hi, (float)a.tau, dz, NULL);
        EXPECT_CLOSE(loss, ntxent_objective(zd, &a), 0, LOSS_RTOL);
        double *fd = finite_differences(ntxent_objective, zd, ROWS * DIM, &a);
        EXPECT_GRAD_CLOSE(dz, fd, ROWS * DIM, GRAD_TOL);
        free(fd);
    }
    free(zd);
}

// Shares of a partition of the anchors add up to the whole: the loss, the
// top-1 count and dz (to float rounding).
TEST(ntxent_shares_add_up)
{
    enum { ROWS = 64, DIM = 16 };
    const int cuts[] = {0, 20, 22, 64};
    rng_t r = rng_make(2, 0, 0, 0);
    float *z = xmalloc(ROWS * DIM * sizeof(float));
    float *dz = xmalloc(ROWS * DIM * sizeof(float));
    float *part = xmalloc(ROWS * DIM * sizeof(float));
    double *sum = xcalloc(ROWS * DIM, sizeof(double));
    fill_normal(&r, z, ROWS * DIM, 1.0f);
    int whole_correct, correct_sum = 0;
    float whole = ntxent_loss(z, ROWS, DIM, 0, ROWS, 0.2f, dz, &whole_correct);
    double loss_sum = 0;
    for (int k = 0; k < 3; k++) {
        int c;
        loss_sum += ntxent_loss(z, ROWS, DIM, cuts[k], cuts[k + 1], 0.2f, part, &c);
        correct_sum += c;
        for (int i = 0; i < ROWS * DIM; i++)
            sum[i] += part[i];
    }
    EXPECT_CLOSE(loss_sum, whole, 0, LOSS_RTOL);
    EXPECT(correct_sum == whole_correct);
    EXPECT_GRAD_CLOSE(dz, sum, ROWS * DIM, 1e-6);
    free(z), free(dz), free(part), free(sum);
}

// The same bytes with one thread and with two.
TEST(ntxent_thread_count_independent)
{
    enum { ROWS = 256, DIM = 128 };
    rng_t r = rng_make(3, 0, 0, 0);
    float *z = xmalloc(ROWS * DIM * sizeof(float));
    float *dz1 = xmalloc(ROWS * DIM * sizeof(float));
    float *dz2 = xmalloc(ROWS * DIM * sizeof(float));
    fill_normal(&r, z, ROWS * DIM, 1.0f);
    int c1, c2;
    blas_set_threads(1);
    float l1 = ntxent_loss(z, ROWS, DIM, 0, ROWS, 0.1f, dz1, &c1);
    blas_set_threads(2);
    float l2 = ntxent_loss(z, ROWS, DIM, 0, ROWS, 0.1f, dz2, &c2);
    EXPECT(memcmp(&l1, &l2, sizeof l1) == 0);
    EXPECT(c1 == c2);
    EXPECT(memcmp(dz1, dz2, ROWS * DIM * sizeof(float)) == 0);
    free(z), free(dz1), free(dz2);
}

// A zero row (u = 0 by the eps clamp) gives finite values everywhere.
TEST(ntxent_zero_row_is_finite)
{
    float z[4 * 3] = {0, 0, 0, 1, 2, 3, -1, 0, 2, 0.5f, 0.5f, 0};
    float dz[4 * 3];
    float loss = ntxent_loss(z, 4, 3, 0, 4, 0.5f, dz, NULL);
    EXPECT(isfinite(loss));
    for (int i = 0; i < 12; i++)
        EXPECT(isfinite(dz[i]));
}

// ---- softmax cross entropy and sigmoid BCE ------------------------------------

typedef struct {
    const int *labels;
    const double *targets;
    int n, classes;
} xent_args;

static double softmax_objective(const double *x, const void *ctx)
{
    const xent_args *a = ctx;
    return softmax_xent_ref(x, a->labels, a->n, a->classes);
}

static double bce_objective(const double *x, const void *ctx)
{
    const xent_args *a = ctx;
    return sigmoid_bce_ref(x, a->targets, a->n, a->classes);
}

TEST(softmax_xent_values_and_gradient)
{
    enum { N = 6, C = 5 };
    // Equal logits: loss log C; the first largest logit wins, so label 0 counts.
    float zeros[2 * C] = {0}, g[N * C];
    int labels0[2] = {0, 3}, correct;
    EXPECT_CLOSE(softmax_xent(zeros, labels0, 2, C, 2, g, &correct), log(C), 0, LOSS_RTOL);
    EXPECT(correct == 1);
    EXPECT_CLOSE(g[0], (1.0 / C - 1) / 2, 1e-7, 0);
    EXPECT_CLOSE(g[1], 1.0 / C / 2, 1e-7, 0);

    rng_t r = rng_make(4, 0, 0, 0);
    float x[N * C];
    int labels[N];
    fill_normal(&r, x, N * C, 2.0f);
    for (int i = 0; i < N; i++)
        labels[i] = (int)rng_below(&r, C);
    double *xd = to_double(x, N * C);
    xent_args a = {labels, NULL, N, C};
    EXPECT_CLOSE(softmax_xent(x, labels, N, C, N, g, NULL), softmax_objective(xd, &a), 0, LOSS_RTOL);
    double *fd = finite_differences(softmax_objective, xd, N * C, &a);
    EXPECT_GRAD_CLOSE(g, fd, N * C, GRAD_TOL);
    free(fd), free(xd);

    // Logits of +-1000 overflow a naive exp; the loss is the margin.
    float big[2 * 2] = {1000, -1000, 1000, -1000};
    int big_labels[2] = {0, 1};
    EXPECT_CLOSE(softmax_xent(big, big_labels, 2, 2, 2, g, &correct), 1000, 0, LOSS_RTOL);
    EXPECT(correct == 1);
    EXPECT_CLOSE(g[2], 0.5, 1e-9, 0);
    EXPECT_CLOSE(g[3], -0.5, 1e-9, 0);
}

TEST(sigmoid_bce_values_and_gradient)
{
    enum { N = 5, C = 4 };
    float zero[2] = {0, 0}, half[2] = {1, 0}, g[N * C];
    EXPECT_CLOSE(sigmoid_bce(zero, half, 1, 2, 1, g), log(2.0), 0, LOSS_RTOL);
    EXPECT_CLOSE(g[0], -0.25, 1e-9, 0);  // (1/2 - 1) / 2
    EXPECT_CLOSE(g[1], 0.25, 1e-9, 0);

    rng_t r = rng_make(5, 0, 0, 0);
    float x[N * C], t[N * C];
    fill_normal(&r, x, N * C, 2.0f);
    for (int k = 0; k < N * C; k++)
        t[k] = rng_uniform(&r) < 0.3f;
    double *xd = to_double(x, N * C), *td = to_double(t, N * C);
    xent_args a = {NULL, td, N, C};
    EXPECT_CLOSE(sigmoid_bce(x, t, N, C, N, g), bce_objective(xd, &a), 0, LOSS_RTOL);
    double *fd = finite_differences(bce_objective, xd, N * C, &a);
    EXPECT_GRAD_CLOSE(g, fd, N * C, GRAD_TOL);
    free(fd), free(xd), free(td);

    // Saturated logits: right answers cost e^-100, wrong ones 100.
    float sat[4] = {100, -100, 100, -100}, tgt[4] = {1, 0, 0, 1};
    EXPECT_CLOSE(sigmoid_bce(sat, tgt, 1, 4, 1, g), (2 * exp(-100.0) + 2 * (100 + exp(-100.0))) / 4, 0,
                 LOSS_RTOL);
    EXPECT_CLOSE(g[0], 0, 1e-30, 0);
    EXPECT_CLOSE(g[2], 0.25, 1e-9, 0);
    EXPECT_CLOSE(g[3], -0.25, 1e-9, 0);
}

// A batch cut into shares (micro-batches, ranks) with total = the batch:
// each share's gradient rows are the whole batch's, bit for bit, and the
// shares' values add up to its mean.
TEST(xent_and_bce_over_shares_of_a_batch)
{
    enum { N = 12, C = 3, SHARE = 4 };
    rng_t r = rng_make(6, 0, 0, 0);
    float x[N * C], t[N * C], g_all[N * C], g_share[N * C];
    int labels[N], right_all, right, right_sum = 0;
    fill_normal(&r, x, N * C, 2.0f);
    for (int i = 0; i < N; i++)
        labels[i] = (int)rng_below(&r, C);
    for (int k = 0; k < N * C; k++)
        t[k] = rng_uniform(&r) < 0.4f;
    double whole = softmax_xent(x, labels, N, C, N, g_all, &right_all), sum = 0;
    for (int s = 0; s < N; s += SHARE) {
        sum += softmax_xent(x + s * C, labels + s, SHARE, C, N, g_share + s * C, &right);
        right_sum += right;
    }
    EXPECT(memcmp(g_all, g_share, sizeof g_all) == 0);
    EXPECT_CLOSE(sum, whole, 0, 1e-14);
    EXPECT(right_sum == right_all);
    whole = sigmoid_bce(x, t, N, C, N, g_all);
    sum = 0;
    for (int s = 0; s < N; s += SHARE)
        sum += sigmoid_bce(x + s * C, t + s * C, SHARE, C, N, g_share + s * C);
    EXPECT(memcmp(g_all, g_share, sizeof g_all) == 0);
    EXPECT_CLOSE(sum, whole, 0, 1e-14);
}

// ---- InfoNCE against a queue ------------------------------------------------------

typedef struct {
    const double *k, *queue;
    int n, dim, K;
    double tau;
} infonce_args;

// The double reference: q normalised here, k too, the queue's rows as given.
static double infonce_objective(const double *q, const void *ctx)
{
    const infonce_args *a = ctx;
    double total = 0;
    for (int i = 0; i < a->n; i++) {
        const double *qi = q + (size_t)i * a->dim, *ki = a->k + (size_t)i * a->dim;
        double qq = 0, kk = 0, qk = 0;
        for (int d = 0; d < a->dim; d++)
            qq += qi[d] * qi[d], kk += ki[d] * ki[d], qk += qi[d] * ki[d];
        double pos = qk / sqrt(qq * kk) / a->tau, sum = exp(pos);
        for (int j = 0; j < a->K; j++) {
            double s = 0;
            for (int d = 0; d < a->dim; d++)
                s += qi[d] * a->queue[(size_t)j * a->dim + d];
            sum += exp(s / sqrt(qq) / a->tau);
        }
        total += log(sum) - pos;
    }
    return total / a->n;
}

TEST(infonce_queue_gradient_vs_finite_differences)
{
    enum { N = 5, DIM = 4, K = 9 };
    rng_t r = rng_make(7, 0, 0, 0);
    float q[N * DIM], k[N * DIM], queue[K * DIM], dq[N * DIM];
    fill_normal(&r, q, N * DIM, 1.0f);
    for (int i = 0; i < N * DIM; i++)
        k[i] = q[i] + 0.5f * rng_normal(&r);
    fill_normal(&r, queue, K * DIM, 1.0f);
    for (int j = 0; j < K; j++) {   // unit rows, as the trainer stores them
        double ss = 0;
        for (int d = 0; d < DIM; d++)
            ss += (double)queue[j * DIM + d] * queue[j * DIM + d];
        for (int d = 0; d < DIM; d++)
            queue[j * DIM + d] = (float)(queue[j * DIM + d] / sqrt(ss));
    }
    double *qd = to_double(q, N * DIM), *kd = to_double(k, N * DIM), *queued = to_double(queue, K * DIM);
    for (int queued_keys = 0; queued_keys <= K; queued_keys += K) {   // an empty queue, then a full one
        infonce_args a = {kd, queued, N, DIM, queued_keys, 0.2};
        int correct = -1;
        float loss = infonce_queue(q, k, N, DIM, queue, queued_keys, 0.2f, dq, &correct);
        EXPECT_CLOSE(loss, infonce_objective(qd, &a), 0, LOSS_RTOL);
        EXPECT(correct >= 0 && correct <= N && (queued_keys > 0 || correct == N));
        double *fd = finite_differences(infonce_objective, qd, N * DIM, &a);
        if (queued_keys == 0)   // the positive alone: a loss of 0 whatever q is
            EXPECT_CLOSE(loss, 0, 1e-7, 0);
        else
            EXPECT_GRAD_CLOSE(dq, fd, N * DIM, GRAD_TOL);
        free(fd);
    }
    free(qd), free(kd), free(queued);
}

static double mse_objective(const double *x, const void *ctx)
{
    const xent_args *a = ctx;
    double sum = 0;
    for (int k = 0; k < a->n; k++)
        sum += (x[k] - a->targets[k]) * (x[k] - a->targets[k]);
    return sum / a->n;
}

TEST(mse_values_and_gradient)
{
    enum { N = 37 };
    float p[3] = {1, 2, 3}, t3[3] = {1, 0, 6}, g[N];
    EXPECT_CLOSE(mse_loss(p, t3, 3, g), 13.0 / 3, 0, LOSS_RTOL);   // (0 + 4 + 9) / 3
    EXPECT_CLOSE(g[1], 4.0 / 3, 1e-7, 0);
    EXPECT_CLOSE(g[2], -2.0, 1e-9, 0);
    rng_t r = rng_make(6, 0, 0, 0);
    float x[N], t[N];
    fill_normal(&r, x, N, 1.0f);
    fill_normal(&r, t, N, 1.0f);
    double *xd = to_double(x, N), *td = to_double(t, N);
    xent_args a = {NULL, td, N, 1};
    EXPECT_CLOSE(mse_loss(x, t, N, g), mse_objective(xd, &a), 0, LOSS_RTOL);
    double *fd = finite_differences(mse_objective, xd, N, &a);
    EXPECT_GRAD_CLOSE(g, fd, N, GRAD_TOL);
    free(fd), free(xd), free(td);
}

// ---- PyTorch parity --------------------------------------------------------------

TEST(torch_parity)
{
    mts_reader *r = mts_reader_open("tests/fixtures/loss.mts", NULL);
    EXPECT_MSG(r, "cannot open tests/fixtures/loss.mts (run from the top of the tree)");
    if (!r)
        return;
    mts_frame f;
    int cases[4] = {0};
    while (mts_next_record(r, &f, NULL, NULL)) {
        char kind[32];
        mts_req_str(r, &f, "kind", kind, sizeof kind);
        double want_loss = mts_req_f64(r, &f, "loss");
        size_t n, n_grad;
        if (strcmp(kind, "ntxent") == 0) {
            mts_tensor zt;
            mts_req_tensor(r, &f, "z", &zt);
            float *z = fixture_f32(r, &f, "z", &n);
            double *want = fixture_f64(r, &f, "dz", &n_grad);
            int rows = (int)zt.shape[0], dim = (int)zt.shape[1];
            int lo = (int)mts_req_int(r, &f, "lo"), hi = (int)mts_req_int(r, &f, "hi");
            float *dz = xmalloc(n * sizeof(float));
            int correct;
            float loss = ntxent_loss(z, rows, dim, lo, hi, (float)mts_req_f64(r, &f, "tau"), dz,
                                     &correct);
            EXPECT_CLOSE(loss, want_loss, 0, LOSS_RTOL);
            EXPECT(n_grad == n);
            EXPECT_GRAD_CLOSE(dz, want, n, GRAD_TOL);
            EXPECT_MSG(correct == mts_req_int(r, &f, "correct"), "ntxent rows %d: correct %d", rows,
                       correct);
            free(z), free(want), free(dz);
            cases[0]++;
        } else if (strcmp(kind, "softmax_xent") == 0) {
            mts_tensor xt;
            mts_req_tensor(r, &f, "logits", &xt);
            float *x = fixture_f32(r, &f, "logits", &n);
            size_t nl;
            float *label_f = fixture_f32(r, &f, "labels", &nl);
            double *want = fixture_f64(r, &f, "dlogits", &n_grad);
            int rows = (int)xt.shape[0], classes = (int)xt.shape[1];
            int *labels = xmalloc(nl * sizeof(int));
            for (size_t i = 0; i < nl; i++)
                labels[i] = (int)label_f[i];
            float *g = xmalloc(n * sizeof(float));
            int correct;
            EXPECT_CLOSE(softmax_xent(x, labels, rows, classes, rows, g, &correct), want_loss, 0,
                         LOSS_RTOL);
            EXPECT_GRAD_CLOSE(g, want, n, GRAD_TOL);
            EXPECT(correct == mts_req_int(r, &f, "correct"));
            free(x), free(label_f), free(want), free(labels), free(g);
            cases[1]++;
        } else if (strcmp(kind, "sigmoid_bce") == 0) {
            mts_tensor xt;
            mts_req_tensor(r, &f, "logits", &xt);
            size_t nt;
            float *x = fixture_f32(r, &f, "logits", &n);
            float *t = fixture_f32(r, &f, "targets", &nt);
            double *want = fixture_f64(r, &f, "dlogits", &n_grad);
            float *g = xmalloc(n * sizeof(float));
            EXPECT_CLOSE(sigmoid_bce(x, t, (int)xt.shape[0], (int)xt.shape[1], (int)xt.shape[0], g), want_loss, 0,
                         LOSS_RTOL);
            EXPECT_GRAD_CLOSE(g, want, n, GRAD_TOL);
            free(x), free(t), free(want), free(g);
            cases[2]++;
        } else if (strcmp(kind, "infonce") == 0) {
            mts_tensor qt, queuet;
            mts_req_tensor(r, &f, "q", &qt);
            mts_req_tensor(r, &f, "queue", &queuet);
            size_t nk, nq;
            float *q = fixture_f32(r, &f, "q", &n), *k = fixture_f32(r, &f, "k", &nk), *queue = fixture_f32(r, &f, "queue", &nq);
            double *want = fixture_f64(r, &f, "dq", &n_grad);
            float *dq = xmalloc(n * sizeof(float));
            int correct;
            float loss = infonce_queue(q, k, (int)qt.shape[0], (int)qt.shape[1], queue, (int)queuet.shape[0],
                                       (float)mts_req_f64(r, &f, "tau"), dq, &correct);
            EXPECT_CLOSE(loss, want_loss, 0, LOSS_RTOL);
            EXPECT(n_grad == n);
            EXPECT_GRAD_CLOSE(dq, want, n, GRAD_TOL);
            EXPECT(correct == mts_req_int(r, &f, "correct"));
            free(q), free(k), free(queue), free(want), free(dq);
            cases[3]++;
        } else {
            EXPECT_MSG(0, "unknown fixture kind '%s'", kind);
        }
    }
    mts_reader_close(r);
    EXPECT_MSG(cases[0] == 3 && cases[1] == 2 && cases[2] == 2 && cases[3] == 1,
               "fixture cases: %d ntxent, %d softmax, %d bce, %d infonce", cases[0], cases[1], cases[2], cases[3]);
}

int main(void)
{
    RUN(ntxent_hand_values);
    RUN(ntxent_gradient_vs_finite_differences);
    RUN(ntxent_shares_add_up);
    RUN(ntxent_thread_count_independent);
    RUN(ntxent_zero_row_is_finite);
    RUN(softmax_xent_values_and_gradient);
    RUN(sigmoid_bce_values_and_gradient);
    RUN(xent_and_bce_over_shares_of_a_batch);
    RUN(mse_values_and_gradient);
    RUN(infonce_queue_gradient_vs_finite_differences);
    RUN(torch_parity);
    return CHECK_DONE();
}
