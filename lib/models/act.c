#include "act.h"

#include <math.h>
#include <string.h>

// Element-wise: any split over threads gives the same bits.

// NaN passes through (as in PyTorch), so a diverged run shows in the loss.
void relu_forward(size_t n, const float *x, float *y)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] < 0 ? 0 : x[i];
}

void relu_backward(size_t n, const float *y, const float *dy, float *dx)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        dx[i] = y[i] > 0 ? dy[i] : 0;
}

void add_forward(size_t n, const float *a, const float *b, float *y)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void sigmoid_forward(size_t n, const float *x, float *y)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void sigmoid_backward(size_t n, const float *y, const float *dy, float *dx)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void concat_forward(int n, int ca, int cb, size_t hw, const float *a, const float *b, float *y)
{
    size_t sa = (size_t)ca * hw, sb = (size_t)cb * hw;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        memcpy(y + i * (sa + sb), a + i * sa, sa * sizeof *y);
        memcpy(y + i * (sa + sb) + sa, b + i * sb, sb * sizeof *y);
    }
}

void concat_backward(int n, int ca, int cb, size_t hw, const float *dy, float *da, float *db)
{
    size_t sa = (size_t)ca * hw, sb = (size_t)cb * hw;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        if (da)
            memcpy(da + i * sa, dy + i * (sa + sb), sa * sizeof *da);
        if (db)
            memcpy(db + i * sb, dy + i * (sa + sb) + sa, sb * sizeof *db);
    }
}

void gate_forward(int n, int c, size_t hw, const float *x, const float *g, float *y)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        float s = g[p];
        const float *xp = x + p * hw;
        float *yp = y + p * hw;
        for (size_t i = 0; i < hw; i++)
            yp[i] = xp[i] * s;
    }
}

void gate_backward(int n, int c, size_t hw, const float *x, const float *g, const float *dy, float *dx,
                   float *dg)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        const float *xp = x + p * hw, *dyp = dy + p * hw;
        if (dg) {
            double sum = 0;
            for (size_t i = 0; i < hw; i++)
                sum += (double)dyp[i] * xp[i];
            dg[p] = (float)sum;
        }
        if (dx) {
            float s = g[p];
            float *dxp = dx + p * hw;
            for (size_t i = 0; i < hw; i++)
                dxp[i] = dyp[i] * s;
        }
    }
}

void bias_forward(int n, int c, size_t hw, const float *b, float *y)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        float s = b[p % c];
        float *yp = y + p * hw;
        for (size_t i = 0; i < hw; i++)
            yp[i] += s;
    }
}

void bias_backward(int n, int c, size_t hw, const float *dy, float *db)
{
#pragma omp parallel for schedule(static)
    for (int k = 0; k < c; k++) {
        double sum = 0;
        for (int i = 0; i < n; i++) {
            const float *dyp = dy + ((size_t)i * c + k) * hw;
            for (size_t j = 0; j < hw; j++)
                sum += dyp[j];
        }
        db[k] += (float)sum;
    }
}
