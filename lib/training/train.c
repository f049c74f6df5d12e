#include "train.h"

#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "conv.h"
#include "dist.h"
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

const char *compute_description(void)
{
    static char line[256];
    snprintf(line, sizeof line, "%s; conv kernels %s", blas_description(), conv_kernels_name());
    return line;
}

bool common_opts_parse(common_opts *c, int opt, const char *arg, const char *usage)
{
    switch (opt) {
    case 'T': c->threads = (int)cli_int("--threads", arg, 1, 1024); return true;
    case 'q': c->quiet = true; return true;
    case 'h': fputs(usage, stdout); exit(0);
    case 'V':
        blas_init(c->threads);
        cli_version(compute_description());
        exit(0);
    }
    return false;
}

void train_check_warmup(const train_length *t, const lr_schedule *s, double warmup_epochs, bool given)
{
    if (s->warmup_steps == 0 || s->warmup_steps < t->steps)
        return;
    die_usage("--warmup-epochs %g%s: the warm-up (%lld steps) is not shorter than the schedule (%lld epoch%s of "
              "%lld %s: %lld steps), so the rate would never decay; give --warmup-epochs below %lld",
              warmup_epochs, given ? "" : " (the default)", (long long)s->warmup_steps, (long long)t->epochs,
              t->epochs == 1 ? "" : "s", (long long)t->per_epoch, t->unit, (long long)t->steps, (long long)t->epochs);
}

// The records the stream holds from its start on, by its header (0: unknown).
static int64_t stream_records(batch_reader *in)
{
    const stream_info *si = batch_info(in);
    if (si->pairs_per_epoch <= 0 || si->epochs <= 0)
        return 0;
    return si->pairs_per_epoch * si->epochs - si->start;
}

void train_check_length(const train_length *t, batch_reader *in)
{
    if (!t->strict)
        return;
    const stream_info *si = batch_info(in);
    int64_t have = stream_records(in), want = t->per_epoch * t->epochs - si->start;
    if (have == 0)
        die(batch_name(in), "--strict-length: the stream header gives no length (pairs_per_epoch, epochs)");
    if (have != want)
        die(batch_name(in), "--strict-length: the stream holds %lld records (%lld epochs of %lld), the schedule "
            "%lld (%lld epoch%s of %lld %s)", (long long)have, (long long)si->epochs,
            (long long)si->pairs_per_epoch, (long long)want, (long long)t->epochs, t->epochs == 1 ? "" : "s",
            (long long)t->per_epoch, t->unit);
}

void train_schedule_done(const train_length *t, batch_reader *in, int64_t consumed, int64_t step, int batch,
                         bool quiet)
{
    const stream_info *si = batch_info(in);
    // The schedule's records that no full batch took (pretraining drops them).
    int64_t tail = t->per_epoch * t->epochs - si->start - consumed;
    if (t->strict) {
        float *x = NULL;
        int c, h, w, views = 1;
        batch_shape(in, &c, &h, &w);
        if (strcmp(t->unit, "pairs") == 0)
            views = 2;
        int64_t read = 0;
        if (tail > 0) {
            x = xaligned_alloc((size_t)tail * views * c * h * w * sizeof(float));
            read = batch_next(in, (int)tail, x, NULL);
            free(x);
        }
        if (read < tail)
            die(batch_name(in), "--strict-length: the stream ended %lld records before the schedule's end",
                (long long)(tail - read));
        if (batch_peek(in))
            die(batch_name(in), "--strict-length: the stream goes on after the schedule's end (step %lld)",
                (long long)step);
        return;
    }
    if (quiet)
        return;
    if (tail > 0)
        fprintf(stderr, "%s: the last %lld %s of the schedule fill no batch of %d: not trained on\n",
                util_progname(), (long long)tail, t->unit, batch);
    int64_t total = stream_records(in), left = total - consumed - (tail > 0 ? tail : 0);
    if (total > 0 && left > 0)
        fprintf(stderr, "%s: the schedule ends at step %lld (%lld epoch%s of %lld %s): left %lld records of the "
                "stream unread\n", util_progname(), (long long)step, (long long)t->epochs,
                t->epochs == 1 ? "" : "s", (long long)t->per_epoch, t->unit, (long long)left);
    else if (total == 0 && tail <= 0 && batch_peek(in))
        fprintf(stderr, "%s: the schedule ends at step %lld (%lld epoch%s of %lld %s): left the rest of the stream "
                "unread\n", util_progname(), (long long)step, (long long)t->epochs, t->epochs == 1 ? "" : "s",
                (long long)t->per_epoch, t->unit);
}

void train_stream_short(const train_length *t, batch_reader *in, int64_t step)
{
    if (t->strict)
        die(batch_name(in), "--strict-length: the stream ended at step %lld of the schedule's %lld",
            (long long)step, (long long)t->steps);
    warnf(batch_name(in), "warning: the stream ended at step %lld of the schedule's %lld (%lld epoch%s of %lld %s): "
          "the learning rate did not decay to its end", (long long)step, (long long)t->steps,
          (long long)t->epochs, t->epochs == 1 ? "" : "s", (long long)t->per_epoch, t->unit);
}

// ---- the kNN monitor ------------------------------------------------------------

// The images of one side of the split, (n, C, H, W), and their labels.
typedef struct {
    float *x;
    int *label;
    int64_t n, cap, cases;
} monitor_side;

struct train_monitor {
    int c, h, w, classes;
    int64_t images, cases;
    monitor_side bank, query;
    knn_config knn;
    float *features;   // (bank.n + query.n, F): the bank's rows first
    int *pred;         // (query.n)
};

static void side_add(monitor_side *s, const float *img, size_t plane, int label)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->x = xrealloc(s->x, (size_t)s->cap * plane * sizeof(float));
        s->label = xrealloc(s->label, (size_t)s->cap * sizeof(int));
    }
    memcpy(s->x + (size_t)s->n * plane, img, plane * sizeof(float));
    s->label[s->n++] = label;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The ordinal of a case id in the order of first appearance, *fresh when
// it is new (open addressing on ids; `ids` holds them, the table their
// ordinals + 1).
typedef struct {
    char (*ids)[PACK_NAME_MAX];
    int64_t *slot;
    int64_t n, nslots;
} case_table;

static int64_t case_ordinal(case_table *t, const char *id, bool *fresh)
{
    if (2 * (t->n + 1) > t->nslots) {
        int64_t ns = t->nslots ? 2 * t->nslots : 1024;
        free(t->slot);
        t->slot = xcalloc((size_t)ns, sizeof *t->slot);
        t->nslots = ns;
        t->ids = xrealloc(t->ids, (size_t)ns / 2 * sizeof *t->ids);
        for (int64_t i = 0; i < t->n; i++) {
            uint64_t h = hash_str(t->ids[i]) & (uint64_t)(ns - 1);
            while (t->slot[h])
                h = (h + 1) & (uint64_t)(ns - 1);
            t->slot[h] = i + 1;
        }
    }
    uint64_t h = hash_str(id) & (uint64_t)(t->nslots - 1);
    *fresh = false;
    for (; t->slot[h]; h = (h + 1) & (uint64_t)(t->nslots - 1))
        if (strcmp(t->ids[t->slot[h] - 1], id) == 0)
            return t->slot[h] - 1;
    *fresh = true;
    snprintf(t->ids[t->n], PACK_NAME_MAX, "%s", id);
    t->slot[h] = ++t->n;
    return t->n - 1;
}

train_monitor *train_monitor_open(const char *path, int in_ch, int k, double temperature)
{
    batch_reader *in = batch_open(path, 1,
                                  "labeled image records for --monitor (pair-sample --mode single --no-shuffle "
                                  "--labeled-only | augment --eval)");
    if (!batch_peek(in))
        die(batch_name(in), "--monitor: no image records in the stream");
    train_monitor *mon = xcalloc(1, sizeof *mon);
    batch_shape(in, &mon->c, &mon->h, &mon->w);
    const stream_info *si = batch_info(in);
    if (mon->c != in_ch)
        die(batch_name(in), "--monitor: %d-channel images; the model takes %d channels", mon->c, in_ch);
    if (strcmp(si->task, "multilabel") == 0)
        die(batch_name(in), "--monitor: a multi-label stream; the kNN monitor takes multi-class labels");
    size_t plane = (size_t)mon->c * mon->h * mon->w;
    float *img = xaligned_alloc(plane * sizeof(float));
    record_meta meta;
    case_table cases = {0};
    int max_label = -1;
    while (batch_next(in, 1, img, &meta) == 1) {
        if (!meta.labeled)
            die(batch_name(in), "--monitor: image %lld (case '%s') has no label; the kNN monitor needs labeled "
                "images (pair-sample --labeled-only)", (long long)mon->images, meta.case_id);
        if (!meta.case_id[0])
            die(batch_name(in), "--monitor: image %lld has no case; bank and queries are split by case",
                (long long)mon->images);
        bool fresh;
        int64_t ordinal = case_ordinal(&cases, meta.case_id, &fresh);
        monitor_side *side = ordinal % 5 == 4 ? &mon->query : &mon->bank;
        side->cases += fresh;
        side_add(side, img, plane, meta.label);
        max_label = meta.label > max_label ? meta.label : max_label;
        mon->images++;
    }
    mon->cases = cases.n;
    if (mon->cases < 5)
        die(batch_name(in), "--monitor: %lld case%s; the kNN monitor needs at least 5 (every fifth case is a query)",
            (long long)mon->cases, mon->cases == 1 ? "" : "s");
    mon->classes = si->nclasses > 0 ? si->nclasses : max_label + 1;
    mon->knn = (knn_config){.k = k, .temperature = temperature, .classes = mon->classes};
    free(cases.ids);
    free(cases.slot);
    free(img);
    batch_close(in);
    return mon;
}

void train_monitor_describe(const train_monitor *mon, char *buf, size_t len)
{
    snprintf(buf, len, "%lld images of %lld cases: bank %lld images (%lld cases), %lld queries (%lld cases), %d classes",
             (long long)mon->images, (long long)mon->cases, (long long)mon->bank.n, (long long)mon->bank.cases,
             (long long)mon->query.n, (long long)mon->query.cases, mon->classes);
}

// Features of one side's images into out (n, F), `rows` images a forward.
static void side_features(const train_monitor *mon, const monitor_side *s, resnet *enc, int rows, float *out)
{
    size_t plane = (size_t)mon->c * mon->h * mon->w, f = (size_t)enc->feature_dim;
    for (int64_t i = 0; i < s->n; i += rows) {
        int n = s->n - i < rows ? (int)(s->n - i) : rows;
        resnet_forward(enc, false, n, mon->h, mon->w, s->x + (size_t)i * plane, out + (size_t)i * f);
    }
}

double train_monitor_eval(train_monitor *mon, resnet *enc, int rows)
{
    size_t f = (size_t)enc->feature_dim, total = (size_t)(mon->bank.n + mon->query.n);
    if (!mon->features) {
        mon->features = xaligned_alloc(total * f * sizeof(float));
        mon->pred = xmalloc((size_t)mon->query.n * sizeof(int));
    }
    float *bank = mon->features, *query = mon->features + (size_t)mon->bank.n * f;
    side_features(mon, &mon->bank, enc, rows, bank);
    side_features(mon, &mon->query, enc, rows, query);
    for (size_t i = 0; i < total * f; i++)
        if (!isfinite(mon->features[i]))
            return NAN;
    knn_normalize(mon->features, total, (int)f);
    knn_classify(&mon->knn, bank, mon->bank.label, (size_t)mon->bank.n, query, (size_t)mon->query.n, (int)f,
                 mon->pred, NULL);
    int64_t correct = 0;
    for (int64_t i = 0; i < mon->query.n; i++)
        correct += mon->pred[i] == mon->query.label[i];
    return (double)correct / (double)mon->query.n;
}

void train_monitor_free(train_monitor *mon)
{
    free(mon->bank.x);
    free(mon->bank.label);
    free(mon->query.x);
    free(mon->query.label);
    free(mon->features);
    free(mon->pred);
    free(mon);
}

void monitor_opts_init(monitor_opts *m, int argc, char **argv)
{
    memset(m, 0, sizeof *m);
    m->k = KNN_DEFAULT_K;
    m->t = KNN_DEFAULT_T;
    m->acc = NAN;
    m->given_argv = xmalloc((size_t)argc * sizeof *m->given_argv);
    memcpy(m->given_argv, argv, (size_t)argc * sizeof *argv);
    m->args = xmalloc((size_t)argc * sizeof *m->args);
}

bool monitor_opts_parse(monitor_opts *m, int opt, const char *arg)
{
    switch (opt) {
    case OPT_MONITOR: m->path = arg; break;
    case OPT_MONITOR_EVERY: m->every = cli_int("--monitor-every", arg, 1, INT64_MAX); break;
    case OPT_MONITOR_K: m->k = (int)cli_int("--monitor-k", arg, 1, 1 << 20); break;
    case OPT_MONITOR_T: m->t = cli_double("--monitor-t", arg, 1e-4, 100); break;
    default: return false;
    }
    // getopt_long's optarg points into argv: cli_args_without finds it there.
    m->args[m->nargs++] = arg;
    return true;
}

char **monitor_opts_args(monitor_opts *m, int argc, int *ck_argc)
{
    if (!m->path && m->nargs)
        die_usage("--monitor-every, --monitor-k and --monitor-t need --monitor IMAGES");
    if (!m->every)
        m->every = 50;
    return cli_args_without(argc, m->given_argv, m->args, m->nargs, ck_argc);
}

void monitor_start(monitor_opts *m, int in_ch, bool quiet)
{
    if (!m->path)
        return;
    m->mon = train_monitor_open(m->path, in_ch, m->k, m->t);
    if (!quiet) {
        char desc[300];
        train_monitor_describe(m->mon, desc, sizeof desc);
        fprintf(stderr, "%s: %s: kNN monitor (k %d, T %g) every %lld steps: %s\n", util_progname(), m->path, m->k,
                m->t, (long long)m->every, desc);
    }
}

bool monitor_after_step(monitor_opts *m, int64_t step, int64_t last, resnet *enc, int rows)
{
    if (!m->mon || (step % m->every != 0 && step != last))
        return false;
    double t0 = now_seconds();
    m->acc = train_monitor_eval(m->mon, enc, rows);
    m->seconds += now_seconds() - t0;
    m->runs++;
    m->step = step;
    return true;
}

void monitor_progress_text(const monitor_opts *m, char *buf, size_t len)
{
    if (m->runs)
        snprintf(buf, len, " knn-acc %.3f (step %lld)", m->acc, (long long)m->step);
    else if (len)
        buf[0] = 0;
}

void monitor_finish(monitor_opts *m, double run_seconds, bool quiet)
{
    if (m->runs && !quiet)
        fprintf(stderr, "%s: kNN monitor: %lld measurements, %.2f s each, %.1f%% of the run's %.1f s; last knn-acc %.4f\n",
                util_progname(), (long long)m->runs, m->seconds / (double)m->runs, 100 * m->seconds / run_seconds,
                run_seconds, m->acc);
    if (m->mon)
        train_monitor_free(m->mon);
    free(m->given_argv);
    free(m->args);
    memset(m, 0, sizeof *m);
}

train_length train_pair_schedule(batch_reader *in, int64_t per_epoch, int64_t epochs, int batch, bool strict)
{
    const stream_info *si = batch_info(in);
    if (!per_epoch)
        per_epoch = si->pairs_per_epoch;
    if (!epochs)
        epochs = si->epochs;
    if (!per_epoch || !epochs)
        die(batch_name(in), "the stream header gives no pairs_per_epoch/epochs: give --pairs-per-epoch and --epochs");
    train_length t = {.unit = "pairs", .per_epoch = per_epoch, .epochs = epochs, .steps = per_epoch * epochs / batch,
                      .strict = strict};
    train_check_length(&t, in);
    return t;
}

void train_check_resumable(const char *path, const ckpt_info *info, optim_kind kind)
{
    if (!info->optimizer[0])
        die(path, "no optimiser state in it (a safetensors file, or a fine-tuned model): --resume continues "
            "a run of %s, --init starts one from these weights", util_progname());
    if (strcmp(info->optimizer, optim_kind_name(kind)) != 0)
        die(path, "saved with optimizer '%s', this run uses '%s'", info->optimizer, optim_kind_name(kind));
}

void train_check_start(batch_reader *in, int64_t step, int batch)
{
    int64_t start = batch_info(in)->start, at = step * batch;
    if (start != at)
        die(batch_name(in), "the stream starts at pair %lld, the checkpoint is at pair %lld (step %lld x batch %d): "
            "run pair-sample --start %lld", (long long)start, (long long)at, (long long)step, batch, (long long)at);
}

bool train_same_head(const model_config *ckpt, const model_config *built)
{
    return ckpt->head_layers == built->head_layers && ckpt->proj_dim == built->proj_dim &&
           ckpt->head_hidden == built->head_hidden;
}

void train_report_stop(int signal, int64_t step, bool saved, const char *output)
{
    fprintf(stderr, "%s: %s at step %lld: %s%s\n", util_progname(), signal == SIGINT ? "interrupted" : "terminated",
            (long long)step, saved ? "checkpoint saved to " : "no step taken, nothing saved", saved ? output : "");
}

bool pretrain_opts_parse(pretrain_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case 'o': o->output = arg; break;
    case 'b': o->batch = (int)cli_int("--batch", arg, 2, 1 << 16); break;
    case OPT_PT_LR: o->lr = cli_double("--lr", arg, 0, 1e4); break;
    case OPT_PT_SCALING:
        if (!lr_scaling_parse(arg, &o->scaling))
            die_usage("--lr-scaling: '%s' is not linear or sqrt", arg);
        break;
    case OPT_PT_OPTIM:
        if (!optim_kind_parse(arg, &o->optimizer))
            die_usage("--optimizer: '%s' is not lars, sgd or adamw", arg);
        break;
    case OPT_PT_MOMENTUM: o->momentum = cli_double("--momentum", arg, 0, 1); break;
    case OPT_PT_WD: o->weight_decay = cli_double("--weight-decay", arg, 0, 1); break;
    case OPT_PT_WARMUP:
        o->warmup_epochs = cli_double("--warmup-epochs", arg, 0, 1e6);
        o->warmup_given = true;
        break;
    case OPT_PT_EPOCHS: o->epochs = cli_int("--epochs", arg, 1, 1 << 30); break;
    case OPT_PT_PPE: o->pairs_per_epoch = cli_int("--pairs-per-epoch", arg, 1, INT64_MAX / 2); break;
    case OPT_PT_INIT: o->init = arg; break;
    case OPT_PT_RESUME: o->resume = arg; break;
    case OPT_PT_SAVE_EVERY: o->save_every = cli_int("--save-every", arg, 0, INT64_MAX); break;
    case OPT_PT_LOG: o->log_path = arg; break;
    case OPT_PT_SEED: o->seed = (uint64_t)cli_int("--seed", arg, 0, INT64_MAX); break;
    case OPT_PT_STRICT_LENGTH: o->strict_length = true; break;
    default: return false;
    }
    return true;
}

void pretrain_opts_check(const pretrain_opts *o, int inputs)
{
    if (!o->output)
        die_usage("no output: name the checkpoint with -o");
    if (inputs > 1)
        die_usage("at most one input stream");
    if (o->init && o->resume)
        die_usage("--init and --resume exclude each other (--resume continues a run, --init starts one)");
}

optim_config pretrain_optim_config(const pretrain_opts *o)
{
    optim_config oc = optim_defaults(o->optimizer);
    if (o->optimizer != OPTIM_ADAMW)
        oc.momentum = o->momentum;
    oc.weight_decay = o->weight_decay;
    return oc;
}

// ---- over several ranks ------------------------------------------------------------

noreturn void train_fail_all(int status, const char *where, const char *fmt, ...)
{
    if (dist_rank() == 0) {
        char msg[800];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        warnf(status == EXIT_USAGE ? "usage" : where, "%s", msg);
        if (status == EXIT_USAGE)
            fprintf(stderr, "Try '%s --help'.\n", util_progname());
    }
    dist_finalize();
    exit(status);
}

// Appends rank r to a comma-separated list, while it has room.
static void list_rank(char *list, size_t cap, int r)
{
    size_t len = strlen(list);
    if (len < cap - 16)
        snprintf(list + len, cap - len, "%s%d", len ? ", " : "", r);
}

typedef struct {
    uint64_t options, header;
    int32_t shape[3];
} rank_check;

void train_check_ranks_agree(int argc, char **argv, int first_positional, const stream_info *si, int c, int h,
                             int w)
{
    const int K = dist_size();
    rank_check mine = {.options = DIST_HASH_INIT, .header = si->header_hash, .shape = {c, h, w}};
    for (int i = 1; i < first_positional && i < argc; i++)
        mine.options = dist_hash(mine.options, argv[i], strlen(argv[i]) + 1);
    rank_check *all = xmalloc((size_t)K * sizeof *all);
    dist_allgather(&mine, sizeof mine, all);
    char opts[200] = "", heads[200] = "";
    for (int r = 1; r < K; r++) {
        if (all[r].options != all[0].options)
            list_rank(opts, sizeof opts, r);
        else if (all[r].header != all[0].header || memcmp(all[r].shape, all[0].shape, sizeof mine.shape))
            list_rank(heads, sizeof heads, r);
    }
    free(all);
    if (*opts)
        train_fail_all(EXIT_USAGE, NULL, "rank %s: started with other options than rank 0 (every rank must run the "
                       "same %s command)", opts, util_progname());
    if (*heads)
        train_fail_all(1, "mpi", "rank %s: its stream differs from rank 0's (another pair-sample or augment "
                       "command, or other images): every rank must run the same pipeline but for --shard", heads);
}

void train_check_shard(batch_reader *in, int batch)
{
    const stream_info *si = batch_info(in);
    const int K = dist_size(), rank = dist_rank();
    if ((si->shard[1] || K > 1) && (si->shard[0] != rank || si->shard[1] != K || si->shard[2] != batch))
        die(batch_name(in), "rank %d of %d, batch %d, reads %s: feed it pair-sample --shard %d/%d --batch %d", rank,
            K, batch, si->shard[1] ? "another shard" : "a whole stream", rank, K, batch);
}

void train_check_same_state(const model *m, const optimizer *o, int64_t step)
{
    uint64_t h = DIST_HASH_INIT;
    for (int i = 0; i < m->params.count; i++)
        h = dist_hash(h, m->params.items[i].w, m->params.items[i].n * sizeof(float));
    for (int i = 0; i < m->nbn; i++) {
        const batchnorm *bn = m->bns[i].bn;
        h = dist_hash(h, bn->running_mean, (size_t)bn->channels * sizeof(float));
        h = dist_hash(h, bn->running_var, (size_t)bn->channels * sizeof(float));
    }
    for (int i = 0; i < optim_state_count(o); i++) {
        optim_state st = optim_state_get(o, i);
        h = dist_hash(h, st.data, st.n * sizeof(float));
    }
    const int K = dist_size();
    uint64_t *all = xmalloc((size_t)K * sizeof *all);
    dist_allgather(&h, sizeof h, all);
    char differ[200] = "";
    for (int r = 1; r < K; r++)
        if (all[r] != all[0])
            list_rank(differ, sizeof differ, r);
    free(all);
    if (*differ)
        train_fail_all(1, "training", "step %lld: rank %s: its weights, statistics or optimiser state differ from "
                       "rank 0's", (long long)step, differ);
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

int train_default_micro(int batch) { return batch / gcd(batch, 8); }

void train_check_split(int batch, int micro, const char *unit)
{
    const int K = dist_size();
    if (batch % micro)
        train_fail_all(EXIT_USAGE, NULL, "--micro-batch %d does not divide the batch of %d", micro, batch);
    if (batch % K)
        train_fail_all(EXIT_USAGE, NULL, "--batch %d over %d ranks: the batch must be a multiple of the ranks", batch,
                       K);
    const int local = batch / K;
    if (local % micro)
        train_fail_all(EXIT_USAGE, NULL, "--batch %d over %d ranks: each rank's %d %s are not whole micro-batches of "
                       "%d (--micro-batch): give a --micro-batch that divides %d", batch, K, local, unit, micro,
                       local);
}

void train_report_mpi(double run_seconds, bool quiet)
{
    if (quiet || !dist_active())
        return;
    double mpi, convert;
    dist_times(&mpi, &convert);
    fprintf(stderr, "%s: rank 0 of %d: %.2f s in MPI (data and waiting), %.2f s converting to and from fixed point, "
            "of %.2f s\n", util_progname(), dist_size(), mpi, convert, run_seconds);
}
