// Fuzz target: the safetensors reader and the checkpoint loader on it.
// st_open on the input as a file, then every tensor it accepted read (as
// float32 or I64 where its dtype allows), each within the size the header
// declared; then ckpt_read_header, and when the model it describes is
// small, the model built and every part loaded, as --init and embed do.
#include <stdlib.h>

#include "ckpt.h"
#include "fuzz.h"
#include "model.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    char err[400];
    st_file *f = st_open(path, err, sizeof err);
    if (!f)
        return 0;
    for (int i = 0; i < f->count; i++) {
        const st_entry *e = &f->entries[i];
        if (e->end > size || e->end - e->begin != e->count * st_dtype_size(e->dtype))
            abort();
        bool floating = e->dtype == ST_F32 || e->dtype == ST_F16 || e->dtype == ST_BF16 || e->dtype == ST_F64;
        if (!floating && e->dtype != ST_I64)
            continue;
        void *out = malloc(e->count * 8 + 1);
        bool ok = floating ? st_read_f32(f, e, out, err, sizeof err) : st_read_i64(f, e, out, err, sizeof err);
        if (!ok)
            abort();  // the bytes were checked to be there
        fuzz_touch(out, e->count * (floating ? 4 : 8));
        free(out);
    }
    st_close(f);
    model_config cfg;
    ckpt_info info;
    if (!ckpt_read_header(path, &cfg, &info, err, sizeof err))
        return 0;
    // As fuzz_ckpt: the loader is under test, not model_init.
    const resnet_config *e = &cfg.encoder;
    if (e->depth <= 34 && e->width <= 1.0 / 16 && cfg.head_hidden <= 64 && cfg.proj_dim <= 64 && cfg.classes <= 64) {
        model m;
        model_init(&m, &cfg, 0);
        ckpt_load_checked(path, &m, NULL, CKPT_ENCODER | CKPT_HEAD | CKPT_FC, err, sizeof err);
        model_free(&m);
    }
    ckpt_info_free(&info);
    return 0;
}
