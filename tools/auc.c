// auc: ROC AUC per class and their mean, top-1/top-3 accuracy, bootstrap
// confidence intervals and ROC curves, from a stream of scores with labels
// (see auc(1)).  The numbers come from lib/training/metrics; this file reads the
// records, checks them, and writes the report.
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "cli.h"
#include "metrics.h"
#include "stream.h"
#include "libmsg.h"
#include "util.h"

static const char usage_text[] =
    "usage: auc [options] [FILE...]\n"
    "ROC AUC per class and their mean, top-1/top-3 accuracy (multi-class), bootstrap\n"
    "confidence intervals and ROC curves, from a stream of scores with labels\n"
    "(standard input when no FILE).\n"
    "\n"
    "options:\n"
    "  -k, --key NAME       score tensor of the records (default: probs, else logits)\n"
    "      --per-case HOW   none: every record is a row (default); mean: average the\n"
    "                       probabilities of the records of each case first\n"
    "  -b, --bootstrap N    resample the cases N times for confidence intervals (default 0)\n"
    "  -s, --seed S         bootstrap seed (default 1)\n"
    "  -l, --level P        confidence level of the intervals (default 0.95)\n"
    "  -T, --threads N      bootstrap threads (default: all; the numbers do not depend on it)\n"
    "  -j, --json           one JSON object instead of the text table\n"
    "  -o, --output FILE    write the report to FILE (default stdout)\n"
    "      --roc FILE       draw the ROC curves: FILE.png (rasterised), or FILE.svg\n"
    "  -h, --help           this text\n"
    "  -V, --version        version\n";

enum { CASE_MAX = 256, KEY_MAX = 64 };

// ---- case ids --------------------------------------------------------------------

// Case names to dense ids 0, 1, 2, ... (open addressing, FNV-1a).
typedef struct {
    char **names;     // by id
    size_t count, names_cap;
    uint32_t *slots;  // id + 1, or 0 for an empty slot
    size_t nslots;    // a power of two, kept at least twice count
} case_table;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void case_table_grow(case_table *t)
{
    size_t nslots = t->nslots ? 2 * t->nslots : 1024;
    uint32_t *slots = xcalloc(nslots, sizeof *slots);
    for (size_t id = 0; id < t->count; id++) {
        size_t i = fnv1a(t->names[id]) & (nslots - 1);
        while (slots[i])
            i = (i + 1) & (nslots - 1);
        slots[i] = (uint32_t)id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
}

// The id of `name`; *is_new tells whether it was seen for the first time.
static uint32_t case_id(case_table *t, const char *name, bool *is_new)
{
    if (2 * (t->count + 1) > t->nslots)
        case_table_grow(t);
    size_t i = fnv1a(name) & (t->nslots - 1);
    for (; t->slots[i]; i = (i + 1) & (t->nslots - 1)) {
        if (strcmp(t->names[t->slots[i] - 1], name) == 0) {
            *is_new = false;
            return t->slots[i] - 1;
        }
    }
    if (t->count == t->names_cap) {
        t->names_cap = t->names_cap ? 2 * t->names_cap : 1024;
        t->names = xrealloc(t->names, t->names_cap * sizeof *t->names);
    }
    t->names[t->count] = xstrdup(name);
    t->slots[i] = (uint32_t)++t->count;
    *is_new = true;
    return (uint32_t)(t->count - 1);
}

// ---- reading the records -----------------------------------------------------------

typedef struct {
    // options
    const char *key;             // NULL: "probs" when the first record has it, else "logits"
    bool per_case_mean;
    // what the stream has told so far
    const mts_reader *reader;
    bool task_known;
    const char *task_source;     // what told the task, for messages
    metrics_task task;
    char **names;                // from a header's "classes"
    char score_key[KEY_MAX];
    bool from_logits;
    size_t records, rows_cap;
    uint32_t *first_row;         // the first row of each case (label checks for --per-case)
    size_t first_row_cap;
    case_table cases;
    metrics_data d;              // d.classes is 0 until the first record
    double *work;                // one row of scores
} reading;

static const char *task_name(metrics_task t)
{
    return t == METRICS_MULTICLASS ? "multiclass" : "multilabel";
}

// `now` names the frame that tells the task, `past` how a later message
// refers to it.
static void set_task(reading *s, const mts_frame *f, metrics_task task, const char *now,
                     const char *past)
{
    if (s->task_known && s->task != task)
        mts_die_at(s->reader, f, "%s says %s, but %s said %s (a stream holds one task)", now,
                   task_name(task), s->task_source, task_name(s->task));
    if (!s->task_known) {
        s->task_known = true;
        s->task = task;
        s->task_source = past;
    }
}

static void on_header(const mts_frame *h, void *ctx)
{
    reading *s = ctx;
    const msgpack_object *task = mts_get(h, "task"), *classes = mts_get(h, "classes");
    if (task) {
        if (task->type == MSGPACK_OBJECT_STR && task->via.str.size == 10 &&
            memcmp(task->via.str.ptr, "multiclass", 10) == 0)
            set_task(s, h, METRICS_MULTICLASS, "this header", "a header");
        else if (task->type == MSGPACK_OBJECT_STR && task->via.str.size == 10 &&
                 memcmp(task->via.str.ptr, "multilabel", 10) == 0)
            set_task(s, h, METRICS_MULTILABEL, "this header", "a header");
        else
            mts_die_at(s->reader, h, "key 'task': expected \"multiclass\" or \"multilabel\"");
    }
    if (!classes)
        return;
    if (classes->type != MSGPACK_OBJECT_ARRAY || classes->via.array.size == 0)
        mts_die_at(s->reader, h, "key 'classes': expected a non-empty array of names");
    size_t k = classes->via.array.size;
    for (size_t i = 0; i < k; i++) {
        const msgpack_object *o = &classes->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= CASE_MAX)
            mts_die_at(s->reader, h, "key 'classes': item %zu is not a name (a string < %d bytes)",
                       i, CASE_MAX);
        if (s->names && (strlen(s->names[i]) != o->via.str.size ||
                         memcmp(s->names[i], o->via.str.ptr, o->via.str.size) != 0))
            mts_die_at(s->reader, h, "key 'classes': item %zu is \"%.*s\", an earlier header said \"%s\"",
                       i, (int)o->via.str.size, o->via.str.ptr, s->names[i]);
    }
    if (s->d.classes && s->d.classes != k)
        mts_die_at(s->reader, h, "key 'classes' names %zu classes, but %s %zu", k,
                   s->names ? "an earlier header named" : "the records before have scores for",
                   s->d.classes);
    s->d.classes = k;
    if (s->names)
        return;
    s->names = xmalloc(k * sizeof *s->names);
    for (size_t i = 0; i < k; i++) {
        const msgpack_object *o = &classes->via.array.ptr[i];
        s->names[i] = xmalloc(o->via.str.size + 1);
        memcpy(s->names[i], o->via.str.ptr, o->via.str.size);
        s->names[i][o->via.str.size] = 0;
    }
}

// Reads the score tensor of a record into s->work (d.classes doubles).
static void read_scores(reading *s, const mts_frame *f)
{
    if (!s->score_key[0]) {
        const char *key = s->key ? s->key : mts_get(f, "probs") ? "probs" : "logits";
        if (!s->key && !mts_get(f, "probs") && !mts_get(f, "logits"))
            mts_die_at(s->reader, f, "the record has neither 'probs' nor 'logits' "
                                     "(name the score tensor with --key)");
        snprintf(s->score_key, sizeof s->score_key, "%s", key);
        s->from_logits = strcmp(key, "logits") == 0;
    }
    mts_tensor t;
    mts_req_tensor(s->reader, f, s->score_key, &t);
    if (t.dtype != MTS_F32 && t.dtype != MTS_F64)
        mts_die_at(s->reader, f, "key '%s': dtype %s, expected f32 or f64", s->score_key,
                   mts_dtype_name(t.dtype));
    if (t.rank != 1 || t.shape[0] == 0)
        mts_die_at(s->reader, f, "key '%s': expected a vector of one score per class (shape [K])",
                   s->score_key);
    size_t k = (size_t)t.shape[0];
    if (s->d.classes && s->d.classes != k)
        mts_die_at(s->reader, f, "key '%s' has %zu scores, but %s %zu", s->score_key, k,
                   s->records ? "the records before have" : "the header names", s->d.classes);
    s->d.classes = k;
    if (!s->work)
        s->work = xmalloc(k * sizeof *s->work);
    for (size_t i = 0; i < k; i++) {
        if (t.dtype == MTS_F32) {
            float v;
            memcpy(&v, (const char *)t.data + 4 * i, 4);
            s->work[i] = v;
        } else {
            memcpy(&s->work[i], (const char *)t.data + 8 * i, 8);
        }
        if (!isfinite(s->work[i]))
            mts_die_at(s->reader, f, "key '%s': score %zu is %s", s->score_key, i,
                       isnan(s->work[i]) ? "NaN" : "infinite");
    }
}

// Softmax for multi-class logits (what sklearn would be given); sigmoid for
// multi-label logits only when they are averaged: the AUC of one label is the
// same for the logits as for sigmoid(logits), and ranking the logits avoids
// the ties that rounding 1 / (1 + e^-x) to 1 makes for x above 37.
static void logits_to_probs(reading *s, double *x, size_t k)
{
    if (s->task == METRICS_MULTICLASS) {
        double max = x[0], sum = 0;
        for (size_t i = 1; i < k; i++)
            max = x[i] > max ? x[i] : max;
        for (size_t i = 0; i < k; i++)
            sum += x[i] = exp(x[i] - max);
        for (size_t i = 0; i < k; i++)
            x[i] /= sum;
    } else if (s->per_case_mean) {
        for (size_t i = 0; i < k; i++)
            x[i] = 1 / (1 + exp(-x[i]));
    }
}

// The label of a record into row `row` of d.positive (and d.label).
static void read_label(reading *s, const mts_frame *f, size_t row)
{
    const msgpack_object *o = mts_get(f, "label");
    if (!o)
        mts_die_at(s->reader, f, "the record has no key 'label'");
    size_t K = s->d.classes;
    uint8_t *positive = s->d.positive + row * K;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        set_task(s, f, METRICS_MULTICLASS, "this record's label (an integer)",
                 "an earlier record's label (an integer)");
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->via.u64 >= K)
            mts_die_at(s->reader, f, "label %lld is out of range: the scores have %zu classes (0 to %zu)",
                       o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? (long long)o->via.i64
                                                                  : (long long)o->via.u64,
                       K, K - 1);
        memset(positive, 0, K);
        positive[o->via.u64] = 1;
        s->d.label[row] = (uint32_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_ARRAY) {
        set_task(s, f, METRICS_MULTILABEL, "this record's label (an array)",
                 "an earlier record's label (an array)");
        if (o->via.array.size != K)
            mts_die_at(s->reader, f, "key 'label' has %u entries, the scores have %zu",
                       o->via.array.size, K);
        for (size_t i = 0; i < K; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER && e->via.u64 <= 1)
                positive[i] = (uint8_t)e->via.u64;
            else if (e->type == MSGPACK_OBJECT_BOOLEAN)
                positive[i] = e->via.boolean;
            else
                mts_die_at(s->reader, f, "key 'label': entry %zu is not 0 or 1", i);
        }
    } else {
        mts_die_at(s->reader, f, "key 'label': expected an integer (multi-class) "
                                 "or an array of 0/1 (multi-label)");
    }
}

static void add_record(reading *s, const mts_frame *f)
{
    char case_name[CASE_MAX];
    mts_req_str(s->reader, f, "case", case_name, sizeof case_name);
    read_scores(s, f);
    size_t K = s->d.classes, row = s->d.rows;
    if (row + 1 >= UINT32_MAX)
        mts_die_at(s->reader, f, "too many records (at most %u)", UINT32_MAX - 2);
    if (row == s->rows_cap) {
        s->rows_cap = s->rows_cap ? 2 * s->rows_cap : 4096;
        s->d.score = xrealloc(s->d.score, mul_size(s->rows_cap, K * sizeof *s->d.score, "rows"));
        s->d.positive = xrealloc(s->d.positive, mul_size(s->rows_cap, K, "rows"));
        s->d.label = xrealloc(s->d.label, s->rows_cap * sizeof *s->d.label);
        s->d.cluster = xrealloc(s->d.cluster, s->rows_cap * sizeof *s->d.cluster);
    }
    read_label(s, f, row);
    if (s->from_logits)
        logits_to_probs(s, s->work, K);
    memcpy(s->d.score + row * K, s->work, K * sizeof *s->work);

    bool is_new;
    uint32_t c = case_id(&s->cases, case_name, &is_new);
    if (is_new) {
        if (s->cases.names_cap > s->first_row_cap) {
            s->first_row_cap = s->cases.names_cap;
            s->first_row = xrealloc(s->first_row, s->first_row_cap * sizeof *s->first_row);
        }
        s->first_row[c] = (uint32_t)row;
    } else if (s->per_case_mean &&
               memcmp(s->d.positive + (size_t)s->first_row[c] * K, s->d.positive + row * K, K) != 0) {
        mts_die_at(s->reader, f, "case '%s': the label differs from an earlier record of the case "
                                 "(--per-case mean needs one label per case)", case_name);
    }
    s->d.cluster[row] = c;
    s->d.rows++;
    s->records++;
}

// ---- writing -----------------------------------------------------------------------

// A file that appears complete or not at all: written to a temporary beside
// it (registered, so that dying removes it), renamed into place when done.
typedef struct {
    const char *path;
    char *temp;
    FILE *f;
} output;

static void output_open(output *o, const char *path)
{
    o->path = path;
    o->temp = NULL;
    o->f = stdout;
    if (!path || strcmp(path, "-") == 0)
        return;
    int fd;
    fd = temp_create_beside(path, &o->temp);
    o->f = fdopen(fd, "w");
    if (!o->f)
        die(path, "fdopen: %s", strerror(errno));
}

static void output_close(output *o)
{
    const char *name = o->temp ? o->path : "stdout";
    if (fflush(o->f) != 0 || ferror(o->f))
        die(name, "write error: %s", strerror(errno));
    if (!o->temp)
        return;
    if (fsync(fileno(o->f)) != 0)
        die(name, "fsync: %s", strerror(errno));
    if (fclose(o->f) != 0)
        die(name, "close: %s", strerror(errno));
    temp_commit(o->temp, o->path);
}

typedef struct {
    const reading *s;
    const metrics_report *rep;
    const metrics_bootstrap_opts *boot;  // resamples 0: no intervals
    const char *const *names;
    const char *transform;
} report_view;

static const char *undefined_reason(const metrics_auc_result *c)
{
    return c->positives ? "no negatives" : "no positives";
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

// "value": v, "ci": [lo, hi], "ci_resamples": n (null for what is undefined).
static void json_estimate_fields(FILE *f, const char *value_key, const metrics_estimate *e)
{
    if (e->defined)
        fprintf(f, "\"%s\": %.17g, ", value_key, e->value);
    else
        fprintf(f, "\"%s\": null, ", value_key);
    if (e->ci_resamples)
        fprintf(f, "\"ci\": [%.17g, %.17g], ", e->ci_low, e->ci_high);
    else
        fprintf(f, "\"ci\": null, ");
    fprintf(f, "\"ci_resamples\": %zu", e->ci_resamples);
}

static void json_accuracy(FILE *f, const char *key, const metrics_estimate *e, bool last)
{
    fprintf(f, "  \"%s\": ", key);
    if (e->defined) {
        fprintf(f, "{");
        json_estimate_fields(f, "value", e);
        fprintf(f, "}");
    } else {
        fprintf(f, "null");
    }
    fprintf(f, last ? "\n" : ",\n");
}

static void write_json(FILE *f, const report_view *v)
{
    const reading *s = v->s;
    const metrics_report *rep = v->rep;
    fprintf(f, "{\n  \"task\": \"%s\",\n  \"score_key\": ", task_name(s->task));
    json_string(f, s->score_key);
    fprintf(f, ",\n  \"transform\": \"%s\",\n  \"per_case\": \"%s\",\n", v->transform,
            s->per_case_mean ? "mean" : "none");
    fprintf(f, "  \"records\": %zu,\n  \"cases\": %zu,\n  \"rows\": %zu,\n", s->records,
            s->cases.count, s->d.rows);
    fprintf(f, "  \"classes\": [\n");
    for (size_t k = 0; k < rep->classes; k++) {
        const metrics_auc_result *c = &rep->counts[k];
        fprintf(f, "    {\"index\": %zu, \"name\": ", k);
        json_string(f, v->names[k]);
        fprintf(f, ", \"positives\": %llu, \"negatives\": %llu, ",
                (unsigned long long)c->positives, (unsigned long long)c->negatives);
        json_estimate_fields(f, "auc", &rep->auc[k]);
        if (rep->auc[k].defined)
            fprintf(f, ", \"undefined\": null}");
        else
            fprintf(f, ", \"undefined\": \"%s\"}", undefined_reason(c));
        fprintf(f, k + 1 < rep->classes ? ",\n" : "\n");
    }
    fprintf(f, "  ],\n  \"mean_auc\": {");
    json_estimate_fields(f, "value", &rep->mean_auc);
    fprintf(f, ", \"classes_defined\": %zu, \"classes\": %zu},\n", rep->mean_classes, rep->classes);
    json_accuracy(f, "top1_accuracy", &rep->top1, false);
    json_accuracy(f, "top3_accuracy", &rep->top3, false);
    if (v->boot->resamples)
        fprintf(f, "  \"bootstrap\": {\"resamples\": %zu, \"seed\": %llu, \"level\": %g, "
                   "\"method\": \"percentile\", \"unit\": \"case\"}\n",
                v->boot->resamples, (unsigned long long)v->boot->seed, v->boot->level);
    else
        fprintf(f, "  \"bootstrap\": null\n");
    fprintf(f, "}\n");
}

// " [lo, hi]" and, when some resamples could not be used, how many could.
static void text_interval(FILE *f, const report_view *v, const metrics_estimate *e)
{
    if (!v->boot->resamples)
        return;
    if (!e->ci_resamples) {
        fprintf(f, "  [no usable resample]");
        return;
    }
    fprintf(f, "  [%.4f, %.4f]", e->ci_low, e->ci_high);
    if (e->ci_resamples < v->boot->resamples)
        fprintf(f, " (%zu of %zu resamples)", e->ci_resamples, v->boot->resamples);
}

static void write_text(FILE *f, const report_view *v)
{
    const reading *s = v->s;
    const metrics_report *rep = v->rep;
    bool multiclass = s->task == METRICS_MULTICLASS;
    fprintf(f, "%zu records, %zu cases, %zu %s (%s); scores: %s", s->records, s->cases.count,
            rep->classes, multiclass ? "classes" : "labels", task_name(s->task), s->score_key);
    if (strcmp(v->transform, "none") != 0)
        fprintf(f, " (%s)", v->transform);
    if (s->per_case_mean)
        fprintf(f, ", averaged per case");
    fprintf(f, "\n");
    if (v->boot->resamples)
        fprintf(f, "bootstrap: %zu resamples of the cases, seed %llu, %g%% percentile intervals\n",
                v->boot->resamples, (unsigned long long)v->boot->seed, 100 * v->boot->level);
    fprintf(f, "\n");

    int width = 10;
    for (size_t k = 0; k < rep->classes; k++)
        width = (int)strlen(v->names[k]) > width ? (int)strlen(v->names[k]) : width;
    fprintf(f, "%-*s  %9s  %9s  %-6s%s\n", width, multiclass ? "class" : "label", "positives",
            "negatives", "AUC", v->boot->resamples ? "  CI" : "");
    for (size_t k = 0; k < rep->classes; k++) {
        const metrics_auc_result *c = &rep->counts[k];
        fprintf(f, "%-*s  %9llu  %9llu  ", width, v->names[k], (unsigned long long)c->positives,
                (unsigned long long)c->negatives);
        if (rep->auc[k].defined) {
            fprintf(f, "%.4f", rep->auc[k].value);
            text_interval(f, v, &rep->auc[k]);
        } else {
            fprintf(f, "undefined (%s)", undefined_reason(c));
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\n%s (%zu of %zu %s): ", multiclass ? "macro mean AUC" : "mean AUC",
            rep->mean_classes, rep->classes, multiclass ? "classes" : "labels");
    if (rep->mean_auc.defined) {
        fprintf(f, "%.4f", rep->mean_auc.value);
        text_interval(f, v, &rep->mean_auc);
    } else {
        fprintf(f, "undefined (no %s has both positives and negatives)",
                multiclass ? "class" : "label");
    }
    fprintf(f, "\n");
    if (multiclass) {
        fprintf(f, "top-1 accuracy: %.4f", rep->top1.value);
        text_interval(f, v, &rep->top1);
        fprintf(f, "\ntop-3 accuracy: %.4f", rep->top3.value);
        text_interval(f, v, &rep->top3);
        fprintf(f, "\n");
    }
}

static void write_roc(const char *path, const metrics_data *d, const metrics_report *rep,
                      const char *const *names, const char *argv0)
{
    char *svg = metrics_roc_svg(d, rep, names);
    size_t len = strlen(svg);
    size_t plen = strlen(path);
    char *temp;
    int fd = temp_create_beside(path, &temp);
    if (plen >= 4 && strcmp(path + plen - 4, ".svg") == 0) {
        if (write(fd, svg, len) != (ssize_t)len || fsync(fd) != 0)
            die(path, "write error: %s", strerror(errno));
    } else {
        // PNG through libvips (librsvg underneath); it writes the file itself.
        if (VIPS_INIT(argv0))
            die("libvips", "cannot start: %s", vips_error_buffer());
        libmsg_init();
        VipsImage *image;
        if (vips_svgload_buffer(svg, len, &image, NULL) || vips_pngsave(image, temp, NULL))
            die(path, "cannot draw the ROC curves: %s", vips_error_buffer());
        g_object_unref(image);
    }
    close(fd);
    temp_commit(temp, path);
    free(svg);
}

// ---- main --------------------------------------------------------------------------

// Progress of the bootstrap, shown only once it has taken a few seconds: most
// runs take less, and a line for them would be noise.
typedef struct {
    progress_t line;
    double start;
} bootstrap_progress;

static void show_progress(size_t done, size_t total, void *ctx)
{
    bootstrap_progress *p = ctx;
    if (now_seconds() - p->start > 2)
        progress_update(&p->line, "bootstrap: %zu of %zu resamples", done, total);
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    reading s = {0};
    metrics_bootstrap_opts boot = {.resamples = 0, .seed = 1, .level = 0.95, .threads = 0};
    bool json = false;
    const char *output_path = NULL, *roc_path = NULL;
    enum { OPT_PER_CASE = 256, OPT_ROC };
    static const struct option longopts[] = {
        {"key", required_argument, 0, 'k'},       {"per-case", required_argument, 0, OPT_PER_CASE},
        {"bootstrap", required_argument, 0, 'b'}, {"seed", required_argument, 0, 's'},
        {"level", required_argument, 0, 'l'},     {"threads", required_argument, 0, 'T'},
        {"json", no_argument, 0, 'j'},            {"output", required_argument, 0, 'o'},
        {"roc", required_argument, 0, OPT_ROC},   {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "k:b:s:l:T:jo:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (!*optarg || strlen(optarg) >= KEY_MAX)
                die_usage("--key: a name of 1 to %d bytes", KEY_MAX - 1);
            s.key = optarg;
            break;
        case OPT_PER_CASE:
            if (strcmp(optarg, "mean") == 0)
                s.per_case_mean = true;
            else if (strcmp(optarg, "none") != 0)
                die_usage("--per-case: '%s': expected none or mean", optarg);
            break;
        case 'b': boot.resamples = (size_t)cli_int("--bootstrap", optarg, 0, 100000000); break;
        case 's': boot.seed = (uint64_t)cli_int("--seed", optarg, 0, LLONG_MAX); break;
        case 'l': boot.level = cli_double("--level", optarg, 0.01, 0.999); break;
        case 'T': boot.threads = (int)cli_int("--threads", optarg, 1, 1024); break;
        case 'j': json = true; break;
        case 'o': output_path = optarg; break;
        case OPT_ROC: roc_path = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': cli_version(NULL); return 0;
        default: die_usage("unknown option (see auc --help)");
        }
    }

    mts_limits lim = mts_limits_default();
    int nfiles = argc - optind;
    for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
        const char *path = nfiles ? argv[optind + i] : "-";
        mts_reader *r = mts_reader_open(path, &lim);
        if (!r)
            die(path, "cannot open: %s", strerror(errno));
        s.reader = r;
        mts_frame f;
        while (mts_next_record(r, &f, on_header, &s))
            add_record(&s, &f);
        mts_reader_close(r);
    }
    if (s.records == 0)
        die("input", "no score records");

    s.d.task = s.task;
    s.d.nclusters = s.cases.count;
    if (s.task == METRICS_MULTILABEL) {
        free(s.d.label);
        s.d.label = NULL;
    }
    if (s.per_case_mean)
        metrics_mean_per_cluster(&s.d);
    const char *transform = !s.from_logits                  ? "none"
                            : s.task == METRICS_MULTICLASS ? "softmax"
                            : s.per_case_mean              ? "sigmoid"
                                                           : "none";
    char **names = s.names;
    if (!names) {
        names = xmalloc(s.d.classes * sizeof *names);
        for (size_t k = 0; k < s.d.classes; k++) {
            names[k] = xmalloc(24);
            snprintf(names[k], 24, "%zu", k);
        }
    }

    metrics_report rep;
    metrics_evaluate(&s.d, &rep);
    const char *kind = s.task == METRICS_MULTICLASS ? "class" : "label";
    for (size_t k = 0; k < rep.classes; k++) {
        if (rep.auc[k].defined)
            continue;
        char where[CASE_MAX + 16];
        snprintf(where, sizeof where, "%s '%s'", kind, names[k]);
        warnf(where, "%s among the %zu %s: AUC undefined, left out of the mean",
              undefined_reason(&rep.counts[k]), s.d.rows, s.per_case_mean ? "cases" : "records");
    }
    if (!rep.mean_auc.defined)
        warnf("mean AUC", "undefined: no %s has both positives and negatives", kind);
    bootstrap_progress progress = {.start = now_seconds()};
    progress_init(&progress.line, 10);
    boot.progress = show_progress;
    boot.ctx = &progress;
    metrics_bootstrap(&s.d, &boot, &rep);
    progress_done(&progress.line);

    report_view view = {.s = &s, .rep = &rep, .boot = &boot,
                        .names = (const char *const *)names, .transform = transform};
    if (roc_path)
        write_roc(roc_path, &s.d, &rep, view.names, argv[0]);
    output out;
    output_open(&out, output_path);
    if (json)
        write_json(out.f, &view);
    else
        write_text(out.f, &view);
    output_close(&out);

    // Everything is freed, so that a leak checker's report stays empty.
    metrics_report_free(&rep);
    for (size_t k = 0; k < s.d.classes; k++)
        free(names[k]);
    free(names);
    for (size_t i = 0; i < s.cases.count; i++)
        free(s.cases.names[i]);
    free(s.cases.names);
    free(s.cases.slots);
    free(s.first_row);
    free(s.work);
    free(s.d.score);
    free(s.d.positive);
    free(s.d.label);
    free(s.d.cluster);
    return 0;
}
