#include "image.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "dicom.h"
#include "imgops.h"
#include "jpeg.h"
#include "libmsg.h"
#include "util.h"

void image_init(const char *argv0)
{
    if (VIPS_INIT(argv0))
        die("libvips", "cannot initialise: %s", vips_error_buffer());
    libmsg_init();
    // Parallelism is across files (case-pack's threads); a libvips pipeline
    // per file stays on its thread.
    vips_concurrency_set(1);
    vips_cache_set_max(0);
}

bool image_window_parse(const char *s, image_window *w)
{
    char kind[16];
    double lo, hi;
    if (strcmp(s, "full") == 0) {
        *w = (image_window){WINDOW_FULL, 0, 65535};
        return true;
    }
    if (strcmp(s, "dicom") == 0) {
        *w = (image_window){WINDOW_DICOM, 0.5, 99.5};
        return true;
    }
    if (sscanf(s, "%15[a-z]:%lf,%lf", kind, &lo, &hi) != 3 || !(lo < hi))
        return false;
    if (strcmp(kind, "percentile") == 0 && lo >= 0 && hi <= 100)
        *w = (image_window){WINDOW_PERCENTILE, lo, hi};
    else if (strcmp(kind, "fixed") == 0 && lo >= -65535 && hi <= 65535)
        *w = (image_window){WINDOW_FIXED, lo, hi};
    else
        return false;
    return true;
}

// The value below which `pct` percent of the values lie (nearest rank on the
// histogram of all 65536 values).
static double percentile(const uint32_t *hist, size_t n, double pct)
{
    double rank = pct / 100.0 * (double)(n ? n - 1 : 0);
    size_t seen = 0;
    for (int v = 0; v < 65536; v++) {
        seen += hist[v];
        if ((double)seen > rank)
            return v;
    }
    return 65535;
}

void image_window_apply(const image_window *w, const uint16_t *in, size_t n, uint8_t *out)
{
    double lo = w->lo, hi = w->hi;
    if (w->kind == WINDOW_PERCENTILE || w->kind == WINDOW_DICOM) {
        uint32_t *hist = xcalloc(65536, sizeof *hist);
        for (size_t i = 0; i < n; i++)
            hist[in[i]]++;
        lo = percentile(hist, n, w->lo);
        hi = percentile(hist, n, w->hi);
        free(hist);
    }
    if (hi <= lo)  // a flat image: everything maps to one grey
        hi = lo + 1;
    // A table over all 16-bit values is cheaper than a divide per pixel.
    uint8_t *table = xmalloc(65536);
    for (int v = 0; v < 65536; v++) {
        double t = (v - lo) / (hi - lo) * 255.0;
        table[v] = (uint8_t)(t <= 0 ? 0 : t >= 255 ? 255 : lrint(t));
    }
    for (size_t i = 0; i < n; i++)
        out[i] = table[in[i]];
    free(table);
}

static bool read_file(const char *path, void **data, size_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return false;
    }
    uint8_t *p = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "read error: %s", n < 0 ? strerror(errno) : "file shrank");
            free(p);
            close(fd);
            return false;
        }
        got += (size_t)n;
    }
    close(fd);
    *data = p;
    *size = got;
    return true;
}

// libvips keeps its messages in one process-wide buffer.
static void vips_reason(char *err, size_t errlen, const char *what)
{
#pragma omp critical(vips_error)
    {
        const char *msg = vips_error_buffer();
        // Keep the first line: libvips repeats itself on later lines.
        size_t n = strcspn(msg, "\n");
        snprintf(err, errlen, "%s%s%.*s", what, n ? ": " : "", (int)n, msg);
        vips_error_clear();
    }
}

// Replaces *img by out (a libvips result), dropping the reference to the old.
static void take(VipsImage **img, VipsImage *out)
{
    g_object_unref(*img);
    *img = out;
}

// The output size for a w x h source: short side o->size, aspect ratio
// kept (size 0: unchanged).  False, with the reason, when that is over
// --max-pixels (a long thin image scaled up would ask for gigabytes).
static bool target_size(int w, int h, const image_opts *o, int *tw, int *th, char *err, size_t errlen)
{
    double tw_d = w, th_d = h;
    if (o->size > 0) {
        if (w <= h) {
            tw_d = o->size;
            th_d = round((double)h * o->size / w);
        } else {
            th_d = o->size;
            tw_d = round((double)w * o->size / h);
        }
    }
    tw_d = tw_d < 1 ? 1 : tw_d;
    th_d = th_d < 1 ? 1 : th_d;
    if (tw_d * th_d > (double)o->max_pixels) {
        snprintf(err, errlen, "%dx%d resized to %.0fx%.0f pixels, over the limit of %llu (--max-pixels)", w, h,
                 tw_d, th_d, (unsigned long long)o->max_pixels);
        return false;
    }
    *tw = (int)tw_d;
    *th = (int)th_d;
    return true;
}

// JPEG photographs: decoded at the smallest DCT scale that keeps the
// short side at least o->size (jpeg.h), then resampled (PIL's bilinear,
// antialiased) straight to the output, centre crop included.
static jpeg_status load_jpeg(const void *data, size_t size, const image_opts *o, image_t *out, char *err,
                             size_t errlen)
{
    int c = o->channels;
    jpeg_image dec;
    jpeg_status st = jpeg_decode(data, size, c, o->size, o->max_pixels, &dec, err, errlen);
    if (st != JPEG_OK)
        return st;
    // The size from the source's own, as the libvips path and PIL have it;
    // the crop box in decoded pixels, of which the source covers
    // source_width * scale (the decoder rounds its size up).
    int tw, th;
    if (!target_size(dec.source_width, dec.source_height, o, &tw, &th, err, errlen)) {
        free(dec.pixels);
        return JPEG_FAILED;
    }
    int cw = tw, ch = th;
    if (o->centre_crop) {
        cw = tw < o->size ? tw : o->size;
        ch = th < o->size ? th : o->size;
    }
    double sx = dec.source_width * dec.scale / tw, sy = dec.source_height * dec.scale / th;
    double x0 = (tw - cw) / 2 * sx, y0 = (th - ch) / 2 * sy;
    uint8_t *decoded = dec.pixels;
    if (cw == dec.width && ch == dec.height && dec.scale == 1.0) {
        // --size 0: the decoded pixels as they are.
        *out = (image_t){.channels = c, .height = ch, .width = cw, .u16 = false, .pixels = decoded};
        return JPEG_OK;
    }
    img_src src = {.channels = c, .height = dec.height, .width = dec.width, .u16 = false, .data = decoded};
    img_workspace ws = {0};
    float *resized = xmalloc((size_t)c * cw * ch * sizeof *resized);
    img_crop_resize(&src, x0, y0, x0 + cw * sx, y0 + ch * sy, cw, ch, false, false, resized, &ws);
    uint8_t *pixels = xmalloc((size_t)c * cw * ch);
    img_to_u8(resized, c, (size_t)cw * ch, pixels);
    free(resized);
    free(decoded);
    img_workspace_free(&ws);
    *out = (image_t){.channels = c, .height = ch, .width = cw, .u16 = false, .pixels = pixels};
    return JPEG_OK;
}

// Decodes one page into a planar image.
static bool load_page(const void *data, size_t size, int page, bool is_tiff, bool is_jpeg,
                      const image_opts *o, image_t *out, char *err, size_t errlen)
{
    // Every JPEG but CMYK through libjpeg-turbo directly: faster, and it
    // refuses corrupt data, which libvips's loader only warns about.
    if (is_jpeg) {
        switch (load_jpeg(data, size, o, out, err, errlen)) {
        case JPEG_OK: out->page = page; return true;
        case JPEG_FAILED: return false;
        case JPEG_UNSUPPORTED: break;   // CMYK: libvips converts it below
        }
    }
    // fail_on=error: a damaged stream (a PNG's CRC, truncated data) fails
    // the file rather than giving a picture with a grey or garbage part
    // and a warning; warnings that leave the pixels whole (an ICC profile
    // that does not fit) still pass, reported through libmsg.
    char option[48] = "fail_on=error";
    if (is_tiff)
        snprintf(option, sizeof option, "fail_on=error,page=%d", page);
    VipsImage *img = vips_image_new_from_buffer(data, size, option, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!img) {
        vips_reason(err, errlen, "cannot decode");
        return false;
    }
    int w = vips_image_get_width(img), h = vips_image_get_height(img);
    if ((uint64_t)w * (uint64_t)h > o->max_pixels) {
        snprintf(err, errlen, "%dx%d pixels, over the limit of %llu (--max-pixels)", w, h,
                 (unsigned long long)o->max_pixels);
        g_object_unref(img);
        return false;
    }
    VipsBandFormat fmt = vips_image_get_format(img);
    bool sixteen = fmt == VIPS_FORMAT_USHORT;
    if (fmt != VIPS_FORMAT_UCHAR && !sixteen) {
        snprintf(err, errlen, "unsupported sample format (%s): 8- or 16-bit integers only",
                 vips_enum_nick(VIPS_TYPE_BAND_FORMAT, fmt));
        g_object_unref(img);
        return false;
    }
    int tw, th;
    if (!target_size(w, h, o, &tw, &th, err, errlen)) {
        g_object_unref(img);
        return false;
    }
    VipsImage *res = NULL;
    int rc;
    if (!sixteen) {
        g_object_unref(img);
        // vips_thumbnail shrinks JPEG and WebP while decoding, and applies the
        // EXIF orientation.
        rc = vips_thumbnail_buffer((void *)data, size, &res, tw, "height", th, "size", VIPS_SIZE_FORCE,
                                   "option_string", option, NULL);
        if (rc) {
            vips_reason(err, errlen, "cannot decode");
            return false;
        }
        img = res;
    } else {
        if (vips_autorot(img, &res, NULL)) {
            vips_reason(err, errlen, "cannot decode");
            g_object_unref(img);
            return false;
        }
        take(&img, res);
        w = vips_image_get_width(img), h = vips_image_get_height(img);
        if (w != tw || h != th) {
            if (vips_resize(img, &res, (double)tw / w, "vscale", (double)th / h, NULL)) {
                vips_reason(err, errlen, "cannot resize");
                g_object_unref(img);
                return false;
            }
            take(&img, res);
        }
    }
    // Channels: drop alpha, convert colour <-> grey.
    int bands = vips_image_get_bands(img);
    if (vips_image_get_interpretation(img) == VIPS_INTERPRETATION_CMYK) {
        if (vips_colourspace(img, &res, VIPS_INTERPRETATION_sRGB, NULL))
            goto vips_failed;
        take(&img, res);
        bands = vips_image_get_bands(img);
    }
    if (bands == 2 || bands == 4) {
        if (vips_extract_band(img, &res, 0, "n", bands - 1, NULL))
            goto vips_failed;
        take(&img, res);
        bands--;
    }
    if (bands != 1 && bands != 3) {
        snprintf(err, errlen, "%d bands: grey or RGB images only", bands);
        g_object_unref(img);
        return false;
    }
    if (bands == 3 && o->channels == 1) {
        // ITU-R BT.601 luma of the stored values, as PIL's convert("L"),
        // torchvision's Grayscale and augment have it, and as a JPEG stores
        // its Y channel (which the JPEG path takes directly): a photo gets
        // the same grey whatever its format.  (libvips's B_W weighs linear
        // light instead: pure red would be 124, not 76.)
        static const double luma[3] = {0.299, 0.587, 0.114};
        VipsImage *weights = vips_image_new_matrix_from_array(3, 1, luma, 3);
        bool failed = !weights || vips_recomb(img, &res, weights, NULL);
        if (weights)
            g_object_unref(weights);
        if (failed)
            goto vips_failed;
        take(&img, res);
        if (vips_round(img, &res, VIPS_OPERATION_ROUND_RINT, NULL))
            goto vips_failed;
        take(&img, res);
    } else if (bands == 1 && o->channels == 3) {
        VipsImage *three[3] = {img, img, img};
        if (vips_bandjoin(three, &res, 3, NULL))
            goto vips_failed;
        take(&img, res);
    }
    if (vips_image_get_format(img) != (sixteen ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR)) {
        if (vips_cast(img, &res, sixteen ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR, NULL))
            goto vips_failed;
        take(&img, res);
    }
    // The pixels are computed on this thread (vips_image_write_to_memory
    // would hand the work to a libvips worker thread), so that every
    // warning the decoder raises lands in this thread's libmsg capture.
    w = vips_image_get_width(img), h = vips_image_get_height(img);
    int c = o->channels;
    if (vips_image_get_bands(img) != c) {
        snprintf(err, errlen, "decoder returned %d bands for %d channels", vips_image_get_bands(img), c);
        g_object_unref(img);
        return false;
    }
    VipsRegion *region = vips_region_new(img);
    VipsRect all = {0, 0, w, h};
    if (vips_region_prepare(region, &all)) {
        g_object_unref(region);
        goto vips_failed;
    }
    const uint8_t *hwc = (const uint8_t *)VIPS_REGION_ADDR(region, 0, 0);
    size_t row_bytes = (size_t)VIPS_REGION_LSKIP(region), sample = sixteen ? 2 : 1;

    // Centre crop box, then HWC -> CHW (and the 16 -> 8 bit window).
    int x0 = 0, y0 = 0, cw = w, ch = h;
    if (o->centre_crop && o->size > 0) {
        cw = w < o->size ? w : o->size;
        ch = h < o->size ? h : o->size;
        x0 = (w - cw) / 2;
        y0 = (h - ch) / 2;
    }
    bool out16 = sixteen && o->keep16;
    size_t plane = (size_t)cw * ch;
    uint16_t *wide = sixteen ? xmalloc(plane * c * 2) : NULL;
    uint8_t *narrow = out16 ? NULL : xmalloc(plane * c);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                const uint8_t *src = hwc + (size_t)(y0 + y) * row_bytes + ((size_t)(x0 + x) * c + k) * sample;
                size_t dst = (size_t)k * plane + (size_t)y * cw + x;
                if (sixteen)
                    memcpy(&wide[dst], src, 2);
                else
                    narrow[dst] = *src;
            }
    g_object_unref(region);
    g_object_unref(img);
    if (sixteen && !out16) {
        image_window_apply(&o->window, wide, plane * c, narrow);
        free(wide);
    }
    *out = (image_t){.channels = c, .height = ch, .width = cw, .u16 = out16,
                     .pixels = out16 ? (void *)wide : (void *)narrow, .page = page};
    return true;

vips_failed:
    vips_reason(err, errlen, "cannot convert");
    g_object_unref(img);
    return false;
}

// ---- DICOM ---------------------------------------------------------------------

// A grey frame's mapping from rescaled values r to [0, 1]: the file's VOI
// LUT, or its window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID), or
// lo..hi linearly.
typedef enum { VOI_RANGE, VOI_LINEAR, VOI_LINEAR_EXACT, VOI_SIGMOID, VOI_LUT } voi_kind;
typedef struct {
    voi_kind kind;
    double lo, hi;           // VOI_RANGE
    double c, w;             // VOI_LINEAR, _EXACT, SIGMOID
    const dicom_file *file;  // VOI_LUT
} voi_map;

static double voi_apply(const voi_map *v, double x)
{
    double c = v->c, w = v->w, y;
    switch (v->kind) {
    case VOI_LUT: return dicom_voi_lut(v->file, x);
    case VOI_LINEAR:
        if (x <= c - 0.5 - (w - 1) / 2)
            return 0;
        if (x > c - 0.5 + (w - 1) / 2)
            return 1;
        return (x - (c - 0.5)) / (w - 1) + 0.5;
    case VOI_LINEAR_EXACT:
        if (x <= c - w / 2)
            return 0;
        if (x > c + w / 2)
            return 1;
        return (x - c) / w + 0.5;
    case VOI_SIGMOID: return 1 / (1 + exp(-4 * (x - c) / w));
    case VOI_RANGE: break;
    }
    y = (x - v->lo) / (v->hi - v->lo);
    return y < 0 ? 0 : y > 1 ? 1 : y;
}

// The rescaled range lo..hi between two stored values (a negative slope
// swaps them); a flat range widened to one unit.
static void rescaled_range(const dicom_file *f, double s0, double s1, voi_map *v)
{
    double a = s0 * f->slope + f->intercept, b = s1 * f->slope + f->intercept;
    *v = (voi_map){.kind = VOI_RANGE, .lo = a < b ? a : b, .hi = a < b ? b : a};
    if (v->hi <= v->lo)
        v->hi = v->lo + 1;
}

// The table from every stored value of a grey frame (index: value - vmin,
// nvals of them) to its output: rescaled, windowed to 0..65535 and
// inverted for MONOCHROME1; with keep16 the rescaled value + 32768
// (MONOCHROME1: 32767 - rescaled), clamped to 0..65535.
static bool grey_table(const dicom_file *f, const image_opts *o, const int32_t *v, size_t n, int32_t vmin,
                       size_t nvals, uint16_t *table, char *err, size_t errlen)
{
    bool mono1 = strcmp(f->photometric, "MONOCHROME1") == 0;
    if (o->keep16) {
        for (size_t i = 0; i < nvals; i++) {
            double r = rint(((double)vmin + (double)i) * f->slope + f->intercept);
            double u = mono1 ? 32767 - r : r + 32768;
            table[i] = (uint16_t)(u < 0 ? 0 : u > 65535 ? 65535 : u);
        }
        return true;
    }
    voi_map voi;
    const image_window *w = &o->window;
    if (w->kind == WINDOW_DICOM && f->has_voi_lut) {
        voi = (voi_map){.kind = VOI_LUT, .file = f};
    } else if (w->kind == WINDOW_DICOM && f->has_window) {
        const char *fn = f->voi_function;
        voi = (voi_map){.kind = strcmp(fn, "LINEAR") == 0         ? VOI_LINEAR
                                : strcmp(fn, "LINEAR_EXACT") == 0 ? VOI_LINEAR_EXACT
                                : strcmp(fn, "SIGMOID") == 0      ? VOI_SIGMOID
                                                                  : VOI_RANGE,
                        .c = f->window_center, .w = f->window_width};
        if (voi.kind == VOI_RANGE) {
            snprintf(err, errlen, "VOI LUT Function (0028,1056) '%s': LINEAR, LINEAR_EXACT or SIGMOID expected", fn);
            return false;
        }
        if (voi.kind == VOI_LINEAR ? voi.w < 1 : voi.w <= 0) {
            snprintf(err, errlen, "Window Width (0028,1051) %g: at least 1 (LINEAR) or above 0 expected", voi.w);
            return false;
        }
    } else if (w->kind == WINDOW_FIXED) {
        voi = (voi_map){.kind = VOI_RANGE, .lo = w->lo, .hi = w->hi};
    } else if (w->kind == WINDOW_FULL || (w->kind == WINDOW_DICOM && f->bits_stored <= 8)) {
        rescaled_range(f, vmin, (double)vmin + (double)nvals - 1, &voi);
    } else {
        // Percentiles of the frame's own stored values (nearest rank).
        uint32_t *hist = xcalloc(nvals, sizeof *hist);
        for (size_t i = 0; i < n; i++)
            hist[v[i] - vmin]++;
        double ranks[2] = {w->lo / 100.0 * (double)(n - 1), w->hi / 100.0 * (double)(n - 1)}, at[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            size_t seen = 0;
            for (size_t i = 0; i < nvals; i++)
                if ((double)(seen += hist[i]) > ranks[k]) {
                    at[k] = (double)vmin + (double)i;
                    break;
                }
        }
        free(hist);
        rescaled_range(f, at[0], at[1], &voi);
    }
    for (size_t i = 0; i < nvals; i++) {
        double y = voi_apply(&voi, ((double)vmin + (double)i) * f->slope + f->intercept);
        table[i] = (uint16_t)lrint((mono1 ? 1 - y : y) * 65535);
    }
    return true;
}

// One decoded frame (samples, rows, columns of stored values) to an image.
static bool dicom_instance(const dicom_file *f, const image_opts *o, int32_t *v, int tw, int th, uint16_t *table,
                           uint16_t *display, img_workspace *ws, image_t *out, char *err, size_t errlen)
{
    int s = f->samples;
    size_t px = (size_t)f->rows * f->columns;
    bool out16;
    if (s == 1) {
        int32_t vmin = f->pixel_representation ? -(1 << (f->bits_stored - 1)) : 0;
        size_t nvals = (size_t)1 << f->bits_stored;
        if (!grey_table(f, o, v, px, vmin, nvals, table, err, errlen))
            return false;
        for (size_t i = 0; i < px; i++)
            display[i] = table[v[i] - vmin];
        out16 = o->keep16;
    } else {
        if (dicom_needs_rgb(f))
            dicom_ybr_to_rgb(v, px, f->bits_stored);
        // Colour is not rescaled nor windowed: stored values to 16 bits.
        uint32_t max = (1u << f->bits_stored) - 1;
        for (size_t i = 0; i < 3 * px; i++)
            display[i] = (uint16_t)(((uint64_t)(uint32_t)v[i] * 65535 + max / 2) / max);
        out16 = o->keep16 && f->bits_allocated == 16;
    }
    // Resized as load_jpeg does: the crop box in source pixels.
    int c = o->channels, cw = tw, ch = th;
    if (o->centre_crop) {
        cw = tw < o->size ? tw : o->size;
        ch = th < o->size ? th : o->size;
    }
    double sx = (double)f->columns / tw, sy = (double)f->rows / th;
    double x0 = (tw - cw) / 2 * sx, y0 = (th - ch) / 2 * sy;
    img_src src = {.channels = s, .height = f->rows, .width = f->columns, .u16 = true, .data = display};
    size_t plane = (size_t)cw * ch;
    float *resized = xmalloc((size_t)(s > c ? s : c) * plane * sizeof *resized);
    img_crop_resize(&src, x0, y0, x0 + cw * sx, y0 + ch * sy, cw, ch, false, false, resized, ws);
    if (s == 1 && c == 3) {
        memcpy(resized + plane, resized, plane * sizeof *resized);
        memcpy(resized + 2 * plane, resized, plane * sizeof *resized);
    } else if (s == 3 && c == 1) {
        img_luma(resized, plane, resized);
    }
    void *pixels;
    if (out16) {
        uint16_t *p = xmalloc((size_t)c * plane * 2);
        for (size_t i = 0; i < (size_t)c * plane; i++)
            p[i] = (uint16_t)lrintf(resized[i] * 65535.0f);
        pixels = p;
    } else {
        pixels = xmalloc((size_t)c * plane);
        img_to_u8(resized, c, plane, pixels);
    }
    free(resized);
    *out = (image_t){.channels = c, .height = ch, .width = cw, .u16 = out16, .pixels = pixels};
    return true;
}

static bool load_dicom(const void *data, size_t size, const image_opts *o, image_t **out, int *count, char *err,
                       size_t errlen)
{
    dicom_file f;
    if (!dicom_parse(data, size, &f, err, errlen))
        return false;
    int tw, th;
    bool ok = dicom_check_image(&f, err, errlen);
    if (ok && (uint64_t)f.rows * (uint64_t)f.columns > o->max_pixels) {
        snprintf(err, errlen, "%dx%d pixels, over the limit of %llu (--max-pixels)", f.columns, f.rows,
                 (unsigned long long)o->max_pixels);
        ok = false;
    }
    ok = ok && target_size(f.columns, f.rows, o, &tw, &th, err, errlen);
    // Frames multiply the output: a file of many 1-pixel frames resized
    // to 224 would ask for gigabytes.
    if (ok && (uint64_t)f.frames * (uint64_t)tw * (uint64_t)th > o->max_pixels) {
        snprintf(err, errlen, "%d frames of %dx%d resized to %dx%d: over the limit of %llu pixels in all "
                 "(--max-pixels)", f.frames, f.columns, f.rows, tw, th, (unsigned long long)o->max_pixels);
        ok = false;
    }
    if (!ok) {
        dicom_free(&f);
        return false;
    }
    size_t n = (size_t)f.rows * f.columns * (size_t)f.samples;
    int32_t *v = xmalloc(n * sizeof *v);
    uint16_t *display = xmalloc(n * sizeof *display);
    uint16_t *table = f.samples == 1 ? xmalloc(((size_t)1 << f.bits_stored) * sizeof *table) : NULL;
    image_t *imgs = xcalloc((size_t)f.frames, sizeof *imgs);
    img_workspace ws = {0};
    int k = 0;
    for (; ok && k < f.frames; k++) {
        char inner[400];
        ok = dicom_decode_frame(&f, k, v, inner, sizeof inner) &&
             dicom_instance(&f, o, v, tw, th, table, display, &ws, &imgs[k], inner, sizeof inner);
        if (!ok && f.frames > 1)
            snprintf(err, errlen, "frame %d: %s", k, inner);
        else if (!ok)
            snprintf(err, errlen, "%s", inner);
        imgs[k].page = k;
    }
    img_workspace_free(&ws);
    free(v);
    free(display);
    free(table);
    if (!ok) {
        for (int q = 0; q < k; q++)
            free(imgs[q].pixels);
        free(imgs);
        dicom_free(&f);
        return false;
    }
    *out = imgs;
    *count = f.frames;
    dicom_free(&f);
    return true;
}

// The loaders case-pack uses, by class-name prefix: the formats clinical
// photographs and radiographs come in, and the ones the fuzz target covers.
// libvips would also hand a file to ImageMagick, OpenSlide, PDFium, the FITS,
// Matlab or raw loaders and others it marks untrusted; an archive of
// patient images is no place to exercise those, so they are refused by name.
static const char *const allowed_loaders[] = {"VipsForeignLoadJpeg", "VipsForeignLoadPng",
                                              "VipsForeignLoadWebp", "VipsForeignLoadNsgif",
                                              "VipsForeignLoadTiff"};

static bool loader_allowed(const char *loader)
{
    for (size_t i = 0; i < sizeof allowed_loaders / sizeof *allowed_loaders; i++)
        if (strncmp(loader, allowed_loaders[i], strlen(allowed_loaders[i])) == 0)
            return true;
    return false;
}

// "VipsForeignLoadMagickBuffer" -> "magick": the loader's name in a message.
static void loader_name(const char *loader, char *buf, size_t len)
{
    static const char prefix[] = "VipsForeignLoad", suffix[] = "Buffer";
    if (strncmp(loader, prefix, sizeof prefix - 1) == 0)
        loader += sizeof prefix - 1;
    size_t n = strlen(loader);
    if (n > sizeof suffix - 1 && strcmp(loader + n - (sizeof suffix - 1), suffix) == 0)
        n -= sizeof suffix - 1;
    size_t i = 0;
    for (; i < n && i + 1 < len; i++)
        buf[i] = (char)tolower((unsigned char)loader[i]);
    buf[i] = 0;
}

bool image_load_file(const char *path, const image_opts *o, image_t **out, int *count,
                     char *err, size_t errlen)
{
    void *data;
    size_t size;
    *out = NULL;
    *count = 0;
    if (!read_file(path, &data, &size, err, errlen))
        return false;
    if (dicom_sniff(data, size)) {
        bool ok = load_dicom(data, size, o, out, count, err, errlen);
        free(data);
        return ok;
    }
    const char *loader = vips_foreign_find_load_buffer(data, size);
    if (!loader) {
        vips_error_clear();
        snprintf(err, errlen, "not a known image format");
        free(data);
        return false;
    }
    if (!loader_allowed(loader)) {
        char name[64];
        loader_name(loader, name, sizeof name);
        snprintf(err, errlen, "a format for libvips's %s loader, not read here (JPEG, PNG, WebP, GIF, TIFF): "
                 "convert it first, e.g. vips copy IN OUT.png", name);
        free(data);
        return false;
    }
    bool is_tiff = strstr(loader, "Tiff") != NULL, is_jpeg = strstr(loader, "Jpeg") != NULL;
    int pages = 1;
    if (is_tiff) {
        VipsImage *first = vips_image_new_from_buffer(data, size, "", NULL);
        if (!first) {
            vips_reason(err, errlen, "cannot decode");
            free(data);
            return false;
        }
        pages = vips_image_get_n_pages(first);
        g_object_unref(first);
    }
    image_t *imgs = xcalloc((size_t)pages, sizeof *imgs);
    for (int p = 0; p < pages; p++) {
        if (!load_page(data, size, p, is_tiff, is_jpeg, o, &imgs[p], err, errlen)) {
            if (pages > 1) {
                char inner[400];
                snprintf(inner, sizeof inner, "%s", err);
                snprintf(err, errlen, "page %d: %s", p, inner);
            }
            for (int q = 0; q < p; q++)
                free(imgs[q].pixels);
            free(imgs);
            free(data);
            return false;
        }
    }
    free(data);
    *out = imgs;
    *count = pages;
    return true;
}
