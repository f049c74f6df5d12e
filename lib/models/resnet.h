// resnet: the ResNet encoders (18, 34, 50, 101, 152) of torchvision's layout,
// with SimCLR's width multipliers, from an image batch to the pooled feature
// vector, with explicit forward and backward.
//
//   stem    large: conv 7x7 s2 p3, BN, ReLU, maxpool 3x3 s2 p1 (ImageNet)
//           small: conv 3x3 s1 p1, BN, ReLU, no pool (CIFAR-sized inputs)
//   layer1..layer4: basic blocks (18, 34) or bottlenecks (50+, stride on the
//           3x3 conv as torchvision), the first block of a layer downsampling
//           through conv1x1 + BN when its stride or channel count changes
//   global average pool -> features (n, feature_dim)
//
// Widths: the stem has round(64 w) channels and layer k's blocks
// round(64 2^(k-1) w) (x4 at a bottleneck's output), each at least 1.
// Parameters are registered under torchvision's names ("conv1.weight",
// "layer1.0.bn2.bias", "layer2.0.downsample.0.weight") in torchvision's
// order; a classifier or projection head is a separate module (linear.h).
//
// The model keeps every activation backward needs in one arena sized for the
// largest batch seen, and three gradient buffers for backward; nothing is
// allocated per step once that size is reached.
#ifndef MEDSSL_RESNET_H
#define MEDSSL_RESNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bn.h"
#include "conv.h"
#include "param.h"

typedef enum { RESNET_STEM_LARGE, RESNET_STEM_SMALL } resnet_stem;

typedef struct {
    int depth;          // 18, 34, 50, 101 or 152
    double width;       // channel multiplier: 1, 2, 4, or 0.5, 0.25, ...
    resnet_stem stem;
    int in_ch;          // image channels: 1 (grey) or 3
} resnet_config;

// A basic block has two convs, a bottleneck three; the last BN adds the
// shortcut and applies the ReLU.
typedef struct {
    int nconv;
    conv2d conv[3];
    batchnorm bn[3];
    bool has_downsample;
    conv2d down_conv;
    batchnorm down_bn;
    // Set by forward for the current batch: input and output map sizes,
    // spatial size after each conv, and the activations (in the arena).
    int in_h, in_w, out_h, out_w;
    int conv_h[3], conv_w[3];
    float *conv_out[3];   // (n, conv[i].out_ch, conv_h[i], conv_w[i]): BN inputs
    float *bn_out[3];     // ReLU(BN(conv_out)); bn_out[nconv-1] is the block's output
    float *down_out, *down_bn_out;
} resnet_block;

typedef struct {
    resnet_config cfg;
    conv2d conv1;
    batchnorm bn1;
    int nblocks;
    resnet_block *blocks;
    int feature_dim;
    int stage_last_block[4];   // the last block of layer1..layer4
    param_list params;
    // The last forward's batch (backward repeats its mode and shapes) and
    // its input, which backward reads (the caller keeps it until then).
    bool training;
    int n, h, w;
    const float *input;
    // Stem activations, in the arena.
    int stem_h, stem_w, pool_h, pool_w;
    float *stem_conv, *stem_act, *stem_pool;
    float *arena;
    size_t arena_floats;
    float *grad[3];       // backward's gradient buffers, grad_floats each
    size_t grad_floats;
    // A global batch's micro-batches (dist.h): with micro > 0 images, each
    // conv's weight gradient is taken per micro-batch and the partials are
    // added exactly over every rank; model_set_micro sets it (and the batch
    // norms').  0: one sum over the batch.
    int micro;
    float *partials;      // (micro-batches, the largest conv's weights)
    size_t partials_floats;
} resnet;

// Builds the model with PyTorch's initial values (conv weights Kaiming
// normal, fan_out, gain sqrt 2; BN gamma 1, beta 0) drawn from `seed`.
// Dies on an unsupported depth, width or channel count.
void resnet_init(resnet *m, const resnet_config *cfg, uint64_t seed);
// The trainable parameters resnet_init would register (conv weights, BN
// weights and biases), counted without allocating: a double, since a
// hostile configuration may overflow any integer type.
double resnet_param_count(const resnet_config *cfg);
void resnet_free(resnet *m);

// Activation memory (bytes) a forward at this batch shape needs, plus the
// gradient buffers of backward.  Not counted: the weights and gradients
// (4 bytes each per parameter) and conv's shared workspace (at most 64 MiB,
// or one image's im2col matrix when that is larger).
size_t resnet_memory_bytes(const resnet *m, int n, int h, int w);

// x: (n, in_ch, h, w) -> features: (n, feature_dim).  training: BN uses
// batch statistics and updates its running statistics; otherwise it uses
// the running statistics.  x must stay unchanged until resnet_backward.
void resnet_forward(resnet *m, bool training, int n, int h, int w, const float *x,
                    float *features);

// dfeatures: (n, feature_dim), the gradient at the last forward's features.
// Adds into every parameter's gradient (zero them first: param_zero_grad).
// The input gets no gradient.
void resnet_backward(resnet *m, const float *dfeatures);

// ---- the stages, for a decoder (unet.h) ------------------------------------
//
// Stage 0 is the stem's output before the max pool (after conv1, bn1 and
// ReLU), stages 1-4 the outputs of layer1..layer4.

// Stage s's channels and, for an h x w input, its map size.
void resnet_stage_shape(const resnet_config *cfg, int stage, int h, int w, int *c, int *oh, int *ow);
// Stage s's output of the last forward: (n, c, oh, ow), in the arena.
const float *resnet_stage_output(const resnet *m, int stage);
// resnet_backward with gradients added at the stage outputs as well:
// dstages[s] (n, c, oh, ow) of stage s, or NULL for none; dfeatures may be
// NULL (no gradient through the pooled features).
void resnet_backward_stages(resnet *m, const float *dfeatures, const float *const dstages[5]);

#endif
