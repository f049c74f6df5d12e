// upsample: nearest-neighbour upsampling by 2 (torch's
// F.interpolate(scale_factor=2, mode="nearest")), the step of each block of
// PCRL's U-Net decoder before it concatenates the encoder's skip.
#ifndef MEDSSL_UPSAMPLE_H
#define MEDSSL_UPSAMPLE_H

// x: (n, c, h, w) -> y: (n, c, 2h, 2w), y[.., 2i + a, 2j + b] = x[.., i, j].
void upsample2x_forward(int n, int c, int h, int w, const float *x, float *y);
// dy: (n, c, 2h, 2w) -> dx: (n, c, h, w), the sum of each 2x2 block
// (overwritten).
void upsample2x_backward(int n, int c, int h, int w, const float *dy, float *dx);

#endif
