#include "act.h"

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
