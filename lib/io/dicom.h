// dicom: our own reader of DICOM files (PS3.10), for case-pack.
//
// The parser walks the file's structure: the 128-byte preamble and "DICM"
// (or a bare data set starting at group 0008), the file meta group
// (explicit VR little endian), then the data set in its transfer syntax:
// implicit or explicit VR little endian, explicit VR big endian, or deflated
// explicit VR little endian (inflated with zlib, to at most
// DICOM_MAX_INFLATED bytes).  Sequences are skipped (items of defined or
// undefined length, nested at most DICOM_MAX_DEPTH deep), except the first
// item of the VOI LUT Sequence; the attributes case-pack needs are kept:
// the ids cases are grouped by, the image pixel module, rescale, window and
// VOI LUT.  Pixel data is native or encapsulated (a basic
// offset table, then fragments, mapped to frames).
//
// Strictness, as lib/io/stream.c: every length is checked against the bytes
// present (and counts against limits) before anything is allocated or read;
// a malformed file gives false with "byte N, tag (GGGG,EEEE): what" in err
// ("inflated byte N" inside a deflated data set).
//
// Frames decode to the stored values, planar (samples, rows, columns) int32,
// masked to BitsStored and sign-extended when PixelRepresentation is 1:
// native, RLE Lossless (our decoder), lossless JPEG (process 14: our
// decoder, lib/io/ljpeg.h), JPEG baseline and 8-bit extended (libjpeg-turbo:
// its output is RGB), JPEG-LS (CharLS), JPEG 2000 (OpenJPEG, which applies
// the codestream's colour transform).  12-bit JPEG is refused with a
// conversion command: Debian 12's libjpeg-turbo 2.1 decodes 8-bit lossy
// JPEG only.
#ifndef MEDSSL_DICOM_H
#define MEDSSL_DICOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DICOM_MAX_DEPTH 16                     // sequence nesting
#define DICOM_MAX_FRAMES 100000
#define DICOM_MAX_FRAGMENTS (1 << 20)
#define DICOM_MAX_INFLATED ((size_t)1 << 30)   // a deflated data set, inflated
#define DICOM_ID_MAX 64                        // LO, UI and CS values

typedef enum {
    DICOM_NATIVE, DICOM_RLE, DICOM_JPEG, DICOM_JPEG_LOSSLESS, DICOM_JPEG_LS, DICOM_J2K, DICOM_OTHER
} dicom_codec;

typedef struct {
    size_t offset, length;   // in data
} dicom_span;

typedef struct {
    const uint8_t *data;     // the data set's bytes: the file, or the inflated data set (owned)
    size_t size;
    uint8_t *owned;
    char transfer_syntax[DICOM_ID_MAX + 1];
    bool big_endian, explicit_vr;
    dicom_codec codec;
    // Ids; empty when absent.
    char patient_id[DICOM_ID_MAX + 1], study_uid[DICOM_ID_MAX + 1], series_uid[DICOM_ID_MAX + 1];
    // Image pixel module; 0 when absent (frames: 1).
    char photometric[DICOM_ID_MAX + 1];
    int rows, columns, samples, bits_allocated, bits_stored, high_bit, pixel_representation, planar, frames;
    // Rescale (1, 0 when absent) and the first window (has_window), with its
    // VOI LUT Function (LINEAR when absent).
    double slope, intercept;
    bool has_window;
    double window_center, window_width;
    char voi_function[DICOM_ID_MAX + 1];
    // The first item of the VOI LUT Sequence (0028,3010), when present:
    // lut_count 16-bit entries at lut_offset, the first for the value
    // lut_first, lut_bits significant bits each.
    bool has_voi_lut;
    int lut_count, lut_first, lut_bits;
    size_t lut_offset;
    // Pixel Data (7FE0,0010): native at pixel_offset, or encapsulated:
    // frame k is fragments frame_first[k] .. frame_first[k + 1] - 1.
    bool has_pixels, encapsulated, pixel_ow;
    size_t pixel_offset, pixel_length, pixel_tag_offset;
    dicom_span *fragments;
    int nfragments;
    int *frame_first;
} dicom_file;

// A DICOM file by its first bytes: "DICM" at byte 128, or a data set
// without preamble starting with a group 0008 element.
bool dicom_sniff(const void *data, size_t size);

// Parses the structure of data (which must outlive *f).  False with the
// reason in err (*f then needs no dicom_free).
bool dicom_parse(const void *data, size_t size, dicom_file *f, char *err, size_t errlen);
void dicom_free(dicom_file *f);

// Whether the image attributes and the pixel data can be decoded (what
// dicom_decode_frame needs): false with the reason, naming the transfer
// syntax and a conversion command for what is refused.  Maps the fragments
// to frames.
bool dicom_check_image(dicom_file *f, char *err, size_t errlen);

// Frame k (0 <= k < frames) of a checked file: out holds samples * rows *
// columns stored values, planar.  Colour is as stored, except that JPEG
// and JPEG 2000 give RGB (see dicom_needs_rgb).
bool dicom_decode_frame(const dicom_file *f, int k, int32_t *out, char *err, size_t errlen);

// The VOI LUT (has_voi_lut) at the rescaled value x, in [0, 1]: values
// below the first entry take it, above the last the last.
double dicom_voi_lut(const dicom_file *f, double x);

// Whether decoded colour frames are YCbCr (YBR_FULL, YBR_FULL_422 outside
// JPEG and JPEG 2000) and need dicom_ybr_to_rgb.
bool dicom_needs_rgb(const dicom_file *f);
// (3, n) full-range YCbCr of `bits` bits -> RGB in place (PS3.3 C.7.6.3.1.2).
void dicom_ybr_to_rgb(int32_t *planes, size_t n, int bits);

// The transfer syntax's name ("JPEG Lossless, SV1"), or NULL if unknown.
const char *dicom_syntax_name(const char *uid);

#endif
