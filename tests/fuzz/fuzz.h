// fuzz: what the libFuzzer targets share (see README.md in this folder).
//
// Some library functions under test take a path (pack_open, ckpt_load,
// image_load_file): the input is written to a memfd and handed over as
// /proc/self/fd/N, so that a million executions do not touch the disk.
#ifndef MEDSSL_FUZZ_H
#define MEDSSL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"

// The input as a file; the same path (and file) at every call.
static inline const char *fuzz_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        perror("fuzz input");
        abort();
    }
    return path;
}

// Reads every byte (volatile: not optimised out), so that AddressSanitizer
// sees an access past what the library says is there.
static inline void fuzz_touch(const void *data, size_t n)
{
    const volatile uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        (void)p[i];
}

// image_load_file on the file under the options of the option byte b (bit
// 0: 1 channel, bit 1: keep 16 bits, bit 2: centre crop, bits 3-4: one of
// `windows`, bit 5: original size), at most max_pixels; traps on an image
// that does not fit the options and reads every byte of each.
static inline void fuzz_load_image(const uint8_t *file, size_t size, uint8_t b, const image_window windows[4],
                                   uint64_t max_pixels)
{
    image_opts o = {.size = b & 32 ? 0 : 16, .centre_crop = (b & 4) && !(b & 32),
                    .channels = b & 1 ? 1 : 3, .keep16 = b & 2, .window = windows[(b >> 3) & 3],
                    .max_pixels = max_pixels};
    const char *path = fuzz_file(file, size);
    image_t *images;
    int count;
    char err[400];
    if (!image_load_file(path, &o, &images, &count, err, sizeof err))
        return;
    for (int i = 0; i < count; i++) {
        image_t *im = &images[i];
        if (im->channels != o.channels || im->height < 1 || im->width < 1 || (im->u16 && !o.keep16))
            __builtin_trap();
        fuzz_touch(im->pixels, (size_t)im->channels * im->height * im->width * (im->u16 ? 2 : 1));
        free(im->pixels);
    }
    free(images);
}

#endif
