// mkpack: writes a synthetic pack for tests and benchmarks without decoding
// any image: N cases, case i having 1 + (i % MAXINST) instances of u8
// (C, H, W), multi-class labels i % CLASSES, every fifth case in "test".
// Pixel values encode (case, instance) so a reader can tell them apart:
// every pixel of case i, instance k is (i * 7 + k * 50) % 256.
//
//   mkpack OUT.pack N MAXINST CLASSES C H W
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 8)
        die_usage("mkpack OUT.pack N MAXINST CLASSES C H W");
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
        for (int k = 0; k < ninst; k++) {
            memset(pixels + k * plane, (i * 7 + k * 50) % 256, plane);
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
