// mkpairs: writes pair records the way pair-sample(1) does, with textured
// images, for augment's tool tests (which need pairs whose content they
// control, and single-image records with the same content).
//
//   mkpairs N C H W MODE > out.mts
//
// MODE simclr: records {"case", "inst_a", "inst_b", "a", "b", "label",
// "split", "epoch", "index"} with a == b; micle: a and b different images;
// single: {"case", "inst", "image", "epoch", "index"} with image = the a of
// the simclr stream.  Record i has epoch 1 + i % 2 and index 10 + i, so that
// a reader can tell them from its own record counter.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

// A smooth diagonal ramp with 4 bits of noise, different per record,
// instance and channel.
static void texture(uint8_t *img, int C, int H, int W, long record, int inst)
{
    uint32_t h = (uint32_t)(record * 2 + inst + 1) * 2654435761u;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                h ^= h << 13, h ^= h >> 17, h ^= h << 5;
                int v = (x * (3 + c) + y * (5 + inst) + (int)record * 17) % 200 + (int)(h & 15);
                img[((size_t)c * H + y) * W + x] = (uint8_t)v;
            }
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 6)
        die_usage("mkpairs N C H W simclr|micle|single");
    long n = atol(argv[1]);
    int C = atoi(argv[2]), H = atoi(argv[3]), W = atoi(argv[4]);
    const char *mode = argv[5];
    bool single = strcmp(mode, "single") == 0, micle = strcmp(mode, "micle") == 0;
    if (!single && !micle && strcmp(mode, "simclr") != 0)
        die_usage("mode: simclr, micle or single");
    int64_t shape[3] = {C, H, W};
    size_t count = (size_t)C * H * W;
    uint8_t *a = xmalloc(count), *b = xmalloc(count);
    mts_write_opts opts = {.zstd_level = -1};
    mts_writer *w = mts_writer_open(NULL, &opts);
    mts_write_header(w, "mkpairs", argc, argv, 2);
    mts_put_str(w, "mode", mode);
    mts_put_int(w, "pairs_per_epoch", n);
    for (long r = 0; r < n; r++) {
        char id[32];
        snprintf(id, sizeof id, "case%06ld", r);
        texture(a, C, H, W, r, 0);
        texture(b, C, H, W, r, micle ? 1 : 0);
        mts_tensor ta = mts_tensor_make(MTS_U8, 3, shape, a), tb = mts_tensor_make(MTS_U8, 3, shape, b);
        if (single) {
            mts_begin_map(w, 5);
            mts_put_str(w, "case", id);
            mts_put_int(w, "inst", 0);
            mts_put_tensor(w, "image", &ta);
        } else {
            mts_begin_map(w, 9);
            mts_put_str(w, "case", id);
            mts_put_int(w, "inst_a", 0);
            mts_put_int(w, "inst_b", micle ? 1 : 0);
            mts_put_tensor(w, "a", &ta);
            mts_put_tensor(w, "b", &tb);
            mts_put_int(w, "label", r % 3);
            mts_put_str(w, "split", "train");
        }
        mts_put_int(w, "epoch", 1 + r % 2);
        mts_put_int(w, "index", 10 + r);
    }
    mts_writer_close(w);
    free(a);
    free(b);
    return 0;
}
