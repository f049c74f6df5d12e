// bn: batch normalisation over channels, as PyTorch's BatchNorm2d/1d, with
// an optional residual add and ReLU fused into the same pass:
//
//   y = [relu]( gamma * (x - mean) / sqrt(var + eps) + beta [+ residual] )
//
// Training mode normalises with the batch's statistics (biased variance)
// and updates the running statistics with momentum 0.1 (running_var gets
// the unbiased variance); eval mode normalises with the running statistics.
//
// Layout: x (n, channels, hw) with hw = H * W for 2-d (NCHW) and hw = 1 for
// 1-d (a projection head's (N, C)).
//
// Work is split over channels and every per-channel sum runs in a fixed
// order, in double, so results do not depend on the thread count.
//
// Global batch norm (micro > 0): the batch is this rank's share of a global
// batch (dist.h), whole micro-batches of `micro` images.  Each channel's
// sums are taken per micro-batch and added exactly over every micro-batch
// of every rank, so the statistics, the gradients of gamma and beta and dx
// are those of the global batch and the same bytes whatever the number of
// ranks (one process included).  The sums are then shifted by the channel's
// running mean (the same on every rank) instead of its first value.  Every
// call is then collective.
#ifndef MEDSSL_BN_H
#define MEDSSL_BN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "param.h"

typedef struct {
    int channels;
    float momentum, eps;         // 0.1, 1e-5
    float *weight, *bias;        // gamma, beta: (channels)
    float *weight_grad, *bias_grad;
    // Buffers, not parameters: checkpoints keep them, optimisers never see
    // them (torchvision names: running_mean, running_var, num_batches_tracked).
    float *running_mean, *running_var;
    int64_t num_batches_tracked;
    // The last training forward's batch statistics, for backward.
    float *batch_mean, *batch_invstd;
    int micro;                   // images per micro-batch of a global batch; 0: none
    double *parts;               // micro > 0: (parts + 1, 2 channels) partial sums, then totals
    size_t parts_cap;
} batchnorm;

// gamma 1, beta 0, running mean 0, running var 1, as PyTorch.
void batchnorm_init(batchnorm *bn, int channels);
void batchnorm_free(batchnorm *bn);
// Registers "<prefix>.weight" and "<prefix>.bias", both without weight decay.
void batchnorm_register(batchnorm *bn, param_list *params, const char *prefix);

// x, y, residual: (n, channels, hw).  residual may be NULL.  y may be x
// (in place) only when no backward follows: backward needs x.
void batchnorm_forward(batchnorm *bn, bool training, int n, int hw, const float *x,
                       const float *residual, bool relu, float *y);

// Gradients for the forward with the same arguments.  x is that forward's
// input; y its output (read only when relu, for the ReLU mask; else NULL).
// dy (n, channels, hw) is the gradient at y; with relu it is overwritten
// with the gradient at the ReLU's input, which is also the residual's
// gradient.  Adds into weight_grad and bias_grad; dx is overwritten and may
// be dy itself when the residual's gradient is not needed.
void batchnorm_backward(batchnorm *bn, bool training, int n, int hw, const float *x,
                        const float *y, bool relu, float *dy, float *dx);

#endif
