// jpeg: case-pack's fast path for JPEG photographs, straight through
// libjpeg(-turbo): decoding with DCT scaling (M/8, the smallest that keeps
// the short side at least the target), the EXIF orientation applied, planar
// u8 out.  libvips's thumbnail decodes an 800x600 photo at full size for a
// 224 target (it keeps a factor of 2 for its own resize) and spends a third
// of its time setting up a pipeline per image; this path is about 3 times
// faster (bench/run.sh, row 4).  CMYK and YCCK files are left to libvips.
#ifndef MEDSSL_JPEG_H
#define MEDSSL_JPEG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { JPEG_OK, JPEG_UNSUPPORTED, JPEG_FAILED } jpeg_status;

// A decoded JPEG: pixels (channels, height, width), malloc'ed, oriented as
// the file's EXIF tag says.  The decoder scales by scale = M/8 and rounds
// the size up, so the source's own (oriented) source_width x source_height
// pixels cover source_width * scale decoded columns, a fraction of a pixel
// less than width (and the same for rows).
typedef struct {
    uint8_t *pixels;
    int width, height;
    int source_width, source_height;
    double scale;
} jpeg_image;

// Decodes data (a whole JPEG file) to `channels` (1: libjpeg's luma, 3: RGB)
// with the short side at least min_short (0 or less: full size).  A source
// over max_pixels, or a broken file, gives JPEG_FAILED with the reason in
// err; JPEG_UNSUPPORTED (CMYK; 12-bit or lossless JPEG,
// which this libjpeg-turbo cannot decode, with the reason) asks the caller
// to use libvips, or to refuse.
jpeg_status jpeg_decode(const void *data, size_t size, int channels, int min_short, uint64_t max_pixels,
                        jpeg_image *out, char *err, size_t errlen);

#endif
