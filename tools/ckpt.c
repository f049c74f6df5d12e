// ckpt: look inside checkpoints and move weights between our checkpoints
// and safetensors under torchvision's names (see ckpt(1)).
//
//   ckpt show [--json] FILE                      model, parameters, position, origin
//   ckpt export [--head] [--fc] -o OUT.safetensors CKPT
//   ckpt import [--model NAME] [--width W] [--in-ch 1] -o OUT.ckpt FILE.safetensors
//   ckpt reconstruct [--rows N] -o SHEET.png CKPT PAIRS   what a PCRL decoder makes of images
#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "batch.h"
#include "blas.h"
#include "ckpt.h"
#include "cli.h"
#include "model.h"
#include "pcrl.h"
#include "safetensors.h"
#include "stream.h"
#include "util.h"

static const char usage_text[] =
    "usage: ckpt show [--json] FILE\n"
    "       ckpt export [--head] [--fc] -o OUT.safetensors CKPT\n"
    "       ckpt import [--model NAME] [--width W] [--in-ch 1] -o OUT.ckpt FILE.safetensors\n"
    "       ckpt reconstruct [--rows N] -o SHEET.png CKPT PAIRS\n"
    "Look inside checkpoints; move weights to and from safetensors (torchvision's names).\n"
    "\n"
    "commands:\n"
    "  show          the model, its parameters, which torchvision/timm constructor builds it,\n"
    "                the training position, the optimiser and where it came from\n"
    "  export        a checkpoint's encoder as safetensors (F32, I64 num_batches_tracked)\n"
    "  import        a safetensors file (torchvision, timm, or an export) as a checkpoint\n"
    "  reconstruct   a PCRL checkpoint's decoder on pairs of augment --targets: a PNG sheet,\n"
    "                one record a row: input, target, reconstruction of view a, then of b\n"
    "\n"
    "options:\n"
    "  -o, --output F    export, import: the file to write\n"
    "      --json        show: one JSON object\n"
    "      --head        export: the projection head too (head.<l>.linear.weight, head.<l>.bn.*)\n"
    "      --fc          export: the classifier too (fc.weight, fc.bias)\n"
    "      --model NAME  import: the ResNet the file must hold (resnet18 ... resnet152)\n"
    "      --width W     import: its width multiplier (default: conv1's channels / 64,\n"
    "                    or what an export of ours says)\n"
    "      --in-ch 1     import: a 1-channel model, conv1 summed over the file's 3 colours\n"
    "      --rows N      reconstruct: the first N records (default 8)\n"
    "  -h, --help        this text\n"
    "  -V, --version     version\n";

// ---- show -------------------------------------------------------------------------

// The constructor that builds this encoder with torchvision's or timm's
// layout, or NULL: those have width 1 and the large stem only (SimCLR's x2
// is not wide_resnet50_2, which widens only the bottlenecks' 3x3 convs).
static void constructors(const model_config *c, char *tv, size_t tvlen, char *timm, size_t timmlen)
{
    const resnet_config *e = &c->encoder;
    if (e->width != 1 || e->stem != RESNET_STEM_LARGE) {
        snprintf(tv, tvlen, "none (%s)", e->width != 1 ? "width multiplier" : "small stem");
        snprintf(timm, timmlen, "%s", tv);
        return;
    }
    // Without a classifier, torchvision's model still has one (load with
    // strict=False), timm's can leave it out (num_classes=0).
    char classes[32] = "";
    if (c->classes != 1000)
        snprintf(classes, sizeof classes, "num_classes=%d", c->classes);
    if (e->in_ch == 1)
        snprintf(tv, tvlen, "none (1 channel)");
    else if (c->classes == 0)
        snprintf(tv, tvlen, "torchvision.models.resnet%d() without fc.* (load_state_dict(sd, strict=False))",
                 e->depth);
    else
        snprintf(tv, tvlen, "torchvision.models.resnet%d(%s)", e->depth, classes);
    snprintf(timm, timmlen, "timm.create_model(\"resnet%d\"%s%s%s)", e->depth, c->classes != 1000 ? ", " : "",
             classes, e->in_ch == 1 ? ", in_chans=1" : "");
}

static cJSON *json_or_die(cJSON *item)
{
    if (!item)
        die(NULL, "out of memory");
    return item;
}

// The header of one of our checkpoints, for "made by": its tool and args.
static cJSON *origin_of_stream(const char *path, char *line, size_t len)
{
    mts_limits lim = mts_limits_default();
    mts_reader *r = mts_reader_open(path, &lim);
    cJSON *o = json_or_die(cJSON_CreateObject());
    line[0] = 0;
    mts_frame f;
    if (r && mts_read(r, &f) > 0) {
        char tool[64] = "";
        mts_opt_str(r, &f, "tool", tool, sizeof tool);
        cJSON_AddStringToObject(o, "tool", tool);
        size_t n = (size_t)snprintf(line, len, "%s", tool);
        cJSON *args = json_or_die(cJSON_AddArrayToObject(o, "args"));
        const msgpack_object *a = mts_get(&f, "args");
        for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size; i++) {
            const msgpack_object *s = &a->via.array.ptr[i];
            if (s->type != MSGPACK_OBJECT_STR)
                continue;
            char *arg = xmalloc(s->via.str.size + 1);
            memcpy(arg, s->via.str.ptr, s->via.str.size);
            arg[s->via.str.size] = 0;
            cJSON_AddItemToArray(args, json_or_die(cJSON_CreateString(arg)));
            if (n < len)
                n += (size_t)snprintf(line + n, len - n, " %s", arg);
            free(arg);
        }
    }
    if (r)
        mts_reader_close(r);
    return o;
}

static int show(const char *path, bool json)
{
    model_config c;
    ckpt_info info;
    char err[400];
    if (!ckpt_read_header(path, &c, &info, err, sizeof err))
        die(path, "%s", err);
    bool st = st_sniff(path);
    char desc[256], tv[128], timm[128], origin[1024] = "";
    model_describe(&c, desc, sizeof desc);
    constructors(&c, tv, sizeof tv, timm, sizeof timm);
    model_config enc = c, with_head = c;
    enc.head_layers = 0;
    enc.classes = 0;
    with_head.classes = 0;
    double total = model_param_count(&c), encoder = model_param_count(&enc),
           head = model_param_count(&with_head) - encoder, classifier = total - encoder - head;
    cJSON *root = json_or_die(cJSON_CreateObject());
    cJSON_AddStringToObject(root, "file", path);
    cJSON *origin_json;
    char format[128];
    if (st) {
        st_file *f = st_open(path, err, sizeof err);
        if (!f)
            die(path, "%s", err);
        snprintf(format, sizeof format, "safetensors, %d tensors, %llu bytes of data", f->count,
                 (unsigned long long)f->data_size);
        origin_json = json_or_die(cJSON_CreateObject());
        // One key a line: values may hold spaces (and class names, newlines).
        size_t n = 0;
        for (int i = 0; i < f->nmeta; i++) {
            cJSON_AddStringToObject(origin_json, f->meta_keys[i], f->meta_values[i]);
            if (n < sizeof origin)
                n += (size_t)snprintf(origin + n, sizeof origin - n, "%s%s=", i ? "\n             " : "",
                                      f->meta_keys[i]);
            for (const char *v = f->meta_values[i]; *v && n + 2 < sizeof origin; v++) {
                if (*v == '\n')
                    origin[n++] = '\\', origin[n++] = 'n';
                else
                    origin[n++] = *v;
                origin[n] = 0;
            }
        }
        st_close(f);
    } else {
        snprintf(format, sizeof format, "medssl checkpoint");
        origin_json = origin_of_stream(path, origin, sizeof origin);
    }
    cJSON_AddStringToObject(root, "format", st ? "safetensors" : "medssl");
    cJSON_AddStringToObject(root, "model", desc);
    cJSON *mo = json_or_die(cJSON_AddObjectToObject(root, "config"));
    cJSON_AddNumberToObject(mo, "depth", c.encoder.depth);
    cJSON_AddNumberToObject(mo, "width", c.encoder.width);
    cJSON_AddStringToObject(mo, "stem", c.encoder.stem == RESNET_STEM_SMALL ? "small" : "large");
    cJSON_AddNumberToObject(mo, "in_ch", c.encoder.in_ch);
    cJSON_AddNumberToObject(mo, "head_layers", c.head_layers);
    cJSON_AddNumberToObject(mo, "head_hidden", c.head_hidden);
    cJSON_AddNumberToObject(mo, "proj_dim", c.proj_dim);
    cJSON_AddNumberToObject(mo, "classes", c.classes);
    cJSON *po = json_or_die(cJSON_AddObjectToObject(root, "parameters"));
    cJSON_AddNumberToObject(po, "total", total);
    cJSON_AddNumberToObject(po, "encoder", encoder);
    cJSON_AddNumberToObject(po, "head", head);
    cJSON_AddNumberToObject(po, "classifier", classifier);
    bool none = strncmp(tv, "none", 4) == 0, timm_none = strncmp(timm, "none", 4) == 0;
    cJSON_AddItemToObject(root, "torchvision", json_or_die(none ? cJSON_CreateNull() : cJSON_CreateString(tv)));
    cJSON_AddItemToObject(root, "timm", json_or_die(timm_none ? cJSON_CreateNull() : cJSON_CreateString(timm)));
    cJSON_AddNumberToObject(root, "step", (double)info.step);
    cJSON_AddNumberToObject(root, "records", (double)info.records);
    cJSON_AddNumberToObject(root, "epoch", (double)info.epoch);
    cJSON_AddItemToObject(root, "loss", json_or_die(isfinite(info.loss) ? cJSON_CreateNumber(info.loss)
                                                                          : cJSON_CreateNull()));
    cJSON_AddStringToObject(root, "optimizer", info.optimizer);
    cJSON_AddStringToObject(root, "task", info.task);
    cJSON_AddStringToObject(root, "trained_on", info.trained_on);
    cJSON *names = json_or_die(cJSON_AddArrayToObject(root, "class_names"));
    for (int i = 0; i < info.nclasses; i++)
        cJSON_AddItemToArray(names, json_or_die(cJSON_CreateString(info.class_names[i])));
    cJSON_AddItemToObject(root, st ? "metadata" : "made_by", origin_json);
    if (json) {
        char *text = cJSON_Print(root);
        if (!text)
            die(NULL, "out of memory");
        puts(text);
        free(text);
    } else {
        printf("file         %s\n", path);
        printf("format       %s\n", format);
        printf("model        %s\n", desc);
        printf("parameters   %.0f (encoder %.0f, head %.0f, classifier %.0f)\n", total, encoder, head, classifier);
        printf("torchvision  %s\n", tv);
        printf("timm         %s\n", timm);
        printf("step         %lld (records %lld, epoch %lld)\n", (long long)info.step, (long long)info.records,
               (long long)info.epoch);
        printf("loss         %.6g\n", info.loss);
        printf("optimizer    %s\n", info.optimizer[0] ? info.optimizer : "none saved");
        printf("trained on   %s\n", info.trained_on[0] ? info.trained_on : "not recorded");
        printf("task         %s", info.task[0] ? info.task : "none");
        for (int i = 0; i < info.nclasses; i++)
            printf("%s%s", i ? ", " : ": ", info.class_names[i]);
        printf("\n%s %s\n", st ? "metadata    " : "made by     ", origin);
    }
    cJSON_Delete(root);
    ckpt_info_free(&info);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("stdout", "write error: %s", strerror(errno));
    return 0;
}

// ---- export and import ----------------------------------------------------------------

static int export(const char *path, const char *output, unsigned parts)
{
    model_config c;
    ckpt_info info;
    char err[400];
    if (!ckpt_read_header(path, &c, &info, err, sizeof err))
        die(path, "%s", err);
    if ((parts & CKPT_HEAD) && !c.head_layers)
        die(path, "--head: this checkpoint has no projection head");
    if ((parts & CKPT_FC) && !c.classes)
        die(path, "--fc: this checkpoint has no classifier");
    check_writable(output);
    model m;
    model_init(&m, &c, 0);
    ckpt_load(path, &m, NULL, parts);
    ckpt_export(output, &m, &info, parts);
    model_free(&m);
    ckpt_info_free(&info);
    return 0;
}

static int import(const char *path, const char *output, int depth, double width, int in_ch, int argc,
                  char **argv)
{
    model_config c;
    ckpt_info info;
    char err[400];
    if (!st_sniff(path))
        die(path, "not a safetensors file (ckpt import reads safetensors; our checkpoints need no import)");
    if (!ckpt_read_header(path, &c, &info, err, sizeof err))
        die(path, "%s", err);
    if (depth && depth != c.encoder.depth)
        die(path, "the file holds a resnet%d, not the --model resnet%d", c.encoder.depth, depth);
    if (width > 0)
        c.encoder.width = width;
    unsigned parts = CKPT_ENCODER | (c.head_layers ? CKPT_HEAD : 0) | (c.classes ? CKPT_FC : 0);
    if (in_ch == 1 && c.encoder.in_ch == 3) {
        c.encoder.in_ch = 1;
        parts |= CKPT_GREY;
    } else if (in_ch && in_ch != c.encoder.in_ch) {
        die(path, "--in-ch %d: the file's model takes %d channels (only 3 -> 1 converts)", in_ch, c.encoder.in_ch);
    }
    check_writable(output);
    model m;
    model_init(&m, &c, 0);
    ckpt_load(path, &m, NULL, parts);
    ckpt_save(output, &m, NULL, &info, "ckpt", argc, argv);
    model_free(&m);
    ckpt_info_free(&info);
    return 0;
}

// ---- reconstruct -----------------------------------------------------------------------

// A plane of floats as u8: scaled by 255 (targets and reconstructions, in
// [0, 1]), or stretched from its own minimum to its maximum (the
// normalised input view).
static void to_tile(const float *x, size_t n, bool stretch, uint8_t *out)
{
    float lo = 0, hi = 1;
    if (stretch) {
        lo = hi = x[0];
        for (size_t i = 1; i < n; i++)
            lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    }
    float scale = hi > lo ? 255 / (hi - lo) : 0;
    for (size_t i = 0; i < n; i++) {
        float v = (x[i] - lo) * scale + 0.5f;
        out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

static int reconstruct(const char *path, const char *pairs_path, const char *output, int rows)
{
    model_config c;
    ckpt_info info;
    char err[400];
    if (!ckpt_read_header(path, &c, &info, err, sizeof err))
        die(path, "%s", err);
    ckpt_info_free(&info);
    blas_init(0);
    model m;
    model_init(&m, &c, 0);
    unet_decoder d;
    unet_init(&d, &c.encoder, c.encoder.in_ch, 0);
    ckpt_extra x = {0};
    pcrl_decoder_tensors(&d, &x);
    if (!ckpt_load_extra(path, &m, NULL, &x, CKPT_ENCODER | CKPT_EXTRA | CKPT_EXTRA_SUBSET, err, sizeof err))
        die(path, "%s%s", err, strstr(err, "decoder.") ? " (a checkpoint of pcrl-step has a decoder)" : "");
    batch_reader *in = batch_open(pairs_path, 2, "pair records with targets from pair-sample | augment --targets");
    if (!batch_peek(in))
        die(batch_name(in), "no pair records in the stream");
    int ch, h, w;
    batch_shape(in, &ch, &h, &w);
    if (ch != c.encoder.in_ch)
        die(batch_name(in), "%d-channel images, the model takes %d", ch, c.encoder.in_ch);
    if (h != w)
        die(batch_name(in), "%dx%d images: the sheet takes square ones (augment --size)", w, h);
    if (!unet_size_ok(&d, h, w, err, sizeof err))
        die(batch_name(in), "%s", err);
    check_writable(output);
    size_t plane = (size_t)ch * h * w;
    float *views = xaligned_alloc(2 * (size_t)rows * plane * sizeof(float));
    float *targets = xaligned_alloc(2 * (size_t)rows * plane * sizeof(float));
    float *codes = xmalloc(2 * (size_t)rows * 6 * sizeof(float));
    int n = batch_next_targets(in, rows, views, targets, codes, NULL);
    // Views a and b are rows 2k and 2k + 1: the decoder takes them all at once.
    pcrl_reconstruct(&m, &d, 2 * n, h, w, views, codes);
    uint8_t **tiles = xcalloc(6 * (size_t)n, sizeof *tiles);
    for (int k = 0; k < 2 * n; k++) {
        int row = k / 2, col = 3 * (k % 2);
        const float *sources[3] = {views + k * plane, targets + k * plane, d.output + k * plane};
        for (int j = 0; j < 3; j++) {
            tiles[row * 6 + col + j] = xmalloc(plane);
            to_tile(sources[j], plane, j == 0, tiles[row * 6 + col + j]);
        }
    }
    if (!aug_write_sheet(output, n, 6, ch, h, tiles, err, sizeof err))
        die(output, "%s", err);
    for (int t = 0; t < 6 * n; t++)
        free(tiles[t]);
    free(tiles);
    free(views);
    free(targets);
    free(codes);
    batch_close(in);
    ckpt_extra_free(&x);
    unet_free(&d);
    model_free(&m);
    conv_workspace_release();
    return 0;
}

enum { OPT_JSON = 1000, OPT_HEAD, OPT_FC, OPT_MODEL, OPT_WIDTH, OPT_IN_CH, OPT_ROWS };

int main(int argc, char **argv)
{
    util_init(argv[0]);
    enum { CMD_NONE, CMD_SHOW, CMD_EXPORT, CMD_IMPORT, CMD_RECONSTRUCT } cmd = CMD_NONE;
    if (argc > 1)
        cmd = strcmp(argv[1], "show") == 0     ? CMD_SHOW
              : strcmp(argv[1], "export") == 0 ? CMD_EXPORT
              : strcmp(argv[1], "import") == 0 ? CMD_IMPORT
              : strcmp(argv[1], "reconstruct") == 0 ? CMD_RECONSTRUCT
                                               : CMD_NONE;
    const char *output = NULL;
    bool json = false;
    unsigned parts = CKPT_ENCODER;
    int depth = 0, in_ch = 0, rows = 0;
    double width = 0;
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"json", no_argument, 0, OPT_JSON},
        {"head", no_argument, 0, OPT_HEAD},     {"fc", no_argument, 0, OPT_FC},
        {"model", required_argument, 0, OPT_MODEL}, {"width", required_argument, 0, OPT_WIDTH},
        {"in-ch", required_argument, 0, OPT_IN_CH}, {"rows", required_argument, 0, OPT_ROWS},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    optind = cmd == CMD_NONE ? 1 : 2;
    int c;
    while ((c = getopt_long(argc, argv, "o:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case OPT_JSON: json = true; break;
        case OPT_HEAD: parts |= CKPT_HEAD; break;
        case OPT_FC: parts |= CKPT_FC; break;
        case OPT_MODEL:
            if (!model_depth_parse(optarg, &depth))
                die_usage("--model: '%s' is not resnet18, resnet34, resnet50, resnet101 or resnet152", optarg);
            break;
        case OPT_WIDTH: width = cli_double("--width", optarg, 1.0 / 64, 16); break;
        case OPT_IN_CH: in_ch = (int)cli_int("--in-ch", optarg, 1, 3); break;
        case OPT_ROWS: rows = (int)cli_int("--rows", optarg, 1, 256); break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option");
        }
    }
    if (cmd == CMD_NONE)
        die_usage("say what to do: ckpt show, ckpt export, ckpt import or ckpt reconstruct (ckpt --help)");
    if (cmd == CMD_RECONSTRUCT ? optind != argc - 2 : optind != argc - 1)
        die_usage(cmd == CMD_RECONSTRUCT ? "a checkpoint and a pair stream" : "one input file");
    const char *input = argv[optind];
    if (json && cmd != CMD_SHOW)
        die_usage("--json goes with 'ckpt show'");
    if (parts != CKPT_ENCODER && cmd != CMD_EXPORT)
        die_usage("--head and --fc go with 'ckpt export'");
    if ((depth || width || in_ch) && cmd != CMD_IMPORT)
        die_usage("--model, --width and --in-ch go with 'ckpt import'");
    if (rows && cmd != CMD_RECONSTRUCT)
        die_usage("--rows goes with 'ckpt reconstruct'");
    if (cmd == CMD_SHOW) {
        if (output)
            die_usage("-o goes with 'ckpt export', 'ckpt import' and 'ckpt reconstruct'");
        return show(input, json);
    }
    if (!output)
        die_usage("say where to write: -o FILE");
    if (cmd == CMD_EXPORT)
        return export(input, output, parts);
    if (cmd == CMD_RECONSTRUCT)
        return reconstruct(input, argv[optind + 1], output, rows ? rows : 8);
    return import(input, output, depth, width, in_ch, argc, argv);
}
