// imgops: the pixel kernels of augment(1): antialiased crop-and-resize
// (optionally rotated), SimCLR's colour operations (brightness, contrast,
// saturation, hue, greyscale), separable Gaussian blur, Gaussian noise, and
// conversion to the output (normalised f32 or u8).
//
// Working images are planar float (C, H, W), C = 1 or 3, values in [0, 1];
// sources are the u8 or u16 tensors of a stream record, read in place (their
// data may be unaligned: 16-bit values are fetched with memcpy).  Every
// kernel does its arithmetic in a fixed order, so its result does not depend
// on the thread that runs it (nor on the vector width the compiler chose).
#ifndef MEDSSL_IMGOPS_H
#define MEDSSL_IMGOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

// A source image: (channels, height, width) of u8 (maxval 255) or u16
// (maxval 65535), C order.
typedef struct {
    int channels, height, width;
    bool u16;
    const void *data;
} img_src;

// Scratch memory that a thread reuses from image to image (grown on demand,
// never shrunk).  Zero-initialise; release with img_workspace_free.
typedef struct {
    void *p;
    size_t cap;
} img_scratch;
typedef struct {
    img_scratch region, pass, inter, taps_x, taps_y, blur;
    img_scratch view;   // for callers: a whole working image
} img_workspace;
void img_workspace_free(img_workspace *ws);
// At least `bytes` of 64-byte aligned memory (the old contents are lost).
void *img_scratch_get(img_scratch *s, size_t bytes);

// out: (C, out_h, out_w) in [0, 1] from the box [x0, x1) x [y0, y1) of src
// (input pixel units, fractional allowed; pixel i covers [i, i + 1)).
// Resampling is PIL's "bilinear": a triangle filter that widens with the
// downscaling factor (so a 512-pixel crop shrunk to 32 does not alias),
// taps clamped to the image and renormalised; an output whose taps all fall
// outside the image is 0.  hflip/vflip mirror the output.
void img_crop_resize(const img_src *src, double x0, double y0, double x1, double y1,
                     int out_w, int out_h, bool hflip, bool vflip, float *out,
                     img_workspace *ws);

// Like img_crop_resize with the box (centre cx, cy; size w x h) turned by
// angle_deg (counter-clockwise on screen) around its centre.  Parts of the
// turned box outside the image are 0.  The box is first resampled,
// antialiased, to a grid no coarser than the output, then sampled
// bilinearly along the turned axes.
void img_crop_rotate_resize(const img_src *src, double cx, double cy, double w, double h,
                            double angle_deg, int out_size, bool hflip, bool vflip,
                            float *out, img_workspace *ws);

// Colour operations on x: (C, n), in place, results clipped to [0, 1] as
// SimCLR's colour jitter clips after each operation.
// x *= factor (SimCLR v2's multiplicative brightness).
void img_brightness(float *x, int channels, size_t n, float factor);
// Each channel: (x - mean) * factor + mean, mean over that channel's pixels
// (tf.image.adjust_contrast).
void img_contrast(float *x, int channels, size_t n, float factor);
// rgb: (3, n).  HSV saturation times factor, clipped to 1, hue and value
// kept (tf.image.adjust_saturation), computed without leaving RGB.
void img_saturation(float *rgb, size_t n, float factor);
// rgb: (3, n).  HSV hue turned by delta (a fraction of the circle, in
// [-0.5, 0.5]); saturation and value kept (tf.image.adjust_hue).
void img_hue(float *rgb, size_t n, float delta);
// rgb: (3, n) -> every channel = 0.2989 R + 0.5870 G + 0.1140 B
// (tf.image.rgb_to_grayscale, then tiled back to 3 channels).
void img_grey(float *rgb, size_t n);
// rgb: (3, n) -> grey: (n,), the same luma (grey may alias rgb's plane 0).
void img_luma(const float *rgb, size_t n, float *grey);

// The half-width of the Gaussian blur kernel for `sigma` when the full kernel
// has radius `radius`: taps beyond 4 sigma (together under 1e-4 of the
// weight) are left out.
int img_blur_radius(float sigma, int radius);
// x: (C, h, w) blurred in place by a normalised Gaussian exp(-d^2 / 2 sigma^2)
// of half-width r (at most min(h, w) - 1), rows then columns, edges reflected
// (dcb|abcd|cba, as torchvision).
void img_blur(float *x, int channels, int h, int w, float sigma, int r, img_workspace *ws);

// x: (C, n) plus std * N(0, 1) per value (Box-Muller on r's words), clipped.
void img_noise(float *x, int channels, size_t n, float std, rng_t *r);

// x: (C, n) -> out: (C, n) f32, (x - mean[c]) / std[c].
void img_normalize(const float *x, int channels, size_t n, const float *mean,
                   const float *std, float *out);
// x: (C, n) -> out: (C, n) u8, round(255 x).
void img_to_u8(const float *x, int channels, size_t n, uint8_t *out);

#endif
