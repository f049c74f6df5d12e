// Fuzz target: the DICOM reader (lib/io/dicom.c: the element walker, the meta
// group, deflate, sequences, encapsulated pixel data and frames, RLE, and
// the JPEG, JPEG-LS and JPEG 2000 libraries through our glue), then the
// same file through image_load_file as case-pack reads it (rescale, window,
// MONOCHROME1, resizing, channels).  CharLS, OpenJPEG and libjpeg are not
// instrumented: coverage guides the fuzzer through our code only.
//
// Input: one byte of options, then the file.
//   bit 0: 1 channel (else 3)    bit 1: keep 16 bits    bit 2: centre crop
//   bits 3-4: window dicom, percentile, fixed, full     bit 5: original size
#include <stdlib.h>

#include "dicom.h"
#include "fuzz.h"
#include "image.h"

// Small enough that a declared size cannot make one run slow.
#define MAX_PIXELS (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    image_init((*argv)[0]);
    return 0;
}

static void decode_all(const uint8_t *data, size_t size)
{
    dicom_file f;
    char err[400];
    if (!dicom_parse(data, size, &f, err, sizeof err))
        return;
    if (dicom_check_image(&f, err, sizeof err) &&
        (uint64_t)f.rows * f.columns * (uint64_t)f.frames <= MAX_PIXELS) {
        size_t n = (size_t)f.rows * f.columns * (size_t)f.samples;
        int32_t *v = malloc(n * sizeof *v);
        int32_t lo = f.pixel_representation ? -(1 << (f.bits_stored - 1)) : 0;
        int32_t hi = f.pixel_representation ? (1 << (f.bits_stored - 1)) - 1 : (1 << f.bits_stored) - 1;
        for (int k = 0; k < f.frames; k++) {
            if (!dicom_decode_frame(&f, k, v, err, sizeof err))
                break;
            // Every decoded value is one Bits Stored can hold.
            for (size_t i = 0; i < n; i++)
                if (v[i] < lo || v[i] > hi)
                    __builtin_trap();
        }
        free(v);
    }
    dicom_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t b = data[0];
    decode_all(data + 1, size - 1);
    static const image_window windows[4] = {
        {WINDOW_DICOM, 0.5, 99.5}, {WINDOW_PERCENTILE, 0, 100}, {WINDOW_FIXED, -1000, 400}, {WINDOW_FULL, 0, 65535}};
    fuzz_load_image(data + 1, size - 1, b, windows, MAX_PIXELS);
    return 0;
}
