// act: the layers without weights: element-wise ReLU and residual add (for
// places where they are not fused into batch norm, bn.h), sigmoid, and the
// channel-wise operations of an encoder-decoder (PCRL's U-Net decoder):
// concatenation of skip connections and gating of channels by a per-image
// vector.
#ifndef MEDSSL_ACT_H
#define MEDSSL_ACT_H

#include <stddef.h>

// y = max(x, 0); y may be x.
void relu_forward(size_t n, const float *x, float *y);
// dx = dy where y > 0, else 0; y is the forward's output; dx may be dy.
void relu_backward(size_t n, const float *y, const float *dy, float *dx);
// y = a + b; y may be a or b.  Its backward is the identity for both inputs.
void add_forward(size_t n, const float *a, const float *b, float *y);

// y = 1 / (1 + exp(-x)); y may be x.
void sigmoid_forward(size_t n, const float *x, float *y);
// dx = dy y (1 - y) from the forward's output y; dx may be dy.
void sigmoid_backward(size_t n, const float *y, const float *dy, float *dx);

// a: (n, ca, h, w), b: (n, cb, h, w) -> y: (n, ca + cb, h, w), a's channels
// first (torch.cat(dim=1)).
void concat_forward(int n, int ca, int cb, size_t hw, const float *a, const float *b, float *y);
// dy: (n, ca + cb, h, w) -> da, db (either may be NULL), overwritten.
void concat_backward(int n, int ca, int cb, size_t hw, const float *dy, float *da, float *db);

// A per-channel bias after a convolution without one (conv.h): y: (n, c, h, w)
// += b (c), in place.
void bias_forward(int n, int c, size_t hw, const float *b, float *y);
// db (c) += the sum of dy over images and map, in double in a fixed order.
void bias_backward(int n, int c, size_t hw, const float *dy, float *db);

// x: (n, c, h, w), g: (n, c) -> y = x * g broadcast over the map; y may be x.
void gate_forward(int n, int c, size_t hw, const float *x, const float *g, float *y);
// dx = dy g (overwritten; NULL: none) and dg = sum over the map of dy x
// (overwritten; NULL: none), summed in double in a fixed order.
void gate_backward(int n, int c, size_t hw, const float *x, const float *g, const float *dy, float *dx,
                   float *dg);

#endif
