#include "jpeg.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "libmsg.h"
#include "util.h"

// libjpeg reports a fatal error through error_exit, which must not return:
// it jumps back to jpeg_decode with the message kept.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf back;
    char message[JMSG_LENGTH_MAX];
    int truncated;
    char damage[JMSG_LENGTH_MAX];   // the first warning that means lost pixels
} error_mgr;

static void on_error(j_common_ptr cinfo)
{
    error_mgr *e = (error_mgr *)cinfo->err;
    cinfo->err->format_message(cinfo, e->message);
    longjmp(e->back, 1);
}

// Warnings (level -1) go to libmsg, except those that mean pixels are lost:
// the data ending before the image does (libjpeg would fill the rest with
// grey; libvips calls it an error, and so do we: a truncated file is a bad
// file, not a picture), and a damaged entropy-coded segment (libjpeg skips
// to the next restart marker, leaving blocks of grey).  Trace messages
// (level > 0) are for debugging libjpeg.
static void on_message(j_common_ptr cinfo, int level)
{
    error_mgr *e = (error_mgr *)cinfo->err;
    if (level >= 0)
        return;
    int code = cinfo->err->msg_code;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    if (code == JWRN_JPEG_EOF)
        e->truncated = 1;
    else if (code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) {
        if (!e->damage[0])
            snprintf(e->damage, sizeof e->damage, "%s", text);
    } else
        libmsg_warn("libjpeg", text);
}

static unsigned get16(const uint8_t *p, int big)
{
    return big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t get32(const uint8_t *p, int big)
{
    return big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

// The orientation tag (0x0112) of IFD0 in an APP1 "Exif" marker: 1 to 8,
// 1 (as stored) when absent or malformed.
static int exif_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || m->data_length < 14 || memcmp(m->data, "Exif\0\0", 6) != 0)
            continue;
        const uint8_t *tiff = m->data + 6;
        size_t len = m->data_length - 6;
        int big = tiff[0] == 'M';
        if (memcmp(tiff, big ? "MM" : "II", 2) != 0 || get16(tiff + 2, big) != 42)
            return 1;
        uint32_t ifd = get32(tiff + 4, big);
        if (ifd > len - 2)
            return 1;
        unsigned count = get16(tiff + ifd, big);
        for (unsigned i = 0; i < count && ifd + 2 + 12 * (size_t)(i + 1) <= len; i++) {
            const uint8_t *entry = tiff + ifd + 2 + 12 * (size_t)i;
            if (get16(entry, big) == 0x0112 && get16(entry + 2, big) == 3) {
                unsigned v = get16(entry + 8, big);
                return v >= 1 && v <= 8 ? (int)v : 1;
            }
        }
        return 1;
    }
    return 1;
}

// Interleaved rows (h, w, c) as stored -> planar (c, H, W) as displayed.
// Orientations 5-8 swap the axes; for each displayed pixel (x, y) the
// stored one is (sx, sy).
static void orient_to_planar(const uint8_t *hwc, int w, int h, int c, int orientation, uint8_t *out)
{
    int W = orientation >= 5 ? h : w, H = orientation >= 5 ? w : h;
    size_t plane = (size_t)W * H;
    if (orientation == 1) {   // the common case, without the per-pixel switch
        for (size_t i = 0; i < plane; i++)
            for (int k = 0; k < c; k++)
                out[(size_t)k * plane + i] = hwc[i * c + k];
        return;
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx, sy;
            switch (orientation) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            case 8: sx = w - 1 - y, sy = x; break;
            default: sx = x, sy = y; break;
            }
            const uint8_t *p = hwc + ((size_t)sy * w + sx) * c;
            for (int k = 0; k < c; k++)
                out[(size_t)k * plane + (size_t)y * W + x] = p[k];
        }
}

jpeg_status jpeg_decode(const void *data, size_t size, int channels, int min_short, uint64_t max_pixels,
                        jpeg_image *out, char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    error_mgr e;
    // Written after setjmp and read after a longjmp: volatile.
    uint8_t *volatile rows = NULL;
    out->pixels = NULL;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    e.truncated = 0;
    e.damage[0] = 0;
    if (setjmp(e.back)) {
        // 12-bit and lossless JPEG: this libjpeg-turbo (2.1, 8-bit API)
        // reads 8-bit lossy JPEG only; the caller says so.
        int code = e.pub.msg_code;
        bool unsupported = code == JERR_BAD_PRECISION || code == JERR_SOF_UNSUPPORTED;
        snprintf(err, errlen, "%s%s", unsupported ? "" : "cannot decode: ", e.message);
        jpeg_destroy_decompress(&cinfo);
        free(rows);
        return unsupported ? JPEG_UNSUPPORTED : JPEG_FAILED;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        snprintf(err, errlen, "%ux%u pixels, over the limit of %llu (--max-pixels)", cinfo.image_width,
                 cinfo.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return JPEG_FAILED;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(err, errlen, "a CMYK or YCCK JPEG");
        jpeg_destroy_decompress(&cinfo);
        return JPEG_UNSUPPORTED;
    }
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    // The smallest scale M/8 whose output keeps the short side >= min_short
    // (libjpeg-turbo scales by any M/8; 3/8 for 800x600 -> 224 decodes a
    // third faster, resizing included, than PIL's choice of 1/2).
    cinfo.scale_denom = 8;
    cinfo.scale_num = 8;
    for (unsigned m = 1; m <= 8 && min_short > 0; m++) {
        cinfo.scale_num = m;
        jpeg_calc_output_dimensions(&cinfo);
        unsigned short_side = cinfo.output_width < cinfo.output_height ? cinfo.output_width : cinfo.output_height;
        if ((int)short_side >= min_short)
            break;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
    int sw = (int)cinfo.image_width, sh = (int)cinfo.image_height;
    double scale = cinfo.scale_num / 8.0;
    rows = xmalloc((size_t)w * h * c);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = rows + (size_t)cinfo.output_scanline * w * c;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    int orientation = exif_orientation(&cinfo);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (e.truncated) {
        snprintf(err, errlen, "cannot decode: the file ends before the image does");
        free(rows);
        return JPEG_FAILED;
    }
    if (e.damage[0]) {
        snprintf(err, errlen, "cannot decode: damaged data (libjpeg: %s)", e.damage);
        free(rows);
        return JPEG_FAILED;
    }
    uint8_t *planar = xmalloc((size_t)w * h * c);
    orient_to_planar(rows, w, h, c, orientation, planar);
    free(rows);
    bool swap = orientation >= 5;
    *out = (jpeg_image){.pixels = planar, .width = swap ? h : w, .height = swap ? w : h,
                        .source_width = swap ? sh : sw, .source_height = swap ? sw : sh, .scale = scale};
    return JPEG_OK;
}
