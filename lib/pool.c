#include "pool.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "util.h"

int maxpool2d_out_size(int in, int kernel, int stride, int pad)
{
    return (in + 2 * pad - kernel) / stride + 1;
}

static void check_maxpool(int n, int c, int h, int w, int kernel, int stride, int pad)
{
    if (kernel < 1 || stride < 1 || pad < 0 || 2 * pad > kernel)
        die("maxpool2d", "bad window: kernel %d, stride %d, pad %d (need pad <= kernel/2)",
            kernel, stride, pad);
    if (n < 1 || c < 1 || maxpool2d_out_size(h, kernel, stride, pad) < 1 ||
        maxpool2d_out_size(w, kernel, stride, pad) < 1)
        die("maxpool2d", "input (%d, %d, %d, %d) too small for kernel %d", n, c, h, w, kernel);
}

// Index in the plane of the winner of output (oy, ox)'s window.  The rule
// is PyTorch's: start from the first pixel, take any later pixel that is
// greater or NaN.
static int window_argmax(const float *plane, int h, int w, int oy, int ox, int kernel,
                         int stride, int pad)
{
    int y0 = oy * stride - pad, x0 = ox * stride - pad;
    int y1 = y0 + kernel < h ? y0 + kernel : h, x1 = x0 + kernel < w ? x0 + kernel : w;
    if (y0 < 0)
        y0 = 0;
    if (x0 < 0)
        x0 = 0;
    int best = y0 * w + x0;
    float best_value = plane[best];
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            float v = plane[iy * w + ix];
            if (v > best_value || isnan(v)) {
                best_value = v;
                best = iy * w + ix;
            }
        }
    return best;
}

void maxpool2d_forward(int n, int c, int h, int w, int kernel, int stride, int pad,
                       const float *x, float *y)
{
    check_maxpool(n, c, h, w, kernel, stride, pad);
    const int oh = maxpool2d_out_size(h, kernel, stride, pad);
    const int ow = maxpool2d_out_size(w, kernel, stride, pad);
#pragma omp parallel for schedule(static)
    for (int plane = 0; plane < n * c; plane++) {
        const float *src = x + (size_t)plane * h * w;
        float *dst = y + (size_t)plane * oh * ow;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                dst[oy * ow + ox] = src[window_argmax(src, h, w, oy, ox, kernel, stride, pad)];
    }
}

void maxpool2d_backward(int n, int c, int h, int w, int kernel, int stride, int pad,
                        const float *x, const float *dy, float *dx)
{
    check_maxpool(n, c, h, w, kernel, stride, pad);
    const int oh = maxpool2d_out_size(h, kernel, stride, pad);
    const int ow = maxpool2d_out_size(w, kernel, stride, pad);
    // One thread per plane; within a plane the outputs add in a fixed order.
#pragma omp parallel for schedule(static)
    for (int plane = 0; plane < n * c; plane++) {
        const float *src = x + (size_t)plane * h * w;
        const float *g = dy + (size_t)plane * oh * ow;
        float *dst = dx + (size_t)plane * h * w;
        memset(dst, 0, (size_t)h * w * sizeof(float));
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                dst[window_argmax(src, h, w, oy, ox, kernel, stride, pad)] += g[oy * ow + ox];
    }
}

void avgpool_global_forward(int n, int c, int hw, const float *x, float *y)
{
    enum { lanes = 8 };
#pragma omp parallel for schedule(static)
    for (int plane = 0; plane < n * c; plane++) {
        const float *p = x + (size_t)plane * hw;
        // Interleaved double partial sums: fast, and a fixed order.
        double acc[lanes] = {0}, tail = 0;
        int j = 0;
        for (; j + lanes <= hw; j += lanes)
            for (int l = 0; l < lanes; l++)
                acc[l] += p[j + l];
        for (; j < hw; j++)
            tail += p[j];
        double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                     ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
        y[plane] = (float)(sum / hw);
    }
}

void avgpool_global_backward(int n, int c, int hw, const float *dy, float *dx)
{
#pragma omp parallel for schedule(static)
    for (int plane = 0; plane < n * c; plane++) {
        float g = dy[plane] / (float)hw;
        float *p = dx + (size_t)plane * hw;
        for (int j = 0; j < hw; j++)
            p[j] = g;
    }
}
