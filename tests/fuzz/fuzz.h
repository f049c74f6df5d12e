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

#endif
