#include "loss.h"

#include <math.h>
#include <stdlib.h>

#include "blas.h"
#include "util.h"

// torch's F.normalize: rows shorter than this are divided by it instead.
#define NORM_EPS 1e-12

// u = z / max(|z|, eps) row by row (torch's F.normalize); inv_norm (rows)
// keeps 1 / max(|z|, eps) for the backward.
static void normalize_rows(const float *z, int rows, int dim, float *u, double *inv_norm)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *zr = z + (size_t)r * dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)zr[d] * zr[d];
        inv_norm[r] = 1.0 / fmax(sqrt(ss), NORM_EPS);
        for (int d = 0; d < dim; d++)
            u[(size_t)r * dim + d] = (float)(zr[d] * inv_norm[r]);
    }
}

// g (rows, dim): the gradient at u on entry, at z on return: through
// u = z / |z|, dz = (du - u (u . du)) / |z|, or du / eps for a row shorter
// than eps (where the norm is the constant eps).
static void normalize_backward(const float *u, const double *inv_norm, int rows, int dim, float *g)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *gr = g + (size_t)r * dim;
        const float *ur = u + (size_t)r * dim;
        double udu = 0;
        if (inv_norm[r] < 1.0 / NORM_EPS)
            for (int d = 0; d < dim; d++)
                udu += (double)ur[d] * gr[d];
        for (int d = 0; d < dim; d++)
            gr[d] = (float)((gr[d] - ur[d] * udu) * inv_norm[r]);
    }
}

float ntxent_loss(const float *z, int rows, int dim, int lo, int hi, float tau,
                  float *dz, int *correct)
{
    if (rows < 2 || rows % 2 || dim < 1 || lo < 0 || lo >= hi || hi > rows || !(tau > 0))
        die("ntxent", "bad arguments: rows %d, dim %d, anchors [%d, %d), tau %g",
            rows, dim, lo, hi, tau);
    int anchors = hi - lo;
    size_t rd = mul_size((size_t)rows, (size_t)dim, "ntxent");
    float *u = xaligned_alloc(rd * sizeof(float));              // (rows, dim) unit rows
    double *inv_norm = xmalloc((size_t)rows * sizeof(double));  // (rows,)
    // (anchors, rows): similarities s_ij, then exponentials, then dloss/ds_ij
    float *sim = xaligned_alloc(mul_size((size_t)anchors, (size_t)rows, "ntxent") * sizeof(float));
    double *anchor_loss = xmalloc((size_t)anchors * sizeof(double));
    int *anchor_correct = xmalloc((size_t)anchors * sizeof(int));

    normalize_rows(z, rows, dim, u, inv_norm);

    // sim = u[lo:hi] u^T / tau
    gemm_f32(false, true, anchors, rows, dim, 1.0f / tau, u + (size_t)lo * dim, dim, u, dim,
             0.0f, sim, rows);

    const double pairs = rows / 2;
#pragma omp parallel for schedule(static)
    for (int a = 0; a < anchors; a++) {
        int i = lo + a, pos = i ^ 1;
        float *s = sim + (size_t)a * rows;
        float max = -INFINITY;
        int beaten = 0;  // candidates at least as similar as the positive
        for (int j = 0; j < rows; j++) {
            if (j == i)
                continue;
            if (s[j] > max)
                max = s[j];
            if (j != pos && s[j] >= s[pos])
                beaten++;
        }
        // l_i = logsumexp_{j != i} s_ij - s_i,pos; dl_i/ds_ij = p_ij - [j = pos]
        // with p_ij = e_j / sum_j e_j, e_j = exp(s_ij - max) (kept in s).
        float s_pos = s[pos];
        double sum = 0;
        for (int j = 0; j < rows; j++) {
            float e = j == i ? 0.0f : expf(s[j] - max);
            sum += e;
            s[j] = e;
        }
        anchor_loss[a] = max + log(sum) - s_pos;
        anchor_correct[a] = beaten == 0;
        if (dz)
            for (int j = 0; j < rows; j++)
                s[j] = (float)((s[j] / sum - (j == pos)) / pairs);
    }

    double loss = 0;
    int ncorrect = 0;
    for (int a = 0; a < anchors; a++) {
        loss += anchor_loss[a];
        ncorrect += anchor_correct[a];
    }
    if (correct)
        *correct = ncorrect;

    if (dz) {
        // With G = sim (the loss's gradient w.r.t. s, zero outside the local
        // anchors' rows) and s = u u^T / tau:  du = (G + G^T) u / tau.
        // The G^T part reaches every row; the G part only the anchors.
        gemm_f32(true, false, rows, dim, anchors, 1.0f / tau, sim, rows, u + (size_t)lo * dim,
                 dim, 0.0f, dz, dim);
        gemm_f32(false, false, anchors, dim, rows, 1.0f / tau, sim, rows, u, dim, 1.0f,
                 dz + (size_t)lo * dim, dim);
        normalize_backward(u, inv_norm, rows, dim, dz);
    }

    free(u);
    free(inv_norm);
    free(sim);
    free(anchor_loss);
    free(anchor_correct);
    return (float)(loss / pairs);
}

double softmax_xent(const float *logits, const int *labels, int n, int classes, int total,
                    float *dlogits, int *correct)
{
    if (n < 1 || classes < 1 || total < n)
        die("softmax_xent", "bad shape (%d of %d, %d)", n, total, classes);
    double loss = 0;
    int ncorrect = 0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * classes;
        int y = labels[i];
        if (y < 0 || y >= classes)
            die("softmax_xent", "label %d of row %d is not in [0, %d)", y, i, classes);
        int argmax = 0;
        for (int c = 1; c < classes; c++)
            if (x[c] > x[argmax])
                argmax = c;
        double max = x[argmax], sum = 0;
        for (int c = 0; c < classes; c++)
            sum += exp((double)x[c] - max);
        double lse = max + log(sum);
        loss += lse - x[y];
        ncorrect += argmax == y;
        if (dlogits) {
            float *g = dlogits + (size_t)i * classes;
            for (int c = 0; c < classes; c++)
                g[c] = (float)((exp((double)x[c] - lse) - (c == y)) / total);
        }
    }
    if (correct)
        *correct = ncorrect;
    return loss / total;
}

double sigmoid_bce(const float *logits, const float *targets, int n, int classes, int total,
                   float *dlogits)
{
    if (n < 1 || classes < 1 || total < n)
        die("sigmoid_bce", "bad shape (%d of %d, %d)", n, total, classes);
    const size_t count = (size_t)n * classes;
    const double all = (double)total * classes;
    double loss = 0;
    for (size_t k = 0; k < count; k++) {
        double x = logits[k], t = targets[k];
        // log(1 + e^-|x|) never overflows; the sigmoid is formed from e^-|x|
        // on the side where it does not cancel.
        double e = exp(-fabs(x));
        loss += fmax(x, 0.0) - x * t + log1p(e);
        if (dlogits) {
            double sigmoid = x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            dlogits[k] = (float)((sigmoid - t) / all);
        }
    }
    return loss / all;
}

float mse_loss(const float *pred, const float *target, size_t n, float *dpred)
{
    if (n < 1)
        die("mse_loss", "no elements");
    double loss = 0;
    for (size_t k = 0; k < n; k++) {
        double d = (double)pred[k] - target[k];
        loss += d * d;
        if (dpred)
            dpred[k] = (float)(2.0 * d / (double)n);
    }
    return (float)(loss / (double)n);
}

float infonce_queue(const float *q, const float *k, int n, int dim, const float *queue, int K, float tau,
                    float *dq, int *correct)
{
    if (n < 1 || dim < 1 || K < 0 || !(tau > 0))
        die("infonce", "bad arguments: n %d, dim %d, queue %d, tau %g", n, dim, K, tau);
    size_t nd = mul_size((size_t)n, (size_t)dim, "infonce");
    float *u = xaligned_alloc(nd * sizeof(float)), *v = xaligned_alloc(nd * sizeof(float));
    double *inv_norm = xmalloc((size_t)n * sizeof(double)), *key_norm = xmalloc((size_t)n * sizeof(double));
    normalize_rows(q, n, dim, u, inv_norm);
    normalize_rows(k, n, dim, v, key_norm);
    // (n, 1 + K): the positive's logit, then the queue's; then dl/dlogit.
    size_t cols = (size_t)K + 1;
    float *logits = xaligned_alloc(mul_size((size_t)n, cols, "infonce") * sizeof(float));
    if (K > 0)
        gemm_f32(false, true, n, K, dim, 1.0f / tau, u, dim, queue, dim, 0.0f, logits + 1, (int)cols);
    double *row_loss = xmalloc((size_t)n * sizeof *row_loss);   // summed in order below
    int ncorrect = 0;
#pragma omp parallel for schedule(static) reduction(+ : ncorrect)
    for (int i = 0; i < n; i++) {
        float *l = logits + (size_t)i * cols;
        double pos = 0;
        for (int d = 0; d < dim; d++)
            pos += (double)u[(size_t)i * dim + d] * v[(size_t)i * dim + d];
        const float l_pos = (float)(pos / tau);
        l[0] = l_pos;
        float max = l_pos;
        int beaten = 0;
        for (size_t j = 1; j < cols; j++) {
            if (l[j] > max)
                max = l[j];
            beaten += l[j] >= l[0];
        }
        double sum = 0;
        for (size_t j = 0; j < cols; j++) {
            float e = expf(l[j] - max);
            sum += e;
            l[j] = e;
        }
        row_loss[i] = max + log(sum) - l_pos;
        ncorrect += beaten == 0;
        for (size_t j = 0; j < cols; j++)
            l[j] = (float)((l[j] / sum - (j == 0)) / n);
    }
    double loss = 0;
    for (int i = 0; i < n; i++)
        loss += row_loss[i];
    free(row_loss);
    if (correct)
        *correct = ncorrect;
    if (dq) {
        // du_i = (G_i0 v_i + sum_k G_ik Q_k) / tau, then through u = q / |q|.
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)
            for (int d = 0; d < dim; d++)
                dq[(size_t)i * dim + d] = logits[(size_t)i * cols] * v[(size_t)i * dim + d] / tau;
        if (K > 0)
            gemm_f32(false, false, n, dim, K, 1.0f / tau, logits + 1, (int)cols, queue, dim, 1.0f, dq, dim);
        normalize_backward(u, inv_norm, n, dim, dq);
    }
    free(u);
    free(v);
    free(inv_norm);
    free(key_norm);
    free(logits);
    return (float)(loss / n);
}
