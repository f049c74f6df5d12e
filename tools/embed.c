// embed: run a checkpoint over a stream of images: encoder features,
// classifier logits or probabilities, per image or averaged per case (see
// embed(1)).
//
//   pair-sample --mode single --split test p.pack | augment --eval | embed --ckpt ft.ckpt | auc
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "blas.h"
#include "ckpt.h"
#include "cli.h"
#include "model.h"
#include "stream.h"
#include "train.h"
#include "util.h"

static const char usage_text[] =
    "usage: embed [options] --ckpt CKPT [IMAGES]\n"
    "Features, logits or probabilities of a checkpoint for every image (standard\n"
    "input when no IMAGES); case, instance, split and label are passed through.\n"
    "\n"
    "  -c, --ckpt FILE         the model (a checkpoint or .safetensors)\n"
    "  -k, --output-key K      features (the encoder's), logits or probs\n"
    "                          (default probs when the model has a classifier, else features)\n"
    "      --per-case mean     average the records of each case into one (in the order\n"
    "                          cases first appear; dermatology is evaluated per case)\n"
    "  -b, --batch N           images per forward pass (default 64)\n"
    "  -o, --output FILE       write to FILE (default stdout; .zst compresses)\n"
    "  -T, --threads N         threads (default: all cores; MEDSSL_THREADS)\n"
    "  -q, --quiet             no progress\n"
    "  -h, --help, -V, --version\n";

typedef enum { OUT_FEATURES, OUT_LOGITS, OUT_PROBS } output_key;
static const char *const key_names[] = {"features", "logits", "probs"};

// One output row: a record, or a case being averaged.
typedef struct {
    record_meta meta;
    uint8_t *labels;   // a copy (multi-label)
    double *sum;       // (dim)
    int64_t count;
} row;

typedef struct {
    row *rows;
    int64_t n, cap;
    // Open addressing on case ids, for --per-case.
    int64_t *slots;
    int64_t nslots;
} table;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static row *find_case(table *t, const char *id, bool *fresh)
{
    if (2 * (t->n + 1) > t->nslots) {
        int64_t ns = t->nslots ? 2 * t->nslots : 1024;
        free(t->slots);
        t->slots = xmalloc((size_t)ns * sizeof *t->slots);
        for (int64_t i = 0; i < ns; i++)
            t->slots[i] = -1;
        t->nslots = ns;
        for (int64_t r = 0; r < t->n; r++) {
            uint64_t h = hash(t->rows[r].meta.case_id) & (uint64_t)(ns - 1);
            while (t->slots[h] >= 0)
                h = (h + 1) & (uint64_t)(ns - 1);
            t->slots[h] = r;
        }
    }
    uint64_t h = hash(id) & (uint64_t)(t->nslots - 1);
    while (t->slots[h] >= 0) {
        if (strcmp(t->rows[t->slots[h]].meta.case_id, id) == 0) {
            *fresh = false;
            return &t->rows[t->slots[h]];
        }
        h = (h + 1) & (uint64_t)(t->nslots - 1);
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->rows = xrealloc(t->rows, (size_t)t->cap * sizeof *t->rows);
    }
    t->slots[h] = t->n;
    *fresh = true;
    row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    return r;
}

static void put_meta(mts_writer *w, const record_meta *m, const uint8_t *labels, int nclasses, bool per_case)
{
    mts_put_str(w, "case", m->case_id);
    if (!per_case)
        mts_put_int(w, "inst", m->inst);
    mts_put_str(w, "split", m->split);
    if (m->labeled && labels) {
        mts_put_key(w, "label");
        msgpack_pack_array(mts_packer(w), (size_t)nclasses);
        for (int k = 0; k < nclasses; k++)
            msgpack_pack_int(mts_packer(w), labels[k]);
    } else if (m->labeled) {
        mts_put_int(w, "label", m->label);
    }
}

static int meta_keys(const record_meta *m, bool per_case) { return 2 + !per_case + m->labeled; }

// Softmax (multi-class) or sigmoid (multi-label) of one row, in place.
static void to_probs(float *v, int k, bool multilabel)
{
    if (multilabel) {
        for (int j = 0; j < k; j++)
            v[j] = 1.0f / (1.0f + expf(-v[j]));
        return;
    }
    float mx = v[0];
    for (int j = 1; j < k; j++)
        mx = v[j] > mx ? v[j] : mx;
    double sum = 0;
    for (int j = 0; j < k; j++)
        sum += exp((double)v[j] - mx);
    for (int j = 0; j < k; j++)
        v[j] = (float)(exp((double)v[j] - mx) / sum);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    common_opts co = {0};
    const char *ckpt_path = NULL, *output = NULL;
    int key = -1, batch = 64;
    bool per_case = false;
    mts_write_opts wopts = {.zstd_level = -1};
    enum { OPT_PER_CASE = 2000 };
    static const struct option longopts[] = {
        {"ckpt", required_argument, 0, 'c'}, {"output-key", required_argument, 0, 'k'},
        {"per-case", required_argument, 0, OPT_PER_CASE}, {"batch", required_argument, 0, 'b'},
        {"output", required_argument, 0, 'o'}, COMMON_LONGOPTS,
        {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:k:b:o:" COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (common_opts_parse(&co, opt, optarg, usage_text))
            continue;
        switch (opt) {
        case 'c': ckpt_path = optarg; break;
        case 'k':
            for (key = 0; key < 3 && strcmp(optarg, key_names[key]) != 0; key++)
                ;
            if (key == 3)
                die_usage("--output-key: '%s' is not features, logits or probs", optarg);
            break;
        case OPT_PER_CASE:
            if (strcmp(optarg, "mean") != 0)
                die_usage("--per-case: only 'mean'");
            per_case = true;
            break;
        case 'b': batch = (int)cli_int("--batch", optarg, 1, 1 << 16); break;
        case 'o': output = optarg; break;
        default: die_usage("unknown option");
        }
    }
    if (!ckpt_path)
        die_usage("no model: give --ckpt");
    if (optind < argc - 1)
        die_usage("at most one input stream");
    blas_init(co.threads);

    model_config cfg;
    ckpt_info info;
    char err[300];
    if (!ckpt_read_header(ckpt_path, &cfg, &info, err, sizeof err))
        die(ckpt_path, "%s", err);
    if (key < 0)
        key = cfg.classes > 0 ? OUT_PROBS : OUT_FEATURES;
    if (key != OUT_FEATURES && cfg.classes == 0)
        die(ckpt_path, "no classifier in this model (a pretraining checkpoint?): only --output-key features");
    model m;
    model_init(&m, &cfg, 0);
    ckpt_load(ckpt_path, &m, NULL, CKPT_ENCODER | CKPT_HEAD | CKPT_FC);
    bool multilabel = strcmp(info.task, "multilabel") == 0;

    batch_reader *in = batch_open(optind < argc ? argv[optind] : NULL, 1, "image records (... | augment --eval)");
    bool any = batch_peek(in);
    int c = 0, h = 0, w = 0;
    batch_shape(in, &c, &h, &w);
    if (any && c != cfg.encoder.in_ch)
        die(batch_name(in), "%d-channel images; the model takes %d channels", c, cfg.encoder.in_ch);
    const stream_info *si = batch_info(in);
    int dim = key == OUT_FEATURES ? m.enc.feature_dim : cfg.classes;

    mts_writer *out = mts_writer_open(output, &wopts);
    mts_write_header(out, "embed", argc, argv, 5);
    mts_put_str(out, "key", key_names[key]);
    mts_put_int(out, "dim", dim);
    mts_put_str(out, "task", info.task[0] ? info.task : si->task);
    mts_put_key(out, "classes");
    // The classes of the model when it has them, else the stream's.
    int ncls = info.nclasses ? info.nclasses : si->nclasses;
    msgpack_pack_array(mts_packer(out), (size_t)ncls);
    for (int k = 0; k < ncls; k++)
        mts_pack_str(mts_packer(out), info.nclasses ? info.class_names[k] : si->classes[k]);
    mts_put_bool(out, "per_case", per_case);

    size_t plane = (size_t)(c ? c : 1) * h * w;
    float *x = xaligned_alloc((size_t)batch * plane * sizeof(float) + 64);
    float *vec = xmalloc((size_t)dim * sizeof(float));
    record_meta *meta = xcalloc((size_t)batch, sizeof *meta);
    table t = {0};
    progress_t prog;
    progress_init(&prog, 30);
    double t0 = now_seconds();
    int64_t done = 0;
    int n;
    while ((n = batch_next(in, batch, x, meta)) > 0) {
        model_forward(&m, false, n, h, w, x);
        for (int i = 0; i < n; i++) {
            const float *src = key == OUT_FEATURES ? m.features + (size_t)i * dim : m.logits + (size_t)i * dim;
            memcpy(vec, src, (size_t)dim * sizeof(float));
            if (key == OUT_PROBS)
                to_probs(vec, dim, multilabel);
            if (!per_case) {
                int64_t shape[1] = {dim};
                mts_tensor tv = mts_tensor_make(MTS_F32, 1, shape, vec);
                mts_begin_map(out, (uint32_t)meta_keys(&meta[i], false) + 1);
                put_meta(out, &meta[i], meta[i].labels, si->nclasses, false);
                mts_put_tensor(out, key_names[key], &tv);
                continue;
            }
            bool fresh;
            row *r = find_case(&t, meta[i].case_id, &fresh);
            if (fresh) {
                r->meta = meta[i];
                r->sum = xcalloc((size_t)dim, sizeof *r->sum);
                if (meta[i].labels) {
                    r->labels = xmalloc((size_t)si->nclasses);
                    memcpy(r->labels, meta[i].labels, (size_t)si->nclasses);
                }
            } else if (r->meta.labeled != meta[i].labeled || r->meta.label != meta[i].label ||
                       (r->labels && memcmp(r->labels, meta[i].labels, (size_t)si->nclasses) != 0)) {
                die(batch_name(in), "case '%s' has records with different labels", meta[i].case_id);
            }
            for (int j = 0; j < dim; j++)
                r->sum[j] += vec[j];
            r->count++;
        }
        done += n;
        if (!co.quiet)
            progress_update(&prog, "%lld images, %.1f/s", (long long)done, done / (now_seconds() - t0));
    }
    for (int64_t r = 0; r < t.n; r++) {
        for (int j = 0; j < dim; j++)
            vec[j] = (float)(t.rows[r].sum[j] / (double)t.rows[r].count);
        int64_t shape[1] = {dim};
        mts_tensor tv = mts_tensor_make(MTS_F32, 1, shape, vec);
        mts_begin_map(out, (uint32_t)meta_keys(&t.rows[r].meta, true) + 2);
        put_meta(out, &t.rows[r].meta, t.rows[r].labels, si->nclasses, true);
        mts_put_int(out, "images", t.rows[r].count);
        mts_put_tensor(out, key_names[key], &tv);
        free(t.rows[r].sum);
        free(t.rows[r].labels);
    }
    mts_writer_close(out);
    if (!co.quiet) {
        progress_done(&prog);
        fprintf(stderr, "embed: %lld images, %.1f images/s\n", (long long)done,
                done / (now_seconds() - t0 + 1e-9));
        if (per_case)
            fprintf(stderr, "embed: %lld cases (mean over their images)\n", (long long)t.n);
    }
    free(t.rows);
    free(t.slots);
    free(x);
    free(vec);
    free(meta);
    ckpt_info_free(&info);
    model_free(&m);
    batch_close(in);
    return 0;
}
