#include "imgops.h"

// Floating-point rules for this file, so that GCC 12 vectorises the pixel
// loops well at the project's -O2 on baseline x86-64:
//   no-trapping-math  lets it turn the selects of the saturation and hue
//                     loops into vector blends (with trapping math they stay
//                     scalar); it changes no value, only exception flags;
//   finite-math-only, no-signed-zeros
//                     let a > b ? a : b compile to maxps (and min to minps)
//                     instead of a four-instruction blend.  Values here are
//                     finite by construction (pixels in [0, 1], divisions
//                     guarded) and a zero is never negative, so no result
//                     changes: hue and saturation run 25% faster.
// No reassociation is allowed, so sums keep their written order and results
// stay the same whatever vector width the compiler picks.
// File-wide, so that the small inline helpers are compiled alike and inline.
#pragma GCC optimize("no-trapping-math", "finite-math-only", "no-signed-zeros")

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void *img_scratch_get(img_scratch *s, size_t bytes)
{
    if (bytes > s->cap) {
        free(s->p);
        s->cap = bytes + bytes / 4;
        s->p = xaligned_alloc(s->cap);
    }
    return s->p;
}

void img_workspace_free(img_workspace *ws)
{
    img_scratch *all[] = {&ws->region, &ws->pass, &ws->inter, &ws->taps_x, &ws->taps_y, &ws->blur,
                          &ws->view};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]->p);
        *all[i] = (img_scratch){0};
    }
}

// Plain comparisons, written as x86's maxps/minps define them (the second
// operand wins when the comparison fails), so that they compile to those
// instructions; fmaxf/fminf have other NaN rules and stay library calls
// without -ffast-math.
static inline float max2(float a, float b) { return a > b ? a : b; }
static inline float min2(float a, float b) { return a < b ? a : b; }
static inline float clip01(float v) { return min2(max2(v, 0), 1); }

// ---- resampling -----------------------------------------------------------------

// One axis of a separable resampling: output i reads input samples
// first[i] .. first[i] + taps - 1 with weights weight[i * taps + k] (zero
// where fewer taps are needed).  Inputs [lo, hi) are the ones read; `first`
// counts from lo.
typedef struct {
    int taps, lo, hi;
    int *first;       // (n,)
    float *weight;    // (n, taps)
} axis_taps;

// PIL's precompute_coeffs with its bilinear (triangle) filter: the support
// grows with the downscaling factor, taps outside [0, in_size) are dropped
// and the rest renormalised.  `gain` multiplies every weight (it turns raw
// u8/u16 values into [0, 1]); `mirror` reverses the output order.
// Output i of an axis reads inputs [*x0, *x1): the neighbours of its centre
// within the support, inside the image.  Returns the centre.
static double tap_range(int i, double box_lo, double scale, double support, int in_size,
                        int *x0, int *x1)
{
    double centre = box_lo + (i + 0.5) * scale;
    int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
    *x0 = lo < 0 ? 0 : lo;
    *x1 = hi > in_size ? in_size : hi;
    return centre;
}

static axis_taps make_axis(int in_size, double box_lo, double box_hi, int n, bool mirror,
                           float gain, img_scratch *mem)
{
    double scale = (box_hi - box_lo) / n;
    double support = scale > 1 ? scale : 1;
    axis_taps a = {.taps = 1};
    int x0, x1;
    for (int i = 0; i < n; i++) {
        tap_range(i, box_lo, scale, support, in_size, &x0, &x1);
        a.taps = x1 - x0 > a.taps ? x1 - x0 : a.taps;
    }
    char *p = img_scratch_get(mem, (size_t)n * a.taps * sizeof(float) + (size_t)n * sizeof(int));
    a.weight = (float *)p;
    a.first = (int *)(p + (size_t)n * a.taps * sizeof(float));
    int lo = in_size, hi = 0;
    for (int i = 0; i < n; i++) {
        double centre = tap_range(i, box_lo, scale, support, in_size, &x0, &x1);
        int count = x1 - x0;
        double total = 0;
        for (int k = 0; k < count; k++)
            total += fmax(0, 1 - fabs((x0 + k - centre + 0.5) / support));
        int at = mirror ? n - 1 - i : i;
        float *w = a.weight + (size_t)at * a.taps;
        for (int k = 0; k < a.taps; k++)
            w[k] = k < count && total > 0
                       ? (float)(fmax(0, 1 - fabs((x0 + k - centre + 0.5) / support)) / total) * gain
                       : 0;
        if (count <= 0)
            x0 = x1 = 0;
        a.first[at] = x0;
        lo = count > 0 && x0 < lo ? x0 : lo;
        hi = count > 0 && x1 > hi ? x1 : hi;
    }
    if (hi <= lo)  // nothing inside the image: read one sample, weigh it 0
        lo = 0, hi = 1;
    for (int i = 0; i < n; i++)
        a.first[i] = a.first[i] < lo ? 0 : a.first[i] - lo;
    a.lo = lo;
    a.hi = hi;
    return a;
}

// region: (C, rows, cols + pad) floats from src's rows [y0, y0 + rows) and
// columns [x0, x0 + cols), raw values; the pad columns and `pad_rows` extra
// rows are 0 (taps that run past the last sample read them with weight 0).
static void load_region(const img_src *src, int x0, int y0, int cols, int rows, int pad,
                        int pad_rows, float *region)
{
    size_t stride = (size_t)cols + pad;
    for (int c = 0; c < src->channels; c++) {
        float *plane = region + (size_t)c * (rows + pad_rows) * stride;
        for (int y = 0; y < rows; y++) {
            float *dst = plane + (size_t)y * stride;
            size_t at = ((size_t)c * src->height + y0 + y) * src->width + x0;
            if (src->u16) {
                const unsigned char *s = (const unsigned char *)src->data + 2 * at;
#pragma omp simd
                for (int x = 0; x < cols; x++) {
                    uint16_t v;
                    memcpy(&v, s + 2 * x, 2);
                    dst[x] = v;
                }
            } else {
                const uint8_t *s = (const uint8_t *)src->data + at;
#pragma omp simd
                for (int x = 0; x < cols; x++)
                    dst[x] = s[x];
            }
            memset(dst + cols, 0, (size_t)pad * sizeof(float));
        }
        memset(plane + (size_t)rows * stride, 0, (size_t)pad_rows * stride * sizeof(float));
    }
}

// Horizontal pass: in (C, rows, in_stride) -> out (C, rows, n).  The taps of
// an output are few and scattered, so this loop is scalar.
static void pass_rows(const float *in, int channels, int rows, size_t in_stride,
                      const axis_taps *ax, int n, float *out)
{
    int taps = ax->taps;
    for (size_t r = 0; r < (size_t)channels * rows; r++) {
        const float *row = in + r * in_stride;
        float *dst = out + r * n;
        const float *w = ax->weight;
        if (taps == 2) {  // enlarging: the common case, worth its own loop
            for (int i = 0; i < n; i++, w += 2) {
                const float *s = row + ax->first[i];
                dst[i] = w[0] * s[0] + w[1] * s[1];
            }
            continue;
        }
        for (int i = 0; i < n; i++, w += taps) {
            const float *s = row + ax->first[i];
            float acc = 0;
            for (int k = 0; k < taps; k++)
                acc += w[k] * s[k];
            dst[i] = acc;
        }
    }
}

// Vertical pass: in (C, in_rows, width) -> out (C, n, width): each output row
// is a weighted sum of whole input rows (vectorised along the row).
static void pass_cols(const float *in, int channels, int in_rows, int width,
                      const axis_taps *ax, int n, float *out)
{
    int taps = ax->taps;
    for (int c = 0; c < channels; c++) {
        const float *plane = in + (size_t)c * in_rows * width;
        for (int i = 0; i < n; i++) {
            float *dst = out + ((size_t)c * n + i) * width;
            const float *w = ax->weight + (size_t)i * taps;
            const float *s = plane + (size_t)ax->first[i] * width;
#pragma omp simd
            for (int x = 0; x < width; x++)
                dst[x] = w[0] * s[x];
            for (int k = 1; k < taps; k++) {
                if (w[k] == 0)
                    continue;
                const float *sk = s + (size_t)k * width;
                float wk = w[k];
#pragma omp simd
                for (int x = 0; x < width; x++)
                    dst[x] += wk * sk[x];
            }
        }
    }
}

void img_crop_resize(const img_src *src, double x0, double y0, double x1, double y1,
                     int out_w, int out_h, bool hflip, bool vflip, float *out,
                     img_workspace *ws)
{
    float gain = src->u16 ? 1.0f / 65535 : 1.0f / 255;
    axis_taps ax = make_axis(src->width, x0, x1, out_w, hflip, gain, &ws->taps_x);
    axis_taps ay = make_axis(src->height, y0, y1, out_h, vflip, 1, &ws->taps_y);
    int cols = ax.hi - ax.lo, rows = ay.hi - ay.lo, C = src->channels;
    // Padding: a tap run starting at the last sample reads taps - 1 more.
    int pad_x = ax.taps, pad_y = ay.taps;
    size_t stride = (size_t)cols + pad_x;
    float *region = img_scratch_get(&ws->region, (size_t)C * (rows + pad_y) * stride * sizeof(float));
    load_region(src, ax.lo, ay.lo, cols, rows, pad_x, pad_y, region);
    // Rows first or columns first: the scalar row pass should run on the
    // smaller image.  Rows first, it runs over (rows, out_w); columns first,
    // over (out_h, out_w) but the column pass then covers (out_h, cols).
    double rows_first = (double)rows * out_w * ax.taps + 0.25 * out_h * out_w * ay.taps;
    double cols_first = 0.25 * (double)out_h * stride * ay.taps + (double)out_h * out_w * ax.taps;
    if (rows_first <= cols_first) {
        float *mid = img_scratch_get(&ws->pass, (size_t)C * (rows + pad_y) * out_w * sizeof(float));
        pass_rows(region, C, rows + pad_y, stride, &ax, out_w, mid);
        pass_cols(mid, C, rows + pad_y, out_w, &ay, out_h, out);
    } else {
        float *mid = img_scratch_get(&ws->pass, (size_t)C * out_h * stride * sizeof(float));
        pass_cols(region, C, rows + pad_y, (int)stride, &ay, out_h, mid);
        pass_rows(mid, C, out_h, stride, &ax, out_w, out);
    }
}

void img_crop_rotate_resize(const img_src *src, double cx, double cy, double w, double h,
                            double angle_deg, int out_size, bool hflip, bool vflip,
                            float *out, img_workspace *ws)
{
    double t = angle_deg * M_PI / 180, cs = cos(t), sn = sin(t);
    // The turned box's axis-aligned bounding box, resampled to `step` input
    // pixels per sample: as fine as the output along the box's shorter side,
    // never finer than the input (then the grid is the input's own pixels).
    double bw = w * fabs(cs) + h * fabs(sn), bh = w * fabs(sn) + h * fabs(cs);
    double step = fmin(w, h) / out_size;
    double ox, oy;
    int iw, ih;
    if (step <= 1) {
        step = 1;
        ox = floor(cx - bw / 2) - 1, oy = floor(cy - bh / 2) - 1;
        iw = (int)ceil(cx + bw / 2) + 1 - (int)ox, ih = (int)ceil(cy + bh / 2) + 1 - (int)oy;
    } else {
        iw = (int)ceil(bw / step) + 2, ih = (int)ceil(bh / step) + 2;
        ox = cx - iw * step / 2, oy = cy - ih * step / 2;
    }
    int C = src->channels;
    float *grid = img_scratch_get(&ws->inter, (size_t)C * ih * iw * sizeof(float));
    img_crop_resize(src, ox, oy, ox + iw * step, oy + ih * step, iw, ih, false, false, grid, ws);

    // Output pixel (u, v) has the offset (a w, b h) from the box centre, with
    // a, b in (-1/2, 1/2); the content turns counter-clockwise on screen
    // (y down) when that offset is turned clockwise into the source:
    //     source = centre + (ox cos - oy sin, ox sin + oy cos),
    // then into grid coordinates (sample centres at integers).
    int n = out_size;
    double sx = hflip ? -1 : 1, sy = vflip ? -1 : 1;
    for (int v = 0; v < n; v++) {
        double b = sy * ((v + 0.5) / n - 0.5) * h;
        for (int u = 0; u < n; u++) {
            double a = sx * ((u + 0.5) / n - 0.5) * w;
            double px = cx + a * cs - b * sn, py = cy + a * sn + b * cs;
            double gx = (px - ox) / step - 0.5, gy = (py - oy) / step - 0.5;
            double fx = floor(gx), fy = floor(gy);
            int ix = (int)fx, iy = (int)fy;
            float tx = (float)(gx - fx), ty = (float)(gy - fy);
            float wts[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
            int xs[4] = {ix, ix + 1, ix, ix + 1}, ys[4] = {iy, iy, iy + 1, iy + 1};
            for (int c = 0; c < C; c++) {
                const float *plane = grid + (size_t)c * ih * iw;
                float acc = 0;
                for (int k = 0; k < 4; k++)
                    if (xs[k] >= 0 && xs[k] < iw && ys[k] >= 0 && ys[k] < ih)
                        acc += wts[k] * plane[(size_t)ys[k] * iw + xs[k]];
                out[((size_t)c * n + v) * n + u] = acc;
            }
        }
    }
}

// ---- colour ------------------------------------------------------------------------

void img_brightness(float *x, int channels, size_t n, float factor)
{
    size_t total = (size_t)channels * n;
#pragma omp simd
    for (size_t i = 0; i < total; i++) {
        float v = x[i] * factor;
        x[i] = v > 1 ? 1 : v;
    }
}

// The mean of n values, summed in 16 interleaved lanes and then in lane order,
// so that the result is the same whatever vector width runs the loop.
static float plane_mean(const float *x, size_t n)
{
    enum { LANES = 16 };
    float lane[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
#pragma omp simd
        for (int k = 0; k < LANES; k++)
            lane[k] += x[i + k];
    double total = 0;
    for (int k = 0; k < LANES; k++)
        total += lane[k];
    for (; i < n; i++)
        total += x[i];
    return (float)(total / (double)n);
}

void img_contrast(float *x, int channels, size_t n, float factor)
{
    for (int c = 0; c < channels; c++) {
        float *p = x + (size_t)c * n;
        float mean = plane_mean(p, n);
#pragma omp simd
        for (size_t i = 0; i < n; i++)
            p[i] = clip01((p[i] - mean) * factor + mean);
    }
}

// In HSV, value V = max, chroma C = max - min, and each channel sits at
// V - C g(hue).  Scaling saturation S = C / V by f (clipped to 1) keeps V and
// the hue, so it scales every channel's distance from V by
// k = C' / C = min(f, V / C).
void img_saturation(float *rgb, size_t n, float factor)
{
    float *r = rgb, *g = rgb + n, *b = rgb + 2 * n;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float hi = max2(r[i], max2(g[i], b[i])), lo = min2(r[i], min2(g[i], b[i]));
        float chroma = hi - lo, safe = chroma > 0 ? chroma : 1;
        float k = min2(factor, hi / safe);
        r[i] = hi - (hi - r[i]) * k;
        g[i] = hi - (hi - g[i]) * k;
        b[i] = hi - (hi - b[i]) * k;
    }
}

// Hue in sixths of the circle, h in [0, 6): from the channel that is the
// maximum and the other two; back with the branch-free HSV-to-RGB formula
//     channel(m) = V - C clip(min(k, 4 - k), 0, 1),  k = (m + h) mod 6,
// m = 5, 3, 1 for R, G, B.
void img_hue(float *rgb, size_t n, float delta)
{
    float *r = rgb, *g = rgb + n, *b = rgb + 2 * n;
    float shift = 6 * delta;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float R = r[i], G = g[i], B = b[i];
        float hi = max2(R, max2(G, B)), lo = min2(R, min2(G, B));
        float chroma = hi - lo, inv = 1 / (chroma > 0 ? chroma : 1);
        float from_r = (G - B) * inv, from_g = 2 + (B - R) * inv, from_b = 4 + (R - G) * inv;
        float h = hi == R ? from_r : hi == G ? from_g : from_b;
        h += shift;                       // now in [-4, 9)
        h += h < 0 ? 6 : 0;
        h -= h >= 6 ? 6 : 0;
        float kr = 5 + h, kg = 3 + h, kb = 1 + h;
        kr -= kr >= 6 ? 6 : 0;
        kg -= kg >= 6 ? 6 : 0;
        kb -= kb >= 6 ? 6 : 0;
        r[i] = hi - chroma * clip01(min2(kr, 4 - kr));
        g[i] = hi - chroma * clip01(min2(kg, 4 - kg));
        b[i] = hi - chroma * clip01(min2(kb, 4 - kb));
    }
}

void img_luma(const float *rgb, size_t n, float *grey)
{
    const float *r = rgb, *g = rgb + n, *b = rgb + 2 * n;
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        grey[i] = 0.2989f * r[i] + 0.5870f * g[i] + 0.1140f * b[i];
}

void img_grey(float *rgb, size_t n)
{
    img_luma(rgb, n, rgb);
    memcpy(rgb + n, rgb, n * sizeof(float));
    memcpy(rgb + 2 * n, rgb, n * sizeof(float));
}

// ---- blur ----------------------------------------------------------------------------

int img_blur_radius(float sigma, int radius)
{
    int r = (int)ceilf(4 * sigma);
    return r < radius ? r : radius;
}

static inline int reflect(int i, int n)
{
    return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

void img_blur(float *x, int channels, int h, int w, float sigma, int r, img_workspace *ws)
{
    if (r <= 0)
        return;
    // kernel[k] weighs the samples at distance k (both sides).
    float kernel[r + 1];
    double total = 0;
    for (int k = -r; k <= r; k++)
        total += exp(-(double)k * k / (2.0 * sigma * sigma));
    for (int k = 0; k <= r; k++)
        kernel[k] = (float)(exp(-(double)k * k / (2.0 * sigma * sigma)) / total);
    // A padded row (w + 2r), then a plane (h, w) for the column pass.
    float *row = img_scratch_get(&ws->blur, ((size_t)w + 2 * r + (size_t)h * w) * sizeof(float));
    float *centre = row + r, *rows_done = row + w + 2 * r;
    for (int c = 0; c < channels; c++) {
        float *plane = x + (size_t)c * h * w;
        for (int y = 0; y < h; y++) {
            float *src = plane + (size_t)y * w, *dst = rows_done + (size_t)y * w;
            memcpy(centre, src, (size_t)w * sizeof(float));
            for (int k = 1; k <= r; k++) {
                centre[-k] = src[reflect(-k, w)];
                centre[w - 1 + k] = src[reflect(w - 1 + k, w)];
            }
#pragma omp simd
            for (int i = 0; i < w; i++)
                dst[i] = kernel[0] * centre[i];
            for (int k = 1; k <= r; k++) {
                float wk = kernel[k];
#pragma omp simd
                for (int i = 0; i < w; i++)
                    dst[i] += wk * (centre[i - k] + centre[i + k]);
            }
        }
        for (int y = 0; y < h; y++) {
            float *dst = plane + (size_t)y * w;
            const float *mid = rows_done + (size_t)y * w;
#pragma omp simd
            for (int i = 0; i < w; i++)
                dst[i] = kernel[0] * mid[i];
            for (int k = 1; k <= r; k++) {
                const float *up = rows_done + (size_t)reflect(y - k, h) * w;
                const float *down = rows_done + (size_t)reflect(y + k, h) * w;
                float wk = kernel[k];
#pragma omp simd
                for (int i = 0; i < w; i++)
                    dst[i] += wk * (up[i] + down[i]);
            }
        }
    }
}

// ---- noise and output -------------------------------------------------------------

void img_noise(float *x, int channels, size_t n, float std, rng_t *r)
{
    size_t total = (size_t)channels * n;
    for (size_t i = 0; i < total; i += 2) {
        // u1 in (0, 1] keeps the logarithm finite.
        float u1 = (float)((rng_u32(r) >> 8) + 1) * 0x1p-24f;
        float u2 = (float)(rng_u32(r) >> 8) * 0x1p-24f;
        float radius = std * sqrtf(-2 * logf(u1)), angle = 2 * (float)M_PI * u2;
        x[i] = clip01(x[i] + radius * cosf(angle));
        if (i + 1 < total)
            x[i + 1] = clip01(x[i + 1] + radius * sinf(angle));
    }
}

void img_normalize(const float *x, int channels, size_t n, const float *mean,
                   const float *std, float *out)
{
    for (int c = 0; c < channels; c++) {
        const float *p = x + (size_t)c * n;
        float *o = out + (size_t)c * n;
        float m = mean[c], inv = 1 / std[c];
#pragma omp simd
        for (size_t i = 0; i < n; i++)
            o[i] = (p[i] - m) * inv;
    }
}

void img_to_u8(const float *x, int channels, size_t n, uint8_t *out)
{
    size_t total = (size_t)channels * n;
#pragma omp simd
    for (size_t i = 0; i < total; i++)
        out[i] = (uint8_t)(clip01(x[i]) * 255 + 0.5f);
}
