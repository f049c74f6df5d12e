// Fuzz target: the stream reader (mts_reader_memopen, mts_read: the frame
// scanner, zstd detection and decompression, msgpack-c's parse) and the
// tensor accessors, on any bytes.
//
// Beyond "no crash", one property: a frame the reader accepted, re-encoded
// by msgpack-c (as augment and embed pass keys through), is accepted again
// and re-encodes to the same bytes.
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "stream.h"

static mts_limits limits;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    limits = mts_limits_default();
    // Inputs are small, but zstd can expand 4 KB into a hundred megabytes:
    // a lower frame limit keeps every execution fast (the limit's own
    // checks are the same at any value).
    limits.max_frame = 16u << 20;
    return 0;
}

// Checks every map that has the tensor keys; converts the valid ones.
static void walk(const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            walk(&o->via.array.ptr[i]);
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        mts_tensor t;
        char err[300];
        if (mts_object_is_tensor(o) && mts_object_tensor(o, &t, err, sizeof err)) {
            size_t n = mts_tensor_count(&t);
            if (n * mts_dtype_size(t.dtype) != t.nbytes)
                __builtin_trap();  // the reader promised count x size = data
            float *x = malloc(n * sizeof *x + 1);
            mts_tensor_to_f32(&t, x);
            fuzz_touch(x, n * sizeof *x);
            free(x);
        }
        for (uint32_t i = 0; i < o->via.map.size; i++)
            walk(&o->via.map.ptr[i].val);
    }
}

static void reencode(const msgpack_object *root, msgpack_sbuffer *out)
{
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mts_reader *r = mts_reader_memopen(data, size, "fuzz", &limits);
    mts_frame f;
    int got;
    while ((got = mts_read(r, &f)) > 0) {
        if (f.offset + f.size != mts_reader_offset(r) || f.root.type != MSGPACK_OBJECT_MAP)
            __builtin_trap();
        walk(&f.root);

        msgpack_sbuffer once, twice;
        reencode(&f.root, &once);
        mts_reader *again = mts_reader_memopen(once.data, once.size, "again", &limits);
        mts_frame g;
        if (mts_read(again, &g) != 1 || g.size != once.size || g.is_header != f.is_header)
            __builtin_trap();
        reencode(&g.root, &twice);
        if (twice.size != once.size || memcmp(twice.data, once.data, once.size) != 0)
            __builtin_trap();
        mts_reader_close(again);
        msgpack_sbuffer_destroy(&once);
        msgpack_sbuffer_destroy(&twice);
    }
    // Every error message starts with the byte offset it is about.
    if (got < 0 && strncmp(mts_reader_error(r), "byte ", 5) != 0)
        __builtin_trap();
    mts_reader_close(r);
    return 0;
}
