// Fuzz target: the checkpoint loader.  ckpt_read_header on the input as a
// file; when it describes a model small enough to build in a moment, the
// model is built from it (with the optimiser it names) and
// ckpt_load_checked copies every part in, as --resume does.
#include <stdlib.h>

#include "ckpt.h"
#include "fuzz.h"
#include "model.h"
#include "optim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(data, size);
    model_config cfg;
    ckpt_info info;
    char err[400];
    if (!ckpt_read_header(path, &cfg, &info, err, sizeof err))
        return 0;
    // The loader is under test, not model_init: a ResNet-152 x16 that a
    // mutated header asks for would take all the time and memory.
    const resnet_config *e = &cfg.encoder;
    if (e->depth <= 34 && e->width <= 1.0 / 16 && cfg.head_hidden <= 64 && cfg.proj_dim <= 64 &&
        cfg.classes <= 64) {
        model m;
        model_init(&m, &cfg, 0);
        optim_kind kind;
        optimizer *o = NULL;
        if (optim_kind_parse(info.optimizer, &kind)) {
            optim_config oc = optim_defaults(kind);
            oc.momentum = 0.9;  // SGD's default of 0 keeps no state to load
            o = optim_create(&m.params, &oc);
        }
        ckpt_load_checked(path, &m, o, o ? CKPT_ALL : CKPT_ALL & ~CKPT_STATE, err, sizeof err);
        if (o)
            optim_free(o);
        model_free(&m);
    }
    ckpt_info_free(&info);
    return 0;
}
