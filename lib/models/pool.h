// pool: max pooling (any square window, stride, padding; ResNet's stem uses
// 3x3, stride 2, padding 1) and global average pooling (the ResNet's last
// feature map to its feature vector).  NCHW.
#ifndef MEDSSL_POOL_H
#define MEDSSL_POOL_H

// Output size along one axis: (in + 2 pad - kernel) / stride + 1.
int maxpool2d_out_size(int in, int kernel, int stride, int pad);

// x: (n, c, h, w) -> y: (n, c, oh, ow).  Padding never wins (pad <= kernel/2,
// as PyTorch requires, so every window holds a real pixel).  NaN wins, as
// in PyTorch; among equal maxima the first in row-major window order wins.
void maxpool2d_forward(int n, int c, int h, int w, int kernel, int stride, int pad,
                       const float *x, float *y);

// dx (n, c, h, w), overwritten: each output's gradient goes to the pixel
// that won its window (found again from x, with the same rule as forward).
void maxpool2d_backward(int n, int c, int h, int w, int kernel, int stride, int pad,
                        const float *x, const float *dy, float *dx);

// x: (n, c, hw) -> y: (n, c), the mean of each plane.
void avgpool_global_forward(int n, int c, int hw, const float *x, float *y);
// dy: (n, c) -> dx: (n, c, hw), overwritten with dy / hw.
void avgpool_global_backward(int n, int c, int hw, const float *dy, float *dx);

#endif
