#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "util.h"

void model_opts_init(model_opts *o)
{
    o->cfg = model_config_default();
    o->cfg.encoder.in_ch = 0;  // from the stream unless given
    o->given = 0;
}

bool model_opts_given(const model_opts *o, int opt) { return o->given & (1u << (opt - OPT_MODEL)); }

bool model_opts_parse(model_opts *o, int opt, const char *arg)
{
    model_config *c = &o->cfg;
    switch (opt) {
    case OPT_MODEL:
        if (!model_depth_parse(arg, &c->encoder.depth))
            die_usage("--model: '%s' is not resnet18, resnet34, resnet50, resnet101 or resnet152", arg);
        break;
    case OPT_WIDTH: c->encoder.width = cli_double("--width", arg, 0.01, 16); break;
    case OPT_STEM:
        if (strcmp(arg, "large") == 0) c->encoder.stem = RESNET_STEM_LARGE;
        else if (strcmp(arg, "small") == 0) c->encoder.stem = RESNET_STEM_SMALL;
        else die_usage("--stem: '%s' is not large or small", arg);
        break;
    case OPT_IN_CH:
        c->encoder.in_ch = (int)cli_int("--in-ch", arg, 1, 3);
        if (c->encoder.in_ch == 2)
            die_usage("--in-ch: 1 or 3");
        break;
    case OPT_HEAD_LAYERS:
        c->head_layers = (int)cli_int("--head-layers", arg, 0, 3);
        if (c->head_layers == 1)
            die_usage("--head-layers: 0, 2 or 3");
        break;
    case OPT_HEAD_HIDDEN: c->head_hidden = (int)cli_int("--head-hidden", arg, 1, 1 << 16); break;
    case OPT_PROJ_DIM: c->proj_dim = (int)cli_int("--proj-dim", arg, 1, 1 << 16); break;
    default: return false;
    }
    o->given |= 1u << (opt - OPT_MODEL);
    return true;
}

model_config model_opts_resolve(const model_opts *o, const model_config *ckpt_cfg, const char *ckpt_path,
                                int stream_channels)
{
    model_config c = o->cfg;
    if (ckpt_cfg) {
        const model_config *k = ckpt_cfg;
        char have[200], want[200];
        model_describe(k, have, sizeof have);
        model_describe(&o->cfg, want, sizeof want);
        if ((model_opts_given(o, OPT_MODEL) && o->cfg.encoder.depth != k->encoder.depth) ||
            (model_opts_given(o, OPT_WIDTH) && o->cfg.encoder.width != k->encoder.width) ||
            (model_opts_given(o, OPT_STEM) && o->cfg.encoder.stem != k->encoder.stem) ||
            (model_opts_given(o, OPT_IN_CH) && o->cfg.encoder.in_ch != k->encoder.in_ch))
            die(ckpt_path, "the checkpoint's model (%s) differs from the options (%s)", have, want);
        c.encoder = k->encoder;
        // The head follows the checkpoint unless options change it.
        if (!model_opts_given(o, OPT_HEAD_LAYERS)) c.head_layers = k->head_layers;
        if (!model_opts_given(o, OPT_HEAD_HIDDEN)) c.head_hidden = k->head_hidden;
        if (!model_opts_given(o, OPT_PROJ_DIM)) c.proj_dim = k->proj_dim;
        c.classes = k->classes;
    }
    if (c.encoder.in_ch == 0)
        c.encoder.in_ch = stream_channels;
    if (stream_channels && c.encoder.in_ch != stream_channels)
        die(ckpt_path ? ckpt_path : "model", "the model takes %d-channel images, the stream has %d channels",
            c.encoder.in_ch, stream_channels);
    return c;
}

bool common_opts_parse(common_opts *c, int opt, const char *arg, const char *usage)
{
    switch (opt) {
    case 'T': c->threads = (int)cli_int("--threads", arg, 1, 1024); return true;
    case 'q': c->quiet = true; return true;
    case 'h': fputs(usage, stdout); exit(0);
    case 'V':
        blas_init(c->threads);
        cli_version(blas_description());
        exit(0);
    }
    return false;
}
