// conv_direct: conv2d's direct path (conv.h), for stride-1 convolutions
// that keep the map's size (kernel = 2 pad + 1 > 1: every 3x3 conv of a
// ResNet block but the first of a downsampling stage, and the U-Net
// decoder's).  No im2col matrix: the register-blocked kernels of convk.h
// read each tap straight from a zero-padded copy of a few input rows.
//   forward:  tiles of (mr output channels, nr positions), each summing
//             in_ch k^2 taps;
//   dx:       the same correlation of dy with the kernel flipped and its
//             inputs and outputs swapped;
//   dW:       tiles of (wr output channels, 3 taps), each a dot product of
//             dy's rows with the input's, over one image at a time.
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

// Runs the given kernel set from now on (NULL: convk_selected()'s).
void conv_direct_use_kernels(const convk *k);
const char *conv_direct_kernel_name(void);

// conv.c's workspace, at least `floats` long (it grows, never shrinks).
float *conv_workspace(size_t floats);

#endif
