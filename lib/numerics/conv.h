// conv: 2-D convolution without bias (every ResNet conv is followed by batch
// norm, which has the shift), NCHW, square kernel, any size, stride and
// padding.
//
// Three paths; each call takes one (conv_set_path below forces one):
//   padded rows (conv_direct.h): stride-1 convs that keep the map's size
//     (kernel = 2 pad + 1 > 1: every 3x3 conv of a ResNet but the first
//     of a downsampling stage, and the U-Net decoder's) on maps 16 or more
//     wide.  No im2col matrix: register-blocked kernels (convk.h, AVX-512,
//     AVX2 or portable, chosen at run time) read each tap from a padded
//     copy of a few input rows, NCHW.
//   channels last (conv_direct.h): the same layers on maps under 16 wide;
//     and the forward pass and weight gradient of strided convs with a
//     kernel > 1 (their dx is im2col's) but the weight gradient of a conv
//     on fewer than 8 channels (the stems).  Kernels of the same sets, on
//     a padded channels-last copy of a group of images.
//   im2col + GEMM: the rest (1x1 convs, the stems' backward).
// Why: GFLOP/s of forward / backward-data / backward-weights, AMD EPYC
// with AVX2, one thread, build/bench/conv_layers --model c --threads 1
// --batch 128 (and --model r18 for the stem), padded rows; channels last;
// im2col:
//   32x32 32->32:   73/72/71;  74/67/57;  42/47/45
//   16x16 64->64:   76/73/69;  81/76/63;  49/56/52
//   8x8 128->128:   51/59/50;  87/69/60;  46/57/51
//   4x4 256->256:   38/72/26;  84/74/53;  45/49/45
//   32x32 3x3 s2 32->64: channels last 61/-/45 against im2col 41/-/42;
//   8x8 3x3 s2 128->256: 77/-/51 against 48/-/50; 1x1 s2: level (within
//   noise); 7x7 s2 stem 3->64 at 64: 66/-/28 against 47/-/44.
// (SGEMM 1024^3 on the same thread: 82-84.)  Padded rows compute the 2 pad
// columns of every padded row and drop them (6% of the work 32 wide, 33% 4
// wide); channels last wastes nothing but pays a layout copy per call,
// and its weight gradient tiles need 6 (AVX2) or 12 (AVX-512) input
// channels to be full.
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

// Which path runs: auto (the default: by the measured rule above), or
// always the one given, where it can (im2col runs everything; rows only
// the convs that keep the size, falling back to im2col; gather every conv
// but 1x1 stride 1).  The environment variable MEDSSL_CONV_PATH (auto,
// im2col, rows, gather) sets it at the first convolution, unless
// conv_set_path was called first; an unknown value is an error.
typedef enum { CONV_PATH_AUTO, CONV_PATH_IM2COL, CONV_PATH_ROWS, CONV_PATH_GATHER } conv_path;
void conv_set_path(conv_path p);

// The direct path's kernel set ("avx512", "avx2", "generic"; convk.h).
const char *conv_kernels_name(void);

#endif
