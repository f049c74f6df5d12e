// Fuzz target: image decoding as case-pack does it (image_load_file: format
// sniffing, TIFF pages, resizing, channels, the 16-bit window, the centre
// crop, the planar copy).  libvips and its loaders are not instrumented:
// coverage guides the fuzzer through our code only, but AddressSanitizer
// still checks every access of ours to what libvips returns.
//
// Input: one byte of options, then the file.
//   bit 0: 1 channel (else 3)    bit 1: keep 16 bits    bit 2: centre crop
//   bits 3-4: window percentile, fixed, full            bit 5: original size
#include <stdlib.h>

#include "fuzz.h"
#include "image.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    image_init((*argv)[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t b = data[0];
    static const image_window windows[4] = {
        {WINDOW_PERCENTILE, 0.5, 99.5}, {WINDOW_FIXED, 100, 4000}, {WINDOW_FULL, 0, 65535},
        {WINDOW_PERCENTILE, 0, 100}};
    // Small enough that a declared size cannot make one run slow.
    fuzz_load_image(data + 1, size - 1, b, windows, 1u << 20);
    return 0;
}
