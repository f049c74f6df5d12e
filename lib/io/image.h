// image: decoding image files into planar tensors, as case-pack needs them.
//
// One file gives one or more instances: a multi-page TIFF gives one per page.
// Every instance is resized so that its short side is `size` (keeping the
// aspect ratio; optionally centre-cropped to size x size), converted to the
// wanted number of channels (1: grey, 3: RGB; an alpha band is dropped) and
// returned as a (C, H, W) array of u8 or u16.
//
// Formats are sniffed from the bytes, not the name.  JPEG (but CMYK) is
// decoded by libjpeg-turbo directly (jpeg.h: DCT scaling, EXIF orientation,
// corrupt data refused); PNG, WebP, GIF, TIFF (8/16-bit, grey/RGB,
// multi-page) and CMYK JPEG by libvips, which refuses damaged data too
// (fail_on=error) and whose warnings go to the thread's libmsg capture.
// DICOM files are ours (lib/io/dicom.h): one instance per frame, the stored
// values rescaled, windowed (WINDOW_DICOM: the file's window) and
// MONOCHROME1 inverted, in that order, at full size; then resized as JPEG
// photographs are (img_crop_resize).  8-bit sources go through
// vips_thumbnail, which uses WebP shrink-on-load.  16-bit sources take
// vips_resize instead, because vips_thumbnail returns 8 bits even for 16-bit
// input; they are then kept as u16 or mapped to 8 bits through a window (see
// image_window).
//
// Thread safety: image_load may run in several threads at once (each call
// uses libvips single-threaded; parallelism is across files, which also makes
// the bytes independent of the thread count).
#ifndef MEDSSL_IMAGE_H
#define MEDSSL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// How 16-bit images become 8-bit (when not kept as u16).
typedef enum {
    WINDOW_PERCENTILE,  // lo/hi are percentiles of the image's own values
    WINDOW_FIXED,       // lo/hi are raw values (rescaled values for DICOM)
    WINDOW_FULL,        // 0..65535 -> 0..255 (DICOM: the stored values' range)
    WINDOW_DICOM,       // a DICOM file's own window; else percentiles lo/hi
} window_kind;

typedef struct {
    window_kind kind;
    double lo, hi;
} image_window;

typedef struct {
    int size;            // short side after resizing; 0 keeps the original size
    bool centre_crop;    // then crop the centre size x size
    int channels;        // 1 or 3
    bool keep16;         // 16-bit sources stay u16 (else windowed to u8)
    image_window window;
    uint64_t max_pixels; // refuse larger sources (decompression bombs)
} image_opts;

typedef struct {
    int channels, height, width;
    bool u16;            // pixels are uint16_t, else uint8_t
    void *pixels;        // (C, H, W), owned (free with free())
    int page;            // page (DICOM: frame) of the source file
} image_t;

// Once per process, before threads start (wraps VIPS_INIT, makes libvips
// single-threaded per operation).
void image_init(const char *argv0);

// Decodes every page of `path` into *out (an array of *count images, owned by
// the caller; free each pixels and the array).  Returns false with a reason
// in err ("not a known image format", "truncated JPEG", ...) on failure.
bool image_load_file(const char *path, const image_opts *o, image_t **out, int *count,
                     char *err, size_t errlen);

// Parses "percentile:LO,HI", "fixed:LO,HI" (LO may be negative: Hounsfield
// units), "full" or "dicom" (percentile:0.5,99.5 for files without a
// window of their own); false when malformed.
bool image_window_parse(const char *s, image_window *w);

// Maps 16-bit values to 8 bits through the window: values at or below lo
// become 0, at or above hi 255, linear between.  n values.
void image_window_apply(const image_window *w, const uint16_t *in, size_t n, uint8_t *out);

#endif
