// act: element-wise ReLU and residual add, for places where they are not
// fused into batch norm (bn.h), e.g. a projection head without BN.
#ifndef MEDSSL_ACT_H
#define MEDSSL_ACT_H

#include <stddef.h>

// y = max(x, 0); y may be x.
void relu_forward(size_t n, const float *x, float *y);
// dx = dy where y > 0, else 0; y is the forward's output; dx may be dy.
void relu_backward(size_t n, const float *y, const float *dy, float *dx);
// y = a + b; y may be a or b.  Its backward is the identity for both inputs.
void add_forward(size_t n, const float *a, const float *b, float *y);

#endif
