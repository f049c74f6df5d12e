// Fuzz target: the pack reader: pack_open (footer, header, index and its
// checks) on the input as a file, then every case record as pair-sample
// reads them (pack_read_case_checked, the images, the index entries).
#include <stdlib.h>

#include "fuzz.h"
#include "pack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    pack_t p;
    char err[400];
    if (!pack_open(path, &p, err, sizeof err))
        return 0;
    // What pair-sample takes from the index without further checks.
    for (int64_t i = 0; i < p.ncases; i++) {
        fuzz_touch(p.names[i], 1);
        fuzz_touch(p.meta.splits[p.split[i]], 1);
        if (p.meta.task == TASK_MULTILABEL)
            fuzz_touch(p.labels + i * p.meta.nclasses, (size_t)p.meta.nclasses);
        else if (p.labeled[i] && p.meta.task == TASK_MULTICLASS)
            fuzz_touch(p.meta.classes[p.label[i]], 1);
    }
    // Case records: enough of them to cover a pack's varieties, few enough
    // that an index of a thousand tiny cases stays fast.
    for (int64_t i = 0; i < p.ncases && i < 64; i++) {
        mts_reader *r;
        mts_frame f;
        const msgpack_object *images;
        if (pack_read_case_checked(&p, i, &r, &f, &images, err, sizeof err)) {
            for (int k = 0; k < p.ninst[i]; k++) {
                mts_tensor t;
                if (!mts_object_tensor(&images->via.array.ptr[k], &t, err, sizeof err))
                    __builtin_trap();  // pack_read_case_checked said it was valid
                fuzz_touch(t.data, t.nbytes);
            }
        }
        mts_reader_close(r);
    }
    pack_split_index(&p, "train");
    pack_close(&p);
    return 0;
}
