// mkstream: writes a synthetic tensor stream for the tool tests and the
// stream benchmark: a header, then N records {"case", "inst", "image"} whose
// image is a deterministic pattern of the given dtype and shape.
//
//   mkstream N DTYPE D0 [D1 ...] > out.mts      (DTYPE u8|u16|i32|i64|f32|f64)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc < 3)
        die_usage("mkstream N DTYPE [DIM...]");
    long n = atol(argv[1]);
    mts_dtype dtype;
    if (!mts_dtype_parse(argv[2], strlen(argv[2]), &dtype))
        die_usage("unknown dtype %s", argv[2]);
    int rank = argc - 3;
    int64_t shape[MTS_MAX_RANK];
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        count *= (size_t)(shape[i] = atoll(argv[3 + i]));
    size_t esize = mts_dtype_size(dtype);
    unsigned char *data = xmalloc(count * esize);
    mts_write_opts opts = {.zstd_level = -1};
    mts_writer *w = mts_writer_open(getenv("MKSTREAM_OUT"), &opts);
    mts_write_header(w, "mkstream", argc, argv, 1);
    mts_put_int(w, "records", n);
    for (long r = 0; r < n; r++) {
        // A smooth pattern with some noise: compresses like a photo, roughly.
        uint32_t h = (uint32_t)r * 2654435761u;
        for (size_t i = 0; i < count; i++) {
            h ^= h << 13, h ^= h >> 17, h ^= h << 5;
            double v = (double)((i / 3) % 224 + (i / 672) % 224) / 2 + (h & 7);
            switch (dtype) {
            case MTS_U8: data[i] = (unsigned char)v; break;
            case MTS_U16: { uint16_t x = (uint16_t)(v * 256); memcpy(data + 2 * i, &x, 2); break; }
            case MTS_I32: { int32_t x = (int32_t)v - 100; memcpy(data + 4 * i, &x, 4); break; }
            case MTS_I64: { int64_t x = (int64_t)v - 100; memcpy(data + 8 * i, &x, 8); break; }
            case MTS_F32: { float x = (float)(v / 255); memcpy(data + 4 * i, &x, 4); break; }
            case MTS_F64: { double x = v / 255; memcpy(data + 8 * i, &x, 8); break; }
            }
        }
        char id[32];
        snprintf(id, sizeof id, "case%06ld", r / 2);
        mts_tensor t = mts_tensor_make(dtype, rank, shape, data);
        mts_begin_map(w, 3);
        mts_put_str(w, "case", id);
        mts_put_int(w, "inst", r % 2);
        mts_put_tensor(w, "image", &t);
    }
    mts_writer_close(w);
    free(data);
    return 0;
}
