// conv_direct: conv2d's two direct paths (conv.h says which runs when).
// No im2col matrix: the register-blocked kernels of convk.h read each tap
// straight from a zero-padded copy of the input.
// Padded rows (NCHW), for stride-1 convs that keep the map's size (kernel
// = 2 pad + 1 > 1):
//   forward:  tiles of (mr output channels, nr positions of the padded
//             rows), each summing in_ch k^2 taps;
//   dx:       the same correlation of dy with the kernel flipped and its
//             inputs and outputs swapped;
//   dW:       tiles of (wr output channels, 3 taps), each a dot product of
//             dy's rows with the input's over a group of images.
// Channels last, for small maps and strided convs:
//   forward and dx: gather tiles of (gmr output positions, gnr output
//             channels), each position's row its own pointer;
//   dW:       gather tiles of (gmr input channels, gnr output channels) for
//             one tap, summed over the positions of a group of images.
// Internal to conv.c and conv_direct.c; the workspace is conv.c's.
#ifndef MEDSSL_CONV_DIRECT_H
#define MEDSSL_CONV_DIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "conv.h"
#include "convk.h"

// Whether the direct path can run this layer (at any input size).
bool conv_direct_supports(const conv2d *c);

// As conv2d_forward and conv2d_backward (conv.h), for a layer it supports.
void conv_direct_forward(const conv2d *c, int n, int h, int w, const float *x, float *y);
void conv_direct_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                          float *dx, bool accumulate_dx);

// The channels-last path: the forward pass and the weight gradient of any
// convolution, the backward (dx too) of the layers conv_direct_supports.
void conv_gather_forward(const conv2d *c, int n, int h, int w, const float *x, float *y);
void conv_gather_weight_grad(conv2d *c, int n, int h, int w, const float *x, const float *dy);
void conv_gather_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                          float *dx, bool accumulate_dx);

// Runs the given kernel set from now on (NULL: convk_selected()'s).
void conv_direct_use_kernels(const convk *k);
const char *conv_direct_kernel_name(void);

// conv.c's workspace, at least `floats` long (it grows, never shrinks).
float *conv_workspace(size_t floats);

#endif
