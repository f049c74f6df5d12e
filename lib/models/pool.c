#include "pool.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
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

// A window: rows [y0, y1), columns [x0, x1), clipped to the plane.
typedef struct {
    int y0, y1, x0, x1;
} window;

static window window_at(int h, int w, int oy, int ox, int kernel, int stride, int pad)
{
    window r = {oy * stride - pad, 0, ox * stride - pad, 0};
    r.y1 = r.y0 + kernel < h ? r.y0 + kernel : h;
    r.x1 = r.x0 + kernel < w ? r.x0 + kernel : w;
    if (r.y0 < 0)
        r.y0 = 0;
    if (r.x0 < 0)
        r.x0 = 0;
    return r;
}

// Index in the plane of the winner of window r.  The rule is PyTorch's:
// start from the first pixel, take any later pixel that is greater or NaN.
// For planes holding a NaN or a -0.0; the others take the fast paths below.
static int window_argmax(const float *plane, int w, window r)
{
    int best = r.y0 * w + r.x0;
    float best_value = plane[best];
    for (int iy = r.y0; iy < r.y1; iy++)
        for (int ix = r.x0; ix < r.x1; ix++) {
            float v = plane[iy * w + ix];
            if (v > best_value || isnan(v)) {
                best_value = v;
                best = iy * w + ix;
            }
        }
    return best;
}

// A plane the fast paths below would get wrong: one holding a NaN (which
// must win), or a -0.0 (the fast forward takes the maximum column by column,
// so between -0.0 and +0.0 it may return the other sign than the first in
// row-major order).  Integer tests on the bits, which vectorise.
static bool plane_needs_exact_rule(const float *plane, size_t count)
{
    uint32_t found = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, plane + i, sizeof bits);
        found |= ((bits & 0x7fffffffu) > 0x7f800000u) | (bits == 0x80000000u);
    }
    return found;
}

// Without NaN the window maxima are separable: column_max[x] = the maximum
// of column x over rows [y0, y1) (a loop the compiler vectorises), then
// each output takes the maximum of its columns.  This is the whole cost of
// max pooling on the stem's 112x112 maps, so it pays to be quick.
static void column_max(const float *plane, int w, int y0, int y1, float *column)
{
    memcpy(column, plane + (size_t)y0 * w, (size_t)w * sizeof(float));
    for (int iy = y0 + 1; iy < y1; iy++) {
        const float *row = plane + (size_t)iy * w;
        for (int ix = 0; ix < w; ix++)
            column[ix] = row[ix] > column[ix] ? row[ix] : column[ix];
    }
}

static float range_max(const float *column, int x0, int x1)
{
    float m = column[x0];
    for (int ix = x0 + 1; ix < x1; ix++)
        m = column[ix] > m ? column[ix] : m;
    return m;
}

void maxpool2d_forward(int n, int c, int h, int w, int kernel, int stride, int pad,
                       const float *x, float *y)
{
    check_maxpool(n, c, h, w, kernel, stride, pad);
    const int oh = maxpool2d_out_size(h, kernel, stride, pad);
    const int ow = maxpool2d_out_size(w, kernel, stride, pad);
#pragma omp parallel
    {
        float *column = xmalloc((size_t)w * sizeof(float));
#pragma omp for schedule(static)
        for (int plane = 0; plane < n * c; plane++) {
            const float *src = x + (size_t)plane * h * w;
            float *dst = y + (size_t)plane * oh * ow;
            bool exact = plane_needs_exact_rule(src, (size_t)h * w);
            for (int oy = 0; oy < oh; oy++) {
                window rows = window_at(h, w, oy, 0, kernel, stride, pad);
                if (!exact)
                    column_max(src, w, rows.y0, rows.y1, column);
                for (int ox = 0; ox < ow; ox++) {
                    window r = window_at(h, w, oy, ox, kernel, stride, pad);
                    dst[oy * ow + ox] = exact ? src[window_argmax(src, w, r)] : range_max(column, r.x0, r.x1);
                }
            }
        }
        free(column);
    }
}

void maxpool2d_backward(int n, int c, int h, int w, int kernel, int stride, int pad,
                        const float *x, const float *dy, float *dx)
{
    check_maxpool(n, c, h, w, kernel, stride, pad);
    const int oh = maxpool2d_out_size(h, kernel, stride, pad);
    const int ow = maxpool2d_out_size(w, kernel, stride, pad);
    // One thread per plane; within a plane the outputs add in a fixed order.
#pragma omp parallel
    {
        float *column = xmalloc((size_t)w * sizeof(float));
#pragma omp for schedule(static)
        for (int plane = 0; plane < n * c; plane++) {
            const float *src = x + (size_t)plane * h * w;
            const float *g = dy + (size_t)plane * oh * ow;
            float *dst = dx + (size_t)plane * h * w;
            memset(dst, 0, (size_t)h * w * sizeof(float));
            bool exact = plane_needs_exact_rule(src, (size_t)h * w);
            for (int oy = 0; oy < oh; oy++) {
                window rows = window_at(h, w, oy, 0, kernel, stride, pad);
                if (!exact)
                    column_max(src, w, rows.y0, rows.y1, column);
                for (int ox = 0; ox < ow; ox++) {
                    window r = window_at(h, w, oy, ox, kernel, stride, pad);
                    int winner;
                    if (exact) {
                        winner = window_argmax(src, w, r);
                    } else {
                        // Only strictly greater pixels replace the first, so
                        // the winner is the first pixel equal to the maximum:
                        // scanned backwards without branches (ReLU's zeros
                        // make ties common, and branches mispredict).
                        float m = range_max(column, r.x0, r.x1);
                        winner = 0;
                        for (int iy = r.y1 - 1; iy >= r.y0; iy--)
                            for (int ix = r.x1 - 1; ix >= r.x0; ix--)
                                winner = src[iy * w + ix] == m ? iy * w + ix : winner;
                    }
                    dst[winner] += g[oy * ow + ox];
                }
            }
        }
        free(column);
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
