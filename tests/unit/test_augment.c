// Tests of lib/io/imgops and lib/training/augment: resampling against hand-made
// references, flips, rotation, colour operations against a textbook HSV
// round trip, blur against a direct 2-D convolution, u16 sources, and the
// statistics of the random choices (crop area and aspect, flip, jitter,
// grey, blur rates) over many draws.
#include "augment.h"

#include <string.h>

#include "../check.h"
#include "util.h"

static img_workspace ws;

// A u8 (C, H, W) image with texture everywhere (no two neighbours alike).
static uint8_t *pattern(int C, int H, int W)
{
    uint8_t *p = xmalloc((size_t)C * H * W);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                p[((size_t)c * H + y) * W + x] = (uint8_t)((x * 37 + y * 101 + c * 53 + x * y) % 251);
    return p;
}

static img_src src_u8(const uint8_t *p, int C, int H, int W)
{
    return (img_src){C, H, W, false, p};
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

// ---- resampling -------------------------------------------------------------------

// The whole image at its own size is a copy.
TEST(resize_identity)
{
    int C = 3, H = 13, W = 17;
    uint8_t *p = pattern(C, H, W);
    img_src s = src_u8(p, C, H, W);
    float out[3 * 13 * 17];
    img_crop_resize(&s, 0, 0, W, H, W, H, false, false, out, &ws);
    for (int i = 0; i < C * H * W; i++)
        EXPECT_CLOSE(out[i], p[i] / 255.0, 1e-6, 0);
    free(p);
}

// Upscaling is bilinear with pixel centres at i + 0.5 and edges clamped.
TEST(resize_upscale_is_bilinear)
{
    int H = 9, W = 11, S = 29;
    uint8_t *p = pattern(1, H, W);
    img_src s = src_u8(p, 1, H, W);
    // Box [2, 9) x [1, 8): 7 x 7 pixels to 29 x 29.
    float out[29 * 29];
    img_crop_resize(&s, 2, 1, 9, 8, S, S, false, false, out, &ws);
    double scale = 7.0 / S;
    float worst = 0;
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) {
            double fy = 1 + (i + 0.5) * scale - 0.5, fx = 2 + (j + 0.5) * scale - 0.5;
            int y0 = (int)floor(fy), x0 = (int)floor(fx);
            double ty = fy - y0, tx = fx - x0;
#define PX(y, x) p[(y < 0 ? 0 : y > H - 1 ? H - 1 : y) * W + (x < 0 ? 0 : x > W - 1 ? W - 1 : x)]
            double ref = (1 - ty) * ((1 - tx) * PX(y0, x0) + tx * PX(y0, x0 + 1)) +
                         ty * ((1 - tx) * PX(y0 + 1, x0) + tx * PX(y0 + 1, x0 + 1));
#undef PX
            float d = fabsf(out[i * S + j] - (float)(ref / 255));
            worst = d > worst ? d : worst;
        }
    EXPECT_MSG(worst < 1e-5, "max difference %g", worst);
    free(p);
}

// Halving is antialiased: the triangle filter widened to 4 taps weighing
// 1/8, 3/8, 3/8, 1/8 (PIL's bilinear reduce), not 2-tap bilinear.
TEST(resize_downscale_is_antialiased)
{
    int H = 20, W = 24;
    uint8_t *p = pattern(1, H, W);
    img_src s = src_u8(p, 1, H, W);
    float out[10 * 12];
    img_crop_resize(&s, 0, 0, W, H, W / 2, H / 2, false, false, out, &ws);
    static const double w4[4] = {1 / 8.0, 3 / 8.0, 3 / 8.0, 1 / 8.0};
    float worst = 0;
    for (int i = 1; i < H / 2 - 1; i++)
        for (int j = 1; j < W / 2 - 1; j++) {
            double ref = 0;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                    ref += w4[a] * w4[b] * p[(2 * i - 1 + a) * W + 2 * j - 1 + b];
            float d = fabsf(out[i * (W / 2) + j] - (float)(ref / 255));
            worst = d > worst ? d : worst;
        }
    EXPECT_MSG(worst < 1e-5, "max difference %g", worst);
    free(p);
}

// Flips mirror the output exactly.
TEST(flips_mirror)
{
    int C = 3, H = 30, W = 40, S = 16;
    uint8_t *p = pattern(C, H, W);
    img_src s = src_u8(p, C, H, W);
    float plain[3 * 16 * 16], h[3 * 16 * 16], v[3 * 16 * 16];
    img_crop_resize(&s, 3.5, 2, 33, 27.25, S, S, false, false, plain, &ws);
    img_crop_resize(&s, 3.5, 2, 33, 27.25, S, S, true, false, h, &ws);
    img_crop_resize(&s, 3.5, 2, 33, 27.25, S, S, false, true, v, &ws);
    int bad = 0;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                float o = plain[(c * S + y) * S + x];
                bad += h[(c * S + y) * S + S - 1 - x] != o;
                bad += v[(c * S + S - 1 - y) * S + x] != o;
            }
    EXPECT_MSG(bad == 0, "%d values differ", bad);
    free(p);
}

// Turning the whole square image by 90 degrees is rot90: the content turns
// counter-clockwise (the top-right corner comes to the top left).
TEST(rotation_by_90_degrees)
{
    int N = 12;
    uint8_t *p = pattern(1, N, N);
    img_src s = src_u8(p, 1, N, N);
    float out[12 * 12];
    img_crop_rotate_resize(&s, N / 2.0, N / 2.0, N, N, 90, N, false, false, out, &ws);
    float worst = 0;
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            float d = fabsf(out[y * N + x] - p[x * N + (N - 1 - y)] / 255.0f);
            worst = d > worst ? d : worst;
        }
    EXPECT_MSG(worst < 1e-4, "max difference %g", worst);
    // 45 degrees: the corners of the output fall outside the image (black),
    // the centre does not.
    img_crop_rotate_resize(&s, N / 2.0, N / 2.0, N, N, 45, N, false, false, out, &ws);
    EXPECT(out[0] == 0 && out[N - 1] == 0 && out[N * N - 1] == 0);
    EXPECT(out[(N / 2) * N + N / 2] > 0);
    free(p);
}

// u16 sources are read at full 16-bit range: v * 257 in u16 is v in u8.
TEST(u16_source)
{
    int C = 3, H = 21, W = 19, S = 8;
    uint8_t *p = pattern(C, H, W);
    // An odd byte offset: tensor data inside a msgpack frame is unaligned.
    unsigned char *buf = xmalloc((size_t)C * H * W * 2 + 1);
    for (int i = 0; i < C * H * W; i++) {
        uint16_t v = (uint16_t)(p[i] * 257);
        memcpy(buf + 1 + 2 * i, &v, 2);
    }
    img_src s8 = src_u8(p, C, H, W), s16 = {C, H, W, true, buf + 1};
    float a[3 * 8 * 8], b[3 * 8 * 8];
    img_crop_resize(&s8, 1, 2, 18, 20, S, S, false, false, a, &ws);
    img_crop_resize(&s16, 1, 2, 18, 20, S, S, false, false, b, &ws);
    EXPECT(max_diff(a, b, sizeof a / sizeof a[0]) < 1e-6);
    free(p);
    free(buf);
}

// ---- colour -------------------------------------------------------------------------

// colorsys.rgb_to_hsv / hsv_to_rgb, as tf.image's HSV kernels compute them.
static void rgb_to_hsv(double r, double g, double b, double *h, double *s, double *v)
{
    double hi = fmax(r, fmax(g, b)), lo = fmin(r, fmin(g, b));
    *v = hi;
    if (hi == lo) {
        *h = *s = 0;
        return;
    }
    *s = (hi - lo) / hi;
    double rc = (hi - r) / (hi - lo), gc = (hi - g) / (hi - lo), bc = (hi - b) / (hi - lo);
    double hh = r == hi ? bc - gc : g == hi ? 2 + rc - bc : 4 + gc - rc;
    *h = fmod(hh / 6 + 1, 1);
}

static void hsv_to_rgb(double h, double s, double v, double *r, double *g, double *b)
{
    int i = (int)(h * 6) % 6;
    double f = h * 6 - floor(h * 6), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double rgb[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    *r = rgb[i][0], *g = rgb[i][1], *b = rgb[i][2];
}

TEST(saturation_and_hue_match_hsv)
{
    enum { N = 4000 };
    static float x[3 * N], y[3 * N];
    rng_t r = rng_make(1, 2, 3, 4);
    for (int i = 0; i < 3 * N; i++)
        x[i] = rng_uniform(&r);
    x[0] = x[N] = x[2 * N] = 0.5f;  // a grey pixel
    const float factors[] = {0, 0.3f, 1.7f, 5};
    for (int k = 0; k < 4; k++) {
        memcpy(y, x, sizeof x);
        img_saturation(y, N, factors[k]);
        float worst = 0;
        for (int i = 0; i < N; i++) {
            double h, s, v, rr, gg, bb;
            rgb_to_hsv(x[i], x[N + i], x[2 * N + i], &h, &s, &v);
            hsv_to_rgb(h, fmin(s * factors[k], 1), v, &rr, &gg, &bb);
            worst = fmaxf(worst, fabsf(y[i] - (float)rr));
            worst = fmaxf(worst, fabsf(y[N + i] - (float)gg));
            worst = fmaxf(worst, fabsf(y[2 * N + i] - (float)bb));
        }
        EXPECT_MSG(worst < 1e-5, "saturation x%g: max difference %g", factors[k], worst);
    }
    const float deltas[] = {-0.5f, -0.2f, 0.05f, 0.2f, 0.5f};
    for (int k = 0; k < 5; k++) {
        memcpy(y, x, sizeof x);
        img_hue(y, N, deltas[k]);
        float worst = 0;
        for (int i = 0; i < N; i++) {
            double h, s, v, rr, gg, bb;
            rgb_to_hsv(x[i], x[N + i], x[2 * N + i], &h, &s, &v);
            hsv_to_rgb(fmod(h + deltas[k] + 1, 1), s, v, &rr, &gg, &bb);
            worst = fmaxf(worst, fabsf(y[i] - (float)rr));
            worst = fmaxf(worst, fabsf(y[N + i] - (float)gg));
            worst = fmaxf(worst, fabsf(y[2 * N + i] - (float)bb));
        }
        EXPECT_MSG(worst < 1e-5, "hue %+g: max difference %g", deltas[k], worst);
    }
}

TEST(brightness_contrast_grey)
{
    enum { N = 1000 };
    static float x[3 * N];
    rng_t r = rng_make(5, 0, 0, 0);
    for (int i = 0; i < 3 * N; i++)
        x[i] = rng_uniform(&r);
    static float y[3 * N];
    memcpy(y, x, sizeof x);
    img_brightness(y, 3, N, 1.5f);
    int bad = 0;
    for (int i = 0; i < 3 * N; i++)
        bad += y[i] != fminf(x[i] * 1.5f, 1);
    EXPECT_MSG(bad == 0, "brightness: %d wrong", bad);

    // Contrast pulls each channel to its own mean; factor 0 leaves only it.
    memcpy(y, x, sizeof x);
    img_contrast(y, 3, N, 0);
    for (int c = 0; c < 3; c++) {
        double mean = 0;
        for (int i = 0; i < N; i++)
            mean += x[c * N + i];
        mean /= N;
        EXPECT_CLOSE(y[c * N], mean, 1e-6, 0);
        EXPECT(y[c * N + N - 1] == y[c * N]);
    }
    memcpy(y, x, sizeof x);
    img_contrast(y, 3, N, 1.6f);
    double mean0 = 0, m = 0;
    for (int i = 0; i < N; i++)
        mean0 += x[i];
    mean0 /= N;
    for (int i = 0; i < N; i++)
        m = fmax(m, fabs(y[i] - fmin(fmax((x[i] - mean0) * 1.6 + mean0, 0), 1)));
    EXPECT_MSG(m < 1e-5, "contrast: max difference %g", m);

    memcpy(y, x, sizeof x);
    img_grey(y, N);
    for (int i = 0; i < N; i += 97) {
        double l = 0.2989 * x[i] + 0.5870 * x[N + i] + 0.1140 * x[2 * N + i];
        EXPECT_CLOSE(y[i], l, 1e-6, 0);
        EXPECT(y[N + i] == y[i] && y[2 * N + i] == y[i]);
    }
}

// ---- blur and noise --------------------------------------------------------------------

static int reflect_index(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

TEST(blur_matches_2d_convolution)
{
    int C = 2, H = 19, W = 23, r = 5;
    float sigma = 1.7f;
    static float x[2 * 19 * 23], y[2 * 19 * 23];
    uint8_t *p = pattern(C, H, W);
    for (int i = 0; i < C * H * W; i++)
        x[i] = p[i] / 255.0f;
    memcpy(y, x, sizeof x);
    img_blur(y, C, H, W, sigma, r, &ws);
    double k[11], total = 0;
    for (int d = -r; d <= r; d++)
        total += k[d + r] = exp(-d * d / (2.0 * sigma * sigma));
    float worst = 0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double ref = 0;
                for (int a = -r; a <= r; a++)
                    for (int b = -r; b <= r; b++)
                        ref += k[a + r] * k[b + r] / (total * total) *
                               x[(c * H + reflect_index(i + a, H)) * W + reflect_index(j + b, W)];
                worst = fmaxf(worst, fabsf(y[(c * H + i) * W + j] - (float)ref));
            }
    EXPECT_MSG(worst < 1e-5, "max difference %g", worst);
    // The half-width follows sigma (4 sigma) up to the kernel's.
    EXPECT(img_blur_radius(0.1f, 11) == 1);
    EXPECT(img_blur_radius(2.0f, 11) == 8);
    EXPECT(img_blur_radius(2.0f, 1) == 1);
    free(p);
}

TEST(noise_moments)
{
    enum { N = 200000 };
    static float x[N];
    for (int i = 0; i < N; i++)
        x[i] = 0.5f;
    rng_t r = rng_make(9, 1, 2, 3);
    img_noise(x, 1, N, 0.05f, &r);
    double sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        sum += x[i] - 0.5;
        sq += (x[i] - 0.5) * (x[i] - 0.5);
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    EXPECT_MSG(fabs(mean) < 5 * 0.05 / sqrt(N), "mean %g", mean);
    EXPECT_MSG(fabs(sd - 0.05) < 0.05 * 0.01, "std %g", sd);
}

// ---- the chain -------------------------------------------------------------------------

// Over many views (records), every random choice has its rate and range.
TEST(draw_statistics)
{
    aug_config c;
    aug_config_default(&c);
    enum { N = 20000 };
    int W = 256, H = 256;
    double area = 0, pos = 0;
    int hflip = 0, vflip = 0, jitter = 0, grey = 0, blur = 0, first[4] = {0};
    double amin = 1, amax = 0, rmin = 10, rmax = 0, bsum = 0, bmin = 10, bmax = 0, hmin = 1,
           hmax = -1, smin = 10, smax = 0;
    int outside = 0;
    for (uint32_t rec = 0; rec < N; rec++) {
        aug_params p;
        aug_draw(&c, H, W, 3, 42, 0, rec, 0, &p);
        double a = p.box_w * p.box_h / (W * H), ratio = p.box_w / p.box_h;
        area += a;
        amin = fmin(amin, a), amax = fmax(amax, a);
        rmin = fmin(rmin, ratio), rmax = fmax(rmax, ratio);
        if (p.box_w < W)
            pos += p.box_x / (W - p.box_w);
        else
            pos += 0.5;
        outside += p.box_x < 0 || p.box_y < 0 || p.box_x + p.box_w > W || p.box_y + p.box_h > H;
        hflip += p.hflip;
        vflip += p.vflip;
        jitter += p.jitter;
        grey += p.grey;
        blur += p.blur;
        first[p.order[0]]++;
        bsum += p.brightness;
        bmin = fmin(bmin, p.brightness), bmax = fmax(bmax, p.brightness);
        hmin = fmin(hmin, p.hue), hmax = fmax(hmax, p.hue);
        smin = fmin(smin, p.sigma), smax = fmax(smax, p.sigma);
        EXPECT(p.angle_deg == 0);
    }
    // Area uniform in [0.08, 1], aspect log-uniform in [3/4, 4/3], boxes
    // that do not fit redrawn: E[area] = 0.4795 on a square image (numerical
    // integration), standard deviation 0.233.
    double se = 0.233 / sqrt(N);
    EXPECT_MSG(fabs(area / N - 0.4795) < 5 * se, "mean area %g", area / N);
    EXPECT_MSG(amin >= 0.075 && amin < 0.09 && amax <= 1 && amax > 0.97, "area in [%g, %g]", amin, amax);
    EXPECT_MSG(rmin >= 0.74 && rmin < 0.76 && rmax <= 1.35 && rmax > 1.32, "aspect in [%g, %g]", rmin, rmax);
    EXPECT_MSG(fabs(pos / N - 0.5) < 0.01, "mean relative position %g", pos / N);
    EXPECT(outside == 0);
    // Rates: 5 standard errors of a binomial proportion.
#define RATE(count, p) \
    EXPECT_MSG(fabs((double)(count) / N - (p)) < 5 * sqrt((p) * (1 - (p)) / N) + 1e-9, \
               #count " rate %g, expected %g", (double)(count) / N, (double)(p))
    RATE(hflip, 0.5);
    RATE(vflip, 0.0);
    RATE(jitter, 0.8);
    RATE(grey, 0.2);
    RATE(blur, 0.5);
    for (int k = 0; k < 4; k++)
        RATE(first[k], 0.25);
    EXPECT_MSG(fabs(bsum / N - 1) < 0.02 && bmin >= 0.2 && bmin < 0.21 && bmax <= 1.8 && bmax > 1.79,
               "brightness mean %g in [%g, %g]", bsum / N, bmin, bmax);
    EXPECT(hmin >= -0.2f && hmin < -0.19 && hmax <= 0.2f && hmax > 0.19);
    EXPECT(smin >= 0.1f && smin < 0.11 && smax <= 2.0f && smax > 1.99);

    // The medical options: vertical flips and angles.
    c.vflip_p = 0.3f;
    c.rotate_deg = 20;
    int v = 0;
    double angle = 0, angle_max = 0;
    for (uint32_t rec = 0; rec < N; rec++) {
        aug_params p;
        aug_draw(&c, H, W, 3, 42, 0, rec, 0, &p);
        v += p.vflip;
        angle += p.angle_deg;
        angle_max = fmax(angle_max, fabs(p.angle_deg));
    }
    RATE(v, 0.3);
    EXPECT(fabs(angle / N) < 0.5 && angle_max <= 20 && angle_max > 19.9);
#undef RATE
}

// A box that cannot be drawn (aspect 100:1, area at least 90%) falls back to
// the largest centred box with an aspect ratio in range.
TEST(crop_fallback_is_centred)
{
    aug_config c;
    aug_config_default(&c);
    c.area_min = 0.9f;
    aug_params p;
    aug_draw(&c, 10, 1000, 3, 1, 0, 0, 0, &p);
    EXPECT(p.box_h == 10 && p.box_w == 13 && p.box_x == (1000 - 13) / 2 && p.box_y == 0);
}

// Choices depend on (seed, epoch, record, view) and nothing else.
TEST(draw_seeding)
{
    aug_config c;
    aug_config_default(&c);
    aug_params a, b;
    aug_draw(&c, 100, 120, 3, 7, 2, 33, 0, &a);
    aug_draw(&c, 100, 120, 3, 7, 2, 33, 0, &b);
    EXPECT(memcmp(&a, &b, sizeof a) == 0);
    const uint32_t other[4][4] = {{8, 2, 33, 0}, {7, 3, 33, 0}, {7, 2, 34, 0}, {7, 2, 33, 1}};
    for (int k = 0; k < 4; k++) {
        aug_draw(&c, 100, 120, 3, other[k][0], other[k][1], other[k][2], other[k][3], &b);
        EXPECT_MSG(a.box_x != b.box_x || a.box_w != b.box_w || a.brightness != b.brightness,
                   "variant %d draws the same", k);
    }
    // Another option does not move the crop (each kind of choice has its stream).
    c.blur_p = 0.9f;
    c.rotate_deg = 10;
    aug_draw(&c, 100, 120, 3, 7, 2, 33, 0, &b);
    EXPECT(a.box_x == b.box_x && a.box_y == b.box_y && a.box_w == b.box_w && a.hflip == b.hflip);
}

// --eval: the centre square of 0.875 of the short side, nothing else.
TEST(eval_is_a_centre_crop)
{
    aug_config c;
    aug_config_default(&c);
    c.eval = true;
    c.size = 16;
    aug_params p;
    aug_draw(&c, 80, 120, 3, 1, 2, 3, 0, &p);
    EXPECT(p.box_w == 70 && p.box_h == 70 && p.box_x == 25 && p.box_y == 5);
    EXPECT(!p.hflip && !p.jitter && !p.grey && !p.blur && !p.noise && p.angle_deg == 0);
    uint8_t *img = pattern(3, 80, 120);
    img_src s = src_u8(img, 3, 80, 120);
    float a[3 * 16 * 16], b[3 * 16 * 16], ref[3 * 16 * 16];
    aug_render(&c, &p, &s, a, &ws);
    aug_params q;
    aug_draw(&c, 80, 120, 3, 99, 0, 0, 1, &q);  // any seed, any view
    aug_render(&c, &q, &s, b, &ws);
    img_crop_resize(&s, 25, 5, 95, 75, 16, 16, false, false, ref, &ws);
    EXPECT(memcmp(a, b, sizeof a) == 0 && memcmp(a, ref, sizeof a) == 0);
    free(img);
}

// Grey sources stay grey (three equal planes when 3 channels are asked
// for); RGB sources become their luma when 1 channel is asked for.
TEST(render_channels)
{
    aug_config c;
    aug_config_default(&c);
    c.size = 24;
    c.jitter_p = 1;
    uint8_t *grey = pattern(1, 40, 50), *rgb = pattern(3, 40, 50);
    img_src gs = src_u8(grey, 1, 40, 50), cs = src_u8(rgb, 3, 40, 50);
    static float out[3 * 24 * 24], one[24 * 24];
    size_t n = 24 * 24;
    for (uint32_t rec = 0; rec < 20; rec++) {
        aug_params p;
        aug_draw(&c, 40, 50, 1, 3, 0, rec, 0, &p);
        EXPECT(p.saturation == 1 && p.hue == 0 && !p.grey);
        aug_render(&c, &p, &gs, out, &ws);
        EXPECT(memcmp(out, out + n, n * sizeof(float)) == 0 && memcmp(out, out + 2 * n, n * sizeof(float)) == 0);
    }
    c.channels = 1;
    c.jitter_p = 0;
    c.blur_p = 0;
    aug_params p;
    aug_draw(&c, 40, 50, 3, 3, 0, 0, 0, &p);
    aug_render(&c, &p, &cs, one, &ws);
    c.channels = 3;
    aug_render(&c, &p, &cs, out, &ws);
    float luma[24 * 24];
    img_luma(out, n, luma);
    EXPECT(max_diff(one, luma, n) < 1e-6);
    for (size_t i = 0; i < 3 * n; i++)
        EXPECT(out[i] >= 0 && out[i] <= 1);
    free(grey);
    free(rgb);
}

// Output conversion: normalisation and u8 rounding.
TEST(output_conversion)
{
    float x[6] = {0, 0.5f, 1, 0.25f, 0.75f, 0.998f}, y[6];
    const float mean[2] = {0.5f, 0.25f}, sd[2] = {0.5f, 0.25f};
    img_normalize(x, 2, 3, mean, sd, y);
    EXPECT(y[0] == -1 && y[1] == 0 && y[2] == 1 && y[3] == 0 && y[4] == 2);
    uint8_t u[6];
    img_to_u8(x, 2, 3, u);
    EXPECT(u[0] == 0 && u[1] == 128 && u[2] == 255 && u[3] == 64 && u[4] == 191 && u[5] == 254);
}

int main(void)
{
    RUN(resize_identity);
    RUN(resize_upscale_is_bilinear);
    RUN(resize_downscale_is_antialiased);
    RUN(flips_mirror);
    RUN(rotation_by_90_degrees);
    RUN(u16_source);
    RUN(saturation_and_hue_match_hsv);
    RUN(brightness_contrast_grey);
    RUN(blur_matches_2d_convolution);
    RUN(noise_moments);
    RUN(draw_statistics);
    RUN(crop_fallback_is_centred);
    RUN(draw_seeding);
    RUN(eval_is_a_centre_crop);
    RUN(render_channels);
    RUN(output_conversion);
    img_workspace_free(&ws);
    return CHECK_DONE();
}
