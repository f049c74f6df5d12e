// mkpack: writes a synthetic pack for tests and benchmarks without decoding
// any image: N cases, case i having 1 + (i % MAXINST) instances of u8
// (C, H, W), multi-class labels i % CLASSES, every fifth case in "test".
// Pixel values encode (case, instance) so a reader can tell them apart:
// every pixel of case i, instance k is (i * 7 + k * 50) % 256.
// With "stripes", images are learnable instead: class k is a sine grating
// at angle 180 k / CLASSES degrees, each case with its own frequency and
// phase, each instance shifted and noisy (the training tests need a signal).
//
//   mkpack OUT.pack N MAXINST CLASSES C H W [stripes]
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "rng.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "stripes") == 0))
        die_usage("mkpack OUT.pack N MAXINST CLASSES C H W [stripes]");
    bool stripes = argc == 9;
    int n = atoi(argv[2]), maxinst = atoi(argv[3]), nclasses = atoi(argv[4]);
    int64_t shape[3] = {atoi(argv[5]), atoi(argv[6]), atoi(argv[7])};
    size_t plane = (size_t)(shape[0] * shape[1] * shape[2]);
    char *classes[PACK_MAX_CLASSES], *splits[2] = {"train", "test"};
    for (int k = 0; k < nclasses; k++) {
        classes[k] = xmalloc(16);
        snprintf(classes[k], 16, "class%d", k);
    }
    pack_meta m = {.task = TASK_MULTICLASS, .nclasses = nclasses, .classes = classes, .nsplits = 2,
                   .splits = splits, .channels = (int)shape[0], .dtype = MTS_U8, .size = (int)shape[1]};
    pack_writer *w = pack_writer_open(argv[1], &m, 0, argc, argv);
    uint8_t *pixels = xmalloc(plane * maxinst);
    mts_tensor images[64];
    const char *files[64];
    int pages[64];
    for (int i = 0; i < n; i++) {
        int ninst = 1 + i % maxinst;
        rng_t r = rng_make(1, (uint64_t)i, 0, 0);
        double angle = M_PI * (i % nclasses) / nclasses, freq = 0.15 + 0.1 * rng_uniform(&r);
        double phase = 2 * M_PI * rng_uniform(&r);
        for (int k = 0; k < ninst; k++) {
            if (!stripes) {
                memset(pixels + k * plane, (i * 7 + k * 50) % 256, plane);
            } else {
                double shift = 3 * rng_normal(&r);
                for (size_t p = 0; p < plane; p++) {
                    int64_t y = (int64_t)(p / (size_t)shape[2]) % shape[1], x = (int64_t)(p % (size_t)shape[2]);
                    double u = (x + shift) * cos(angle) + y * sin(angle);
                    double v = 128 + 90 * sin(2 * M_PI * freq * u + phase) + 20 * rng_normal(&r);
                    pixels[k * plane + p] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
            images[k] = mts_tensor_make(MTS_U8, 3, shape, pixels + k * plane);
            files[k] = "synthetic";
            pages[k] = k;
        }
        char id[32];
        snprintf(id, sizeof id, "case%05d", i);
        pack_case c = {.id = id, .split = i % 5 == 4, .labeled = true, .label = i % nclasses,
                       .ninst = ninst, .images = images, .files = files, .pages = pages};
        pack_write_case(w, &c);
    }
    pack_writer_close(w);
    free(pixels);
    for (int k = 0; k < nclasses; k++)
        free(classes[k]);
    return 0;
}
