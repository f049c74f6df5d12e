#include "linear.h"

#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "util.h"

void linear_init(linear *l, int in_features, int out_features, bool has_bias)
{
    if (in_features < 1 || out_features < 1)
        die("linear", "bad shape: in %d, out %d", in_features, out_features);
    l->in_features = in_features;
    l->out_features = out_features;
    size_t bytes = (size_t)out_features * in_features * sizeof(float);
    l->weight = xaligned_alloc(bytes);
    l->weight_grad = xaligned_alloc(bytes);
    memset(l->weight, 0, bytes);
    memset(l->weight_grad, 0, bytes);
    l->bias = l->bias_grad = NULL;
    if (has_bias) {
        bytes = (size_t)out_features * sizeof(float);
        l->bias = xaligned_alloc(bytes);
        l->bias_grad = xaligned_alloc(bytes);
        memset(l->bias, 0, bytes);
        memset(l->bias_grad, 0, bytes);
    }
}

void linear_free(linear *l)
{
    free(l->weight);
    free(l->weight_grad);
    free(l->bias);
    free(l->bias_grad);
    memset(l, 0, sizeof *l);
}

void linear_register(linear *l, param_list *params, const char *prefix)
{
    int64_t shape[2] = {l->out_features, l->in_features};
    param_add(params, l->weight, l->weight_grad, 2, shape, false, "%s.weight", prefix);
    if (l->bias)
        param_add(params, l->bias, l->bias_grad, 1, shape, true, "%s.bias", prefix);
}

void linear_forward(const linear *l, int n, const float *x, float *y)
{
    const int in = l->in_features, out = l->out_features;
    if (l->bias) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * out, l->bias, (size_t)out * sizeof(float));
    }
    gemm_f32(false, true, n, out, in, 1.0f, x, in, l->weight, in, l->bias ? 1.0f : 0.0f, y,
             out);
}

void linear_backward(linear *l, int n, const float *x, const float *dy, float *dx)
{
    const int in = l->in_features, out = l->out_features;
    // dW (out, in) += dy^T (out, n) x (n, in)
    gemm_f32(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, l->weight_grad, in);
    if (l->bias) {
        // One output per thread, summed over the batch in order.
#pragma omp parallel for schedule(static)
        for (int o = 0; o < out; o++) {
            double sum = 0;
            for (int i = 0; i < n; i++)
                sum += dy[(size_t)i * out + o];
            l->bias_grad[o] += (float)sum;
        }
    }
    if (dx)
        gemm_f32(false, false, n, in, out, 1.0f, dy, out, l->weight, in, 0.0f, dx, in);
}
