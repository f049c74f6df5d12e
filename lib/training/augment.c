#include "augment.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#include "libmsg.h"
#include "util.h"

void aug_config_jitter_strength(aug_config *c, float s)
{
    c->brightness = 0.8f * s;
    c->contrast = 0.8f * s;
    c->saturation = 0.8f * s;
    c->hue = 0.2f * s;
}

void aug_config_default(aug_config *c)
{
    *c = (aug_config){
        .size = 224,
        .channels = 3,
        .eval = false,
        .crop_fraction = 0.875f,
        .area_min = 0.08f, .area_max = 1,
        .aspect_min = 3.0f / 4, .aspect_max = 4.0f / 3,
        .hflip_p = 0.5f, .vflip_p = 0,
        .rotate_deg = 0,
        .jitter_p = 0.8f,
        .grey_p = 0.2f,
        .blur_p = 0.5f, .blur_sigma_min = 0.1f, .blur_sigma_max = 2.0f,
        .blur_kernel = 0.1f,
        .noise_p = 0.5f, .noise_std = 0,
    };
    aug_config_jitter_strength(c, 1);
}

// ---- drawing -------------------------------------------------------------------

// Each kind of choice has its own stream (seed, epoch, record, view << 8 | kind).
enum { DRAW_CROP, DRAW_FLIP, DRAW_ROTATE, DRAW_JITTER, DRAW_GREY, DRAW_BLUR, DRAW_NOISE, DRAW_TARGET };

static float uniform_in(rng_t *r, float lo, float hi) { return lo + (hi - lo) * rng_uniform(r); }

// torchvision's RandomResizedCrop.get_params with SimCLR's 100 attempts:
// area uniform in [area_min, area_max] of the image, aspect ratio uniform in
// log scale, the box placed uniformly; when no attempt fits, the largest
// centred box whose aspect ratio is in range.
static void draw_crop(const aug_config *c, int height, int width, rng_t *r, aug_params *p)
{
    double area = (double)height * width;
    double log_lo = log(c->aspect_min), log_hi = log(c->aspect_max);
    for (int attempt = 0; attempt < 100; attempt++) {
        double target = area * uniform_in(r, c->area_min, c->area_max);
        double ratio = exp(log_lo + (log_hi - log_lo) * rng_uniform(r));
        long w = lround(sqrt(target * ratio)), h = lround(sqrt(target / ratio));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            p->box_y = rng_below(r, (uint32_t)(height - h + 1));
            p->box_x = rng_below(r, (uint32_t)(width - w + 1));
            p->box_w = (double)w;
            p->box_h = (double)h;
            return;
        }
    }
    double in_ratio = (double)width / height;
    long w = width, h = height;
    if (in_ratio < c->aspect_min)
        h = lround(w / (double)c->aspect_min);
    else if (in_ratio > c->aspect_max)
        w = lround(h * (double)c->aspect_max);
    p->box_w = (double)w;
    p->box_h = (double)h;
    p->box_x = (double)((width - w) / 2);
    p->box_y = (double)((height - h) / 2);
}

void aug_draw(const aug_config *c, int height, int width, int src_channels,
              uint64_t seed, uint32_t epoch, uint32_t record, uint32_t view, aug_params *p)
{
    memset(p, 0, sizeof *p);
    for (int k = 0; k < 4; k++)
        p->order[k] = k;
    p->brightness = p->contrast = p->saturation = 1;
    if (c->eval) {
        double side = c->crop_fraction * (double)(height < width ? height : width);
        p->box_w = p->box_h = side;
        p->box_x = (width - side) / 2;
        p->box_y = (height - side) / 2;
        return;
    }
    uint32_t v = view << 8;
    rng_t r = rng_make(seed, epoch, record, v | DRAW_CROP);
    draw_crop(c, height, width, &r, p);

    r = rng_make(seed, epoch, record, v | DRAW_FLIP);
    p->hflip = rng_uniform(&r) < c->hflip_p;
    p->vflip = rng_uniform(&r) < c->vflip_p;

    r = rng_make(seed, epoch, record, v | DRAW_ROTATE);
    p->angle_deg = c->rotate_deg * (2 * rng_uniform(&r) - 1);

    // SimCLR's color_jitter_rand: the four operations in a random order, each
    // factor uniform in [max(0, 1 - x), 1 + x], the hue delta in [-h, h].
    r = rng_make(seed, epoch, record, v | DRAW_JITTER);
    p->jitter = rng_uniform(&r) < c->jitter_p;
    uint32_t order[4];
    rng_permutation(&r, order, 4);
    for (int k = 0; k < 4; k++)
        p->order[k] = (int)order[k];
    p->brightness = uniform_in(&r, fmaxf(0, 1 - c->brightness), 1 + c->brightness);
    p->contrast = uniform_in(&r, fmaxf(0, 1 - c->contrast), 1 + c->contrast);
    p->saturation = uniform_in(&r, fmaxf(0, 1 - c->saturation), 1 + c->saturation);
    p->hue = uniform_in(&r, -c->hue, c->hue);
    bool colour = src_channels == 3 && c->channels == 3;
    if (!colour) {
        p->saturation = 1;
        p->hue = 0;
    }

    r = rng_make(seed, epoch, record, v | DRAW_GREY);
    p->grey = rng_uniform(&r) < c->grey_p && colour;

    r = rng_make(seed, epoch, record, v | DRAW_BLUR);
    p->blur = rng_uniform(&r) < c->blur_p;
    p->sigma = uniform_in(&r, c->blur_sigma_min, c->blur_sigma_max);

    r = rng_make(seed, epoch, record, v | DRAW_NOISE);
    p->noise = rng_uniform(&r) < c->noise_p && c->noise_std > 0;
    p->noise_rng = r;

    r = rng_make(seed, epoch, record, v | DRAW_TARGET);
    p->target_vflip = rng_uniform(&r) < 0.5f;
    p->target_hflip = rng_uniform(&r) < 0.5f;
    p->target_quarter_turns = (int)(rng_uniform(&r) * 4) & 3;
}

// ---- rendering -----------------------------------------------------------------

static void colour_ops(const aug_config *c, const aug_params *p, int work, float *out, img_workspace *ws);

// The view, or (colour_free) its geometry alone: crop + resize (+ rotation,
// flips) to S x S, then the colour operations and noise.
static void render(const aug_config *c, const aug_params *p, const img_src *src, float *out,
                   img_workspace *ws, bool colour_free)
{
    int S = c->size;
    size_t n = (size_t)S * S;
    // Work on as few planes as the output needs: a grey source stays one
    // plane until the end, an RGB source turns grey right after the resize
    // when the output is grey.
    int work = src->channels < c->channels ? src->channels : c->channels;
    float *x = src->channels > c->channels
                   ? img_scratch_get(&ws->view, (size_t)src->channels * n * sizeof(float))
                   : out;
    if (p->angle_deg != 0)
        img_crop_rotate_resize(src, p->box_x + p->box_w / 2, p->box_y + p->box_h / 2, p->box_w,
                               p->box_h, p->angle_deg, S, p->hflip, p->vflip, x, ws);
    else
        img_crop_resize(src, p->box_x, p->box_y, p->box_x + p->box_w, p->box_y + p->box_h, S, S,
                        p->hflip, p->vflip, x, ws);
    if (x != out)
        img_luma(x, n, out);
    if (!colour_free) {
        colour_ops(c, p, work, out, ws);
        if (p->noise) {
            rng_t r = p->noise_rng;
            img_noise(out, work, n, c->noise_std, &r);
        }
    }
    for (int ch = work; ch < c->channels; ch++)
        memcpy(out + ch * n, out, n * sizeof(float));
}

void aug_render(const aug_config *c, const aug_params *p, const img_src *src, float *out,
                img_workspace *ws)
{
    render(c, p, src, out, ws, false);
}

// Jitter, grey and blur on `work` planes of S x S.
static void colour_ops(const aug_config *c, const aug_params *p, int work, float *out, img_workspace *ws)
{
    int S = c->size;
    size_t n = (size_t)S * S;
    bool colour = work == 3;
    for (int k = 0; p->jitter && k < 4; k++) {
        switch (p->order[k]) {
        case AUG_BRIGHTNESS: img_brightness(out, work, n, p->brightness); break;
        case AUG_CONTRAST: img_contrast(out, work, n, p->contrast); break;
        case AUG_SATURATION:
            if (colour)
                img_saturation(out, n, p->saturation);
            break;
        case AUG_HUE:
            if (colour)
                img_hue(out, n, p->hue);
            break;
        }
    }
    if (p->grey && colour)
        img_grey(out, n);
    if (p->blur) {
        // SimCLR: kernel_size = S // 10, radius = kernel_size // 2.
        int radius = (int)(c->blur_kernel * S) / 2;
        img_blur(out, work, S, S, p->sigma, img_blur_radius(p->sigma, radius), ws);
    }
}

void aug_render_target(const aug_config *c, const aug_params *p, const img_src *src, float *out,
                       img_workspace *ws)
{
    render(c, p, src, out, ws, true);
    int S = c->size;
    size_t n = (size_t)S * S;
    float *plane = img_scratch_get(&ws->view, n * sizeof(float));
    for (int ch = 0; ch < c->channels; ch++) {
        float *x = out + ch * n;
        memcpy(plane, x, n * sizeof(float));
        // x[i][j] = plane after the flips and the turns: a quarter turn
        // counter-clockwise takes (i, j) from (j, S-1-i).
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                int si = i, sj = j;
                for (int t = 0; t < p->target_quarter_turns; t++) {
                    int ti = sj, tj = S - 1 - si;
                    si = ti, sj = tj;
                }
                if (p->target_hflip)
                    sj = S - 1 - sj;
                if (p->target_vflip)
                    si = S - 1 - si;
                // Resampling can ring a little past [0, 1]: a target is a
                // sigmoid's goal, in [0, 1] by contract (mts(5)).
                float v = plane[(size_t)si * S + sj];
                x[(size_t)i * S + j] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
    }
}

void aug_target_code(const aug_params *p, float code[6])
{
    memset(code, 0, 6 * sizeof *code);
    code[0] = p->target_vflip;
    code[1] = p->target_hflip;
    code[2 + p->target_quarter_turns] = 1;
}

// ---- contact sheet ---------------------------------------------------------------

bool aug_write_sheet(const char *path, int rows, int cols, int channels, int size,
                     uint8_t *const *tiles, char *err, size_t errlen)
{
    static bool vips_ready;
    if (!vips_ready) {
        if (VIPS_INIT(util_progname())) {
            snprintf(err, errlen, "cannot initialise libvips: %s", vips_error_buffer());
            return false;
        }
        vips_concurrency_set(1);  // a small image: no worker threads
        libmsg_init();
        vips_ready = true;
    }
    enum { GAP = 2, BACKGROUND = 128 };
    int width = cols * size + (cols - 1) * GAP, height = rows * size + (rows - 1) * GAP;
    size_t bytes = (size_t)width * height * channels;
    uint8_t *sheet = xmalloc(bytes);
    memset(sheet, BACKGROUND, bytes);
    // Tiles are planar (C, S, S); the PNG is interleaved (H, W, C).
    for (int t = 0; t < rows * cols; t++) {
        const uint8_t *tile = tiles[t];
        if (!tile)
            continue;
        int top = (t / cols) * (size + GAP), left = (t % cols) * (size + GAP);
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                for (int ch = 0; ch < channels; ch++)
                    sheet[((size_t)(top + y) * width + left + x) * channels + ch] =
                        tile[((size_t)ch * size + y) * size + x];
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    VipsImage *im = vips_image_new_from_memory(sheet, bytes, width, height, channels,
                                               VIPS_FORMAT_UCHAR);
    temp_register(tmp);
    bool ok = im && vips_pngsave(im, tmp, NULL) == 0;
    if (!ok)
        snprintf(err, errlen, "cannot write the PNG: %s", vips_error_buffer());
    else if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        ok = false;
    }
    if (!ok) {
        vips_error_clear();
        unlink(tmp);
    }
    temp_release(tmp);
    if (im)
        g_object_unref(im);
    free(sheet);
    return ok;
}
