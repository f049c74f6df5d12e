// linear: fully connected layer y = x W^T (+ b), weights (out, in) as
// PyTorch's nn.Linear; classifier heads and projection heads.
#ifndef MEDSSL_LINEAR_H
#define MEDSSL_LINEAR_H

#include <stdbool.h>

#include "param.h"

typedef struct {
    int in_features, out_features;
    float *weight, *weight_grad;  // (out_features, in_features)
    float *bias, *bias_grad;      // (out_features), NULL without bias
} linear;

// Allocates weights (and bias when has_bias), all zero.
void linear_init(linear *l, int in_features, int out_features, bool has_bias);
void linear_free(linear *l);
// Registers "<prefix>.weight" and "<prefix>.bias" (the bias without weight decay).
void linear_register(linear *l, param_list *params, const char *prefix);

// x: (n, in_features) -> y: (n, out_features), overwritten.
void linear_forward(const linear *l, int n, const float *x, float *y);
// dy: (n, out_features).  Adds into weight_grad (and bias_grad).  dx: (n,
// in_features), overwritten; NULL when the input needs no gradient.
void linear_backward(linear *l, int n, const float *x, const float *dy, float *dx);

#endif
