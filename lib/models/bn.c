#include "bn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "util.h"

void batchnorm_init(batchnorm *bn, int channels)
{
    if (channels < 1)
        die("batchnorm", "bad channel count %d", channels);
    bn->channels = channels;
    bn->momentum = 0.1f;
    bn->eps = 1e-5f;
    bn->num_batches_tracked = 0;
    bn->micro = 0;
    bn->parts = NULL;
    bn->parts_cap = 0;
    size_t bytes = (size_t)channels * sizeof(float);
    float **buffers[] = {&bn->weight, &bn->bias, &bn->weight_grad, &bn->bias_grad,
                         &bn->running_mean, &bn->running_var, &bn->batch_mean,
                         &bn->batch_invstd};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        *buffers[i] = xaligned_alloc(bytes);
        memset(*buffers[i], 0, bytes);
    }
    for (int c = 0; c < channels; c++) {
        bn->weight[c] = 1.0f;
        bn->running_var[c] = 1.0f;
    }
}

void batchnorm_free(batchnorm *bn)
{
    free(bn->weight);
    free(bn->bias);
    free(bn->weight_grad);
    free(bn->bias_grad);
    free(bn->running_mean);
    free(bn->running_var);
    free(bn->batch_mean);
    free(bn->batch_invstd);
    free(bn->parts);
    memset(bn, 0, sizeof *bn);
}

void batchnorm_register(batchnorm *bn, param_list *params, const char *prefix)
{
    int64_t shape[1] = {bn->channels};
    param_add(params, bn->weight, bn->weight_grad, 1, shape, true, "%s.weight", prefix);
    param_add(params, bn->bias, bn->bias_grad, 1, shape, true, "%s.bias", prefix);
}

// Per-channel sums.  A channel is n planes of hw floats, `stride` floats
// apart.  Sixteen interleaved double accumulators keep the adds
// independent (fast: a chain of dependent adds would run at a fraction of
// the cache's speed) and the order fixed (reproducible); the tail of each
// plane goes to a seventeenth.

enum { lanes = 16 };

static double combine(const double acc[lanes], double tail)
{
    double half[lanes / 2];
    for (int l = 0; l < lanes / 2; l++)
        half[l] = acc[l] + acc[l + lanes / 2];
    return ((half[0] + half[1]) + (half[2] + half[3])) +
           ((half[4] + half[5]) + (half[6] + half[7])) + tail;
}

// The sums of d = x - shift and d^2 over a channel's n planes.
static void shifted_sums(const float *x, int n, int hw, size_t stride, double shift, double *sum,
                         double *sum_sq)
{
    double acc[lanes] = {0}, acc_sq[lanes] = {0}, tail = 0, tail_sq = 0;
    for (int i = 0; i < n; i++) {
        const float *p = x + i * stride;
        int j = 0;
        for (; j + lanes <= hw; j += lanes)
            for (int l = 0; l < lanes; l++) {
                double d = p[j + l] - shift;
                acc[l] += d;
                acc_sq[l] += d * d;
            }
        for (; j < hw; j++) {
            double d = p[j] - shift;
            tail += d;
            tail_sq += d * d;
        }
    }
    *sum = combine(acc, tail);
    *sum_sq = combine(acc_sq, tail_sq);
}

// The mean and biased variance of `count` values from their sums shifted by
// `shift`: the variance (sum d^2 - (sum d)^2 / count) / count cancels only
// as much as the shift is off the mean, and in double.
static void moments(double shift, double sum, double sum_sq, double count, double *mean, double *var)
{
    *mean = shift + sum / count;
    double v = (sum_sq - sum * sum / count) / count;
    *var = v > 0 ? v : 0;
}

// A channel's mean and variance in one pass, shifted by its first value.
static void channel_moments(const float *x, int n, int hw, size_t stride, double *mean,
                            double *var)
{
    double sum, sum_sq;
    shifted_sums(x, n, hw, stride, x[0], &sum, &sum_sq);
    moments(x[0], sum, sum_sq, (double)n * hw, mean, var);
}

// The partial sums of a global batch's micro-batches (parts of bn->micro
// images), and after them room for the totals: (parts + 1, 2 channels).
static double *micro_parts(batchnorm *bn, int n, int *parts)
{
    if (n % bn->micro)
        die("batchnorm", "a batch of %d is not whole micro-batches of %d", n, bn->micro);
    *parts = n / bn->micro;
    size_t need = (size_t)(*parts + 1) * 2 * bn->channels;
    if (need > bn->parts_cap) {
        free(bn->parts);
        bn->parts = xmalloc(need * sizeof *bn->parts);
        bn->parts_cap = need;
    }
    return bn->parts;
}

// With the ReLU fused (y not NULL), first zeroes dy where the forward's
// output y was not positive, turning it into the gradient dz at the ReLU's
// input; then sums dz and dz * (x - mean).  Plane by plane, so that the sums
// read what the masking just wrote from cache.
static void channel_grad_sums(float *dy, const float *y, const float *x, int n, int hw,
                              size_t stride, double mean, double *sum_dz, double *sum_dz_dev)
{
    double acc[lanes] = {0}, acc_dev[lanes] = {0}, tail = 0, tail_dev = 0;
    for (int i = 0; i < n; i++) {
        float *pd = dy + i * stride;
        const float *px = x + i * stride;
        if (y) {
            const float *py = y + i * stride;
#pragma omp simd
            for (int j = 0; j < hw; j++)
                pd[j] = py[j] > 0 ? pd[j] : 0;
        }
        int j = 0;
        for (; j + lanes <= hw; j += lanes)
            for (int l = 0; l < lanes; l++) {
                acc[l] += pd[j + l];
                acc_dev[l] += (double)pd[j + l] * (px[j + l] - mean);
            }
        for (; j < hw; j++) {
            tail += pd[j];
            tail_dev += (double)pd[j] * (px[j] - mean);
        }
    }
    *sum_dz = combine(acc, tail);
    *sum_dz_dev = combine(acc_dev, tail_dev);
}

// Training: keeps the batch statistics for backward and moves the running
// ones; returns invstd.  count: the values behind mean and var.
static double use_batch_stats(batchnorm *bn, int c, double mean, double var, double count)
{
    double invstd = 1.0 / sqrt(var + bn->eps);
    bn->batch_mean[c] = (float)mean;
    bn->batch_invstd[c] = (float)invstd;
    double m = bn->momentum;
    bn->running_mean[c] = (float)((1 - m) * bn->running_mean[c] + m * mean);
    bn->running_var[c] = (float)((1 - m) * bn->running_var[c] + m * var * count / (count - 1));
    return invstd;
}

// y = [relu](gamma (x - mean) invstd + beta [+ residual]) over channel c.
// The ReLU is written v < 0 ? 0 : v so that NaN passes through, as in
// PyTorch: a diverged run must show in the loss, not turn into zeros.
static void normalize_channel(const batchnorm *bn, int c, int n, int hw, const float *x, const float *residual,
                              bool relu, float *y, double mean, double invstd)
{
    const size_t stride = (size_t)bn->channels * hw;
    const float *xc = x + (size_t)c * hw;
    // (x - mean) scale + beta rather than x scale + shift: no
    // cancellation when the mean is large against the spread.
    const float fmean = (float)mean, scale = (float)(bn->weight[c] * invstd);
    const float shift = bn->bias[c];
    for (int i = 0; i < n; i++) {
        const float *px = xc + i * stride;
        float *py = y + (size_t)c * hw + i * stride;
        const float *pr = residual ? residual + (size_t)c * hw + i * stride : NULL;
        if (pr && relu) {
#pragma omp simd
            for (int j = 0; j < hw; j++) {
                float v = (px[j] - fmean) * scale + shift + pr[j];
                py[j] = v < 0 ? 0 : v;
            }
        } else if (pr) {
#pragma omp simd
            for (int j = 0; j < hw; j++)
                py[j] = (px[j] - fmean) * scale + shift + pr[j];
        } else if (relu) {
#pragma omp simd
            for (int j = 0; j < hw; j++) {
                float v = (px[j] - fmean) * scale + shift;
                py[j] = v < 0 ? 0 : v;
            }
        } else {
#pragma omp simd
            for (int j = 0; j < hw; j++)
                py[j] = (px[j] - fmean) * scale + shift;
        }
    }
}

// Training forward over a global batch: the sums of every micro-batch of
// every rank, added exactly (dist_sum_f64), shifted by the running mean,
// which every rank holds the same.
static void global_forward(batchnorm *bn, int n, int hw, const float *x, const float *residual, bool relu,
                           float *y)
{
    const int C = bn->channels, micro = bn->micro;
    const size_t stride = (size_t)C * hw;
    const double count = (double)n * hw * dist_size();
    int parts;
    double *ps = micro_parts(bn, n, &parts), *tot = ps + (size_t)parts * 2 * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
        for (int p = 0; p < parts; p++)
            shifted_sums(x + (size_t)c * hw + (size_t)p * micro * stride, micro, hw, stride, bn->running_mean[c],
                         &ps[(size_t)p * 2 * C + c], &ps[(size_t)p * 2 * C + C + c]);
    dist_sum_f64(ps, parts, 2 * (size_t)C, 1, tot);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean, var;
        moments(bn->running_mean[c], tot[c], tot[C + c], count, &mean, &var);
        double invstd = use_batch_stats(bn, c, mean, var, count);
        normalize_channel(bn, c, n, hw, x, residual, relu, y, mean, invstd);
    }
}

void batchnorm_forward(batchnorm *bn, bool training, int n, int hw, const float *x,
                       const float *residual, bool relu, float *y)
{
    const int C = bn->channels;
    const size_t stride = (size_t)C * hw;
    const double count = (double)n * hw;
    if (training && count < 2)
        die("batchnorm", "training needs more than one value per channel (n %d, hw %d)", n, hw);
    if (training)
        bn->num_batches_tracked++;
    if (training && bn->micro) {
        global_forward(bn, n, hw, x, residual, relu, y);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean, invstd;
        if (training) {
            double var;
            channel_moments(x + (size_t)c * hw, n, hw, stride, &mean, &var);
            invstd = use_batch_stats(bn, c, mean, var, count);
        } else {
            mean = bn->running_mean[c];
            invstd = 1.0 / sqrt((double)bn->running_var[c] + bn->eps);
        }
        normalize_channel(bn, c, n, hw, x, residual, relu, y, mean, invstd);
    }
}

// The statistics a backward normalises with (the batch's in training).
static void stats_of(const batchnorm *bn, bool training, int c, double *mean, double *invstd)
{
    if (training) {
        *mean = bn->batch_mean[c];
        *invstd = bn->batch_invstd[c];
    } else {
        *mean = bn->running_mean[c];
        *invstd = 1.0 / sqrt((double)bn->running_var[c] + bn->eps);
    }
}

// Channel c's parameter gradients and dx, from its sums over the batch of
// `count` values; dz is the gradient at the ReLU's input (or at y).
static void channel_backward(batchnorm *bn, bool training, int c, int n, int hw, const float *x, const float *dz,
                             float *dx, double mean, double invstd, double sum_dz, double sum_dz_dev, double count)
{
    const size_t stride = (size_t)bn->channels * hw, off = (size_t)c * hw;
    bn->bias_grad[c] += (float)sum_dz;
    bn->weight_grad[c] += (float)(sum_dz_dev * invstd);

    // dx = a dz + b (x - mean) + k.  In eval mode mean and var are
    // constants, so only the direct term a dz remains; in training
    // mode the batch statistics depend on x, which gives the other two:
    // dx = gamma invstd (dz - mean(dz) - xhat mean(dz xhat)).
    double a = bn->weight[c] * invstd, b = 0, k = 0;
    if (training) {
        b = -a * invstd * invstd * sum_dz_dev / count;
        k = -a * sum_dz / count;
    }
    const float fa = (float)a, fb = (float)b, fk = (float)k, fmean = (float)mean;
    for (int i = 0; i < n; i++) {
        const float *pd = dz + off + i * stride, *px = x + off + i * stride;
        float *po = dx + off + i * stride;
#pragma omp simd
        for (int j = 0; j < hw; j++)
            po[j] = fa * pd[j] + fb * (px[j] - fmean) + fk;
    }
}

// Backward over a global batch: the gradient sums of every micro-batch of
// every rank, added exactly.
static void global_backward(batchnorm *bn, bool training, int n, int hw, const float *x, const float *y,
                            bool relu, float *dy, float *dx)
{
    const int C = bn->channels, micro = bn->micro;
    const size_t stride = (size_t)C * hw;
    int parts;
    double *ps = micro_parts(bn, n, &parts), *tot = ps + (size_t)parts * 2 * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
        for (int p = 0; p < parts; p++) {
            const size_t off = (size_t)c * hw + (size_t)p * micro * stride;
            double mean, invstd;
            stats_of(bn, training, c, &mean, &invstd);
            channel_grad_sums(dy + off, relu ? y + off : NULL, x + off, micro, hw, stride, mean,
                              &ps[(size_t)p * 2 * C + c], &ps[(size_t)p * 2 * C + C + c]);
        }
    dist_sum_f64(ps, parts, 2 * (size_t)C, 1, tot);
    const double count = (double)n * hw * dist_size();
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mean, invstd;
        stats_of(bn, training, c, &mean, &invstd);
        channel_backward(bn, training, c, n, hw, x, dy, dx, mean, invstd, tot[c], tot[C + c], count);
    }
}

void batchnorm_backward(batchnorm *bn, bool training, int n, int hw, const float *x,
                        const float *y, bool relu, float *dy, float *dx)
{
    if (bn->micro) {
        global_backward(bn, training, n, hw, x, y, relu, dy, dx);
        return;
    }
    const int C = bn->channels;
    const size_t stride = (size_t)C * hw;
    const double count = (double)n * hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * hw;
        double mean, invstd;
        stats_of(bn, training, c, &mean, &invstd);
        double sum_dz, sum_dz_dev;
        channel_grad_sums(dy + off, relu ? y + off : NULL, x + off, n, hw, stride, mean, &sum_dz,
                          &sum_dz_dev);
        channel_backward(bn, training, c, n, hw, x, dy, dx, mean, invstd, sum_dz, sum_dz_dev, count);
    }
}
