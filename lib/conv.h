// conv: 2-D convolution without bias (every ResNet conv is followed by batch
// norm, which has the shift), NCHW, square kernel, any size, stride and
// padding.
//
// Two paths; each call takes one:
//   direct (conv_direct.h): stride-1 convolutions that keep the map's size
//     (kernel = 2 pad + 1 > 1: every 3x3 conv of a ResNet but the first of
//     a downsampling stage, and the U-Net decoder's), the forward pass on
//     maps 8 or more wide, the backward on maps 16 or more wide.  No
//     im2col matrix: register-blocked kernels (convk.h, AVX-512, AVX2 or
//     portable, chosen at run time) read each tap from a padded copy of a
//     few input rows.
//   im2col + GEMM: everything else (1x1, strided, the stems, small maps).
// Why (build/bench/conv_layers --model c --threads 1 --batch 128, GFLOP/s
// of forward / backward-data / backward-weights, AMD EPYC with AVX2,
// direct against im2col): 32x32 32->32: 76 / 79 / 62 against 44 / 51 /
// 48; 16x16 64->64: 81 / 81 / 50 against 50 / 61 / 53; 8x8 128->128: 63 /
// 62 / 44 against 55 / 64 / 56; 4x4 256->256: 61 / 56 / 30 against 56 /
// 64 / 55.  The direct path computes the 2 pad columns of every padded
// row and drops them (20% of the work 8 wide, 33% 4 wide), and its weight
// gradient sums a few positions per image; on small maps im2col's copies
// cost less than that.  Strided convolutions would need the input split
// into its stride phases first; not done.
//
// The im2col path runs as GEMMs over blocks of im2col columns, each
// block small enough to stay in cache while it is built and multiplied:
// part of one image's output map, or several whole images when the maps
// are small.  The threads take whole blocks, each with single-threaded
// BLIS; the weight gradient, a sum over blocks, is split by rows or
// columns instead, so that its summation order (and every byte) does not
// depend on the thread count.  A 1x1 stride-1 convolution multiplies the
// input directly, with no im2col copy.
//
// Workspace: a module-level buffer (a block per thread, at most 256 MB for
// all threads together, the transposed weight gradient and, for grouped
// small maps, a copy of the output gradient) that grows to the largest
// size asked for and is shared by every conv2d in the process;
// conv_workspace_release() frees it.  So
// calls into this module must not run concurrently (each call is itself
// parallel).
#ifndef MEDSSL_CONV_H
#define MEDSSL_CONV_H

#include <stdbool.h>

#include "param.h"

typedef struct {
    int in_ch, out_ch, kernel, stride, pad;
    float *weight;       // (out_ch, in_ch, kernel, kernel)
    float *weight_grad;  // same shape; backward adds into it
} conv2d;

// Allocates weight and gradient, both zero (the model initialises weights).
void conv2d_init(conv2d *c, int in_ch, int out_ch, int kernel, int stride, int pad);
void conv2d_free(conv2d *c);
// Registers "<prefix>.weight".
void conv2d_register(conv2d *c, param_list *params, const char *prefix);

// Output size along one axis: (in + 2 pad - kernel) / stride + 1.
int conv2d_out_size(const conv2d *c, int in);

// x: (n, in_ch, h, w) -> y: (n, out_ch, oh, ow), overwritten.
void conv2d_forward(const conv2d *c, int n, int h, int w, const float *x, float *y);

// dy: (n, out_ch, oh, ow).  Adds dL/dweight into weight_grad.  dx: (n, in_ch,
// h, w), overwritten, or added to when accumulate_dx (a residual branch's
// gradient already there); NULL when the input needs no gradient.
void conv2d_backward(conv2d *c, int n, int h, int w, const float *x, const float *dy,
                     float *dx, bool accumulate_dx);

void conv_workspace_release(void);

// Which path runs a convolution the direct path supports: auto (the
// default: by the measured rule above), or always one of the two, for
// tests and benchmarks.
typedef enum { CONV_PATH_AUTO, CONV_PATH_IM2COL, CONV_PATH_DIRECT } conv_path;
void conv_set_path(conv_path p);

// The direct path's kernel set ("avx512", "avx2", "generic"; convk.h).
const char *conv_kernels_name(void);

#endif
