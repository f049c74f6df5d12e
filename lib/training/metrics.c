#include "metrics.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

// ---- sorting ------------------------------------------------------------------

// A 64-bit key whose unsigned order is the order of the doubles: flip all bits
// of negatives (their magnitude order is reversed), set the sign bit of the
// others.  -0.0 becomes +0.0 first so that the two zeros tie.
static uint64_t order_key(double x)
{
    if (x == 0)
        x = 0;
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits >> 63) ? ~bits : bits | (UINT64_C(1) << 63);
}

#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)
#define RADIX_PASSES 6 // 6 * 11 >= 64

// LSD radix sort of (key, idx) pairs by key, stable.  A digit that every key
// shares needs no pass; doubles converted from float have 29 zero low bits,
// so their first two passes are skipped.
static void radix_sort(uint64_t *key, uint32_t *idx, size_t n)
{
    if (n < 2)
        return;
    size_t(*count)[RADIX_SIZE] = xcalloc(RADIX_PASSES, sizeof *count);
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < RADIX_PASSES; p++)
            count[p][(key[i] >> (p * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    uint64_t *key_out = xmalloc(n * sizeof *key_out);
    uint32_t *idx_out = xmalloc(n * sizeof *idx_out);
    uint64_t *key_in = key;
    uint32_t *idx_in = idx;
    for (int p = 0; p < RADIX_PASSES; p++) {
        int shift = p * RADIX_BITS;
        size_t *c = count[p];
        if (c[(key_in[0] >> shift) & (RADIX_SIZE - 1)] == n)
            continue;
        size_t start = 0;
        for (size_t d = 0; d < RADIX_SIZE; d++) {
            size_t here = c[d];
            c[d] = start;
            start += here;
        }
        for (size_t i = 0; i < n; i++) {
            size_t to = c[(key_in[i] >> shift) & (RADIX_SIZE - 1)]++;
            key_out[to] = key_in[i];
            idx_out[to] = idx_in[i];
        }
        uint64_t *kt = key_in;
        key_in = key_out, key_out = kt;
        uint32_t *it = idx_in;
        idx_in = idx_out, idx_out = it;
    }
    if (key_in != key) {
        memcpy(key, key_in, n * sizeof *key);
        memcpy(idx, idx_in, n * sizeof *idx);
        key_out = key_in, idx_out = idx_in;
    }
    free(key_out);
    free(idx_out);
    free(count);
}

void metrics_rank(metrics_ranking *r, const double *score, size_t stride, size_t n)
{
    if (n >= UINT32_MAX)
        die("metrics", "%zu rows: at most %u can be ranked", n, UINT32_MAX - 1);
    uint64_t *key = xmalloc(mul_size(n, sizeof *key, "ranking"));
    r->n = n;
    r->order = xmalloc(n * sizeof *r->order);
    for (size_t i = 0; i < n; i++) {
        key[i] = order_key(score[i * stride]);
        r->order[i] = (uint32_t)i;
    }
    radix_sort(key, r->order, n);
    r->group_end = xmalloc(n * sizeof *r->group_end);
    r->ngroups = 0;
    for (size_t i = 1; i <= n; i++)
        if (i == n || key[i] != key[i - 1])
            r->group_end[r->ngroups++] = (uint32_t)i;
    free(key);
}

void metrics_ranking_free(metrics_ranking *r)
{
    free(r->order);
    free(r->group_end);
    r->order = r->group_end = NULL;
}

// ---- AUC ------------------------------------------------------------------------

metrics_auc_result metrics_auc_ranked(const metrics_ranking *r, const uint8_t *positive,
                                      size_t stride, const uint32_t *weight)
{
    // twice_pairs = 2 * (pairs ranked right + pairs tied / 2), an integer.
    uint64_t pos = 0, neg = 0, twice_pairs = 0;
    size_t start = 0;
    for (size_t g = 0; g < r->ngroups; g++) {
        uint64_t group_pos = 0, group_neg = 0;
        for (size_t j = start; j < r->group_end[g]; j++) {
            uint32_t row = r->order[j];
            uint64_t w = weight ? weight[row] : 1;
            if (positive[row * stride])
                group_pos += w;
            else
                group_neg += w;
        }
        // `neg` negatives score below this group: each is beaten by every
        // positive of the group; the group's own negatives are ties.
        twice_pairs += group_pos * (2 * neg + group_neg);
        pos += group_pos;
        neg += group_neg;
        start = r->group_end[g];
    }
    metrics_auc_result res = {.positives = pos, .negatives = neg, .auc = 0};
    if (metrics_auc_defined(&res))
        res.auc = (double)twice_pairs / (2.0 * (double)pos * (double)neg);
    return res;
}

metrics_auc_result metrics_auc(const double *score, const uint8_t *positive, size_t n)
{
    metrics_ranking r;
    metrics_rank(&r, score, 1, n);
    metrics_auc_result res = metrics_auc_ranked(&r, positive, 1, NULL);
    metrics_ranking_free(&r);
    return res;
}

size_t metrics_roc(const metrics_ranking *r, const uint8_t *positive, size_t stride,
                   double *fpr, double *tpr)
{
    uint64_t pos_total = 0;
    for (size_t i = 0; i < r->n; i++)
        pos_total += positive[i * stride] != 0;
    uint64_t neg_total = r->n - pos_total, pos = 0, neg = 0;
    size_t npoints = 0;
    fpr[npoints] = tpr[npoints] = 0;
    npoints++;
    // Lowering the threshold past each group, highest scores first.
    for (size_t g = r->ngroups; g-- > 0;) {
        size_t start = g ? r->group_end[g - 1] : 0;
        for (size_t j = start; j < r->group_end[g]; j++) {
            if (positive[(size_t)r->order[j] * stride])
                pos++;
            else
                neg++;
        }
        fpr[npoints] = neg_total ? (double)neg / (double)neg_total : 0;
        tpr[npoints] = pos_total ? (double)pos / (double)pos_total : 0;
        npoints++;
    }
    return npoints;
}

// ---- top-k ------------------------------------------------------------------------

double metrics_topk_credit(const double *scores, size_t classes, size_t label, size_t k)
{
    double own = scores[label];
    size_t higher = 0, tied = 0;
    for (size_t c = 0; c < classes; c++) {
        if (c == label)
            continue;
        if (scores[c] > own)
            higher++;
        else if (scores[c] == own)
            tied++;
    }
    if (higher >= k)
        return 0;
    double credit = (double)(k - higher) / (double)(tied + 1);
    return credit < 1 ? credit : 1;
}

// ---- report -----------------------------------------------------------------------

static double *topk_credits(const metrics_data *d, size_t k)
{
    double *credit = xmalloc(d->rows * sizeof *credit);
    for (size_t i = 0; i < d->rows; i++)
        credit[i] = metrics_topk_credit(d->score + i * d->classes, d->classes, d->label[i], k);
    return credit;
}

static metrics_estimate point(double value)
{
    return (metrics_estimate){.defined = true, .value = value};
}

void metrics_evaluate(const metrics_data *d, metrics_report *rep)
{
    size_t K = d->classes;
    memset(rep, 0, sizeof *rep);
    rep->classes = K;
    rep->counts = xcalloc(K, sizeof *rep->counts);
    rep->auc = xcalloc(K, sizeof *rep->auc);
    double sum = 0;
    for (size_t k = 0; k < K; k++) {
        metrics_ranking r;
        metrics_rank(&r, d->score + k, K, d->rows);
        rep->counts[k] = metrics_auc_ranked(&r, d->positive + k, K, NULL);
        metrics_ranking_free(&r);
        if (metrics_auc_defined(&rep->counts[k])) {
            rep->auc[k] = point(rep->counts[k].auc);
            sum += rep->counts[k].auc;
            rep->mean_classes++;
        }
    }
    if (rep->mean_classes)
        rep->mean_auc = point(sum / (double)rep->mean_classes);
    if (d->task == METRICS_MULTICLASS && d->rows > 0) {
        size_t topk[2] = {1, 3};
        metrics_estimate *out[2] = {&rep->top1, &rep->top3};
        for (int t = 0; t < 2; t++) {
            double *credit = topk_credits(d, topk[t]), total = 0;
            for (size_t i = 0; i < d->rows; i++)
                total += credit[i];
            *out[t] = point(total / (double)d->rows);
            free(credit);
        }
    }
}

void metrics_report_free(metrics_report *rep)
{
    free(rep->counts);
    free(rep->auc);
    rep->counts = NULL;
    rep->auc = NULL;
}

// ---- bootstrap --------------------------------------------------------------------

double metrics_quantile(const double *sorted, size_t n, double p)
{
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return sorted[n - 1];
    return sorted[lo] + (h - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// One resample's statistics into out[0 .. K+2]: AUC per class, mean AUC,
// top-1, top-3.  NaN marks a statistic this resample cannot give (a class
// without positives or negatives); it never leaves this file.
static void resample_stats(const metrics_data *d, const metrics_report *rep,
                           const metrics_ranking *rank, const double *credit1,
                           const double *credit3, const uint32_t *weight, double *out)
{
    size_t K = d->classes, used = 0;
    double sum = 0;
    bool complete = true;
    for (size_t k = 0; k < K; k++) {
        metrics_auc_result a = metrics_auc_ranked(&rank[k], d->positive + k, K, weight);
        bool defined = metrics_auc_defined(&a);
        out[k] = defined ? a.auc : NAN;
        if (rep->auc[k].defined) {
            complete = complete && defined;
            sum += a.auc;
            used++;
        }
    }
    out[K] = complete && used ? sum / (double)used : NAN;
    out[K + 1] = out[K + 2] = NAN;
    if (credit1) {
        double total = 0, hits1 = 0, hits3 = 0;
        for (size_t i = 0; i < d->rows; i++) {
            total += weight[i];
            hits1 += weight[i] * credit1[i];
            hits3 += weight[i] * credit3[i];
        }
        out[K + 1] = hits1 / total;
        out[K + 2] = hits3 / total;
    }
}

void metrics_bootstrap(const metrics_data *d, const metrics_bootstrap_opts *o,
                       metrics_report *rep)
{
    size_t K = d->classes, B = o->resamples, nstats = K + 3;
    if (B == 0 || d->rows == 0)
        return;
    if (B >= UINT32_MAX || d->nclusters >= UINT32_MAX)
        die("bootstrap", "too many resamples or cases (at most %u)", UINT32_MAX - 1);
    double *stats = xmalloc(mul_size(mul_size(B, nstats, "bootstrap"), sizeof *stats, "bootstrap"));
    metrics_ranking *rank = xcalloc(K, sizeof *rank);
    for (size_t k = 0; k < K; k++)
        metrics_rank(&rank[k], d->score + k, K, d->rows);
    bool multiclass = d->task == METRICS_MULTICLASS;
    double *credit1 = multiclass ? topk_credits(d, 1) : NULL;
    double *credit3 = multiclass ? topk_credits(d, 3) : NULL;
    size_t done = 0;

#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads())
    {
        uint32_t *drawn = xmalloc(d->nclusters * sizeof *drawn);
        uint32_t *weight = xmalloc(d->rows * sizeof *weight);
#pragma omp for schedule(dynamic, 4)
        for (size_t b = 0; b < B; b++) {
            // Resample b has its own stream: the same numbers whatever thread runs it.
            rng_t rng = rng_make(o->seed, b, 0, 0);
            memset(drawn, 0, d->nclusters * sizeof *drawn);
            for (size_t i = 0; i < d->nclusters; i++)
                drawn[rng_below(&rng, (uint32_t)d->nclusters)]++;
            for (size_t i = 0; i < d->rows; i++)
                weight[i] = drawn[d->cluster[i]];
            resample_stats(d, rep, rank, credit1, credit3, weight, stats + b * nstats);
            size_t now;
#pragma omp atomic capture
            now = ++done;
            if (o->progress && omp_get_thread_num() == 0)
                o->progress(now, B, o->ctx);
        }
        free(drawn);
        free(weight);
    }

    double *usable = xmalloc(B * sizeof *usable);
    double tail = (1 - o->level) / 2;
    for (size_t s = 0; s < nstats; s++) {
        metrics_estimate *e = s < K ? &rep->auc[s] : s == K ? &rep->mean_auc
                                                  : s == K + 1 ? &rep->top1 : &rep->top3;
        if (!e->defined)
            continue;
        size_t m = 0;
        for (size_t b = 0; b < B; b++)
            if (!isnan(stats[b * nstats + s]))
                usable[m++] = stats[b * nstats + s];
        e->ci_resamples = m;
        if (m == 0)
            continue;
        qsort(usable, m, sizeof *usable, compare_doubles);
        e->ci_low = metrics_quantile(usable, m, tail);
        e->ci_high = metrics_quantile(usable, m, 1 - tail);
    }
    free(usable);
    free(credit1);
    free(credit3);
    for (size_t k = 0; k < K; k++)
        metrics_ranking_free(&rank[k]);
    free(rank);
    free(stats);
}

// ---- per-case mean ----------------------------------------------------------------

void metrics_mean_per_cluster(metrics_data *d)
{
    size_t C = d->nclusters, K = d->classes;
    double *sum = xcalloc(mul_size(C, K, "cases"), sizeof *sum);
    uint8_t *positive = xmalloc(C * K);
    uint32_t *label = d->label ? xmalloc(C * sizeof *label) : NULL;
    uint32_t *nrows = xcalloc(C, sizeof *nrows);
    for (size_t i = 0; i < d->rows; i++) {
        uint32_t c = d->cluster[i];
        if (nrows[c]++ == 0) {
            memcpy(positive + c * K, d->positive + i * K, K);
            if (label)
                label[c] = d->label[i];
        }
        for (size_t k = 0; k < K; k++)
            sum[c * K + k] += d->score[i * K + k];
    }
    for (size_t c = 0; c < C; c++)
        for (size_t k = 0; k < K; k++)
            sum[c * K + k] /= nrows[c];
    free(nrows);
    free(d->score);
    free(d->positive);
    free(d->label);
    d->score = sum;
    d->positive = positive;
    d->label = label;
    d->rows = C;
    d->cluster = xrealloc(d->cluster, C * sizeof *d->cluster);
    for (size_t c = 0; c < C; c++)
        d->cluster[c] = (uint32_t)c;
}

// ---- SVG ---------------------------------------------------------------------------

typedef struct {
    char *text;
    size_t len, cap;
} text_buf;

static void appendf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(text_buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->text + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = 2 * b->cap + (size_t)n;
        b->text = xrealloc(b->text, b->cap);
    }
}

static void append_xml_escaped(text_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': appendf(b, "&amp;"); break;
        case '<': appendf(b, "&lt;"); break;
        case '>': appendf(b, "&gt;"); break;
        case '"': appendf(b, "&quot;"); break;
        default: appendf(b, "%c", *s);
        }
    }
}

// Matplotlib's "tab10" colours; past ten classes the dash pattern changes.
static const char *const palette[10] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
static const char *const dashes[3] = {"none", "7,3", "2,2"};

enum { SVG_W = 780, SVG_H = 560, PLOT_X = 70, PLOT_Y = 30, PLOT_SIZE = 460, LEGEND_X = 560 };

// Points of a curve closer than half a pixel to the last one drawn add
// nothing visible; dropping them keeps a million-point ROC small.
static void append_curve(text_buf *b, const double *fpr, const double *tpr, size_t npoints)
{
    double last_x = -1, last_y = -1;
    for (size_t i = 0; i < npoints; i++) {
        double x = PLOT_X + fpr[i] * PLOT_SIZE, y = PLOT_Y + (1 - tpr[i]) * PLOT_SIZE;
        if (i + 1 < npoints && fabs(x - last_x) < 0.5 && fabs(y - last_y) < 0.5)
            continue;
        appendf(b, "%.1f,%.1f ", x, y);
        last_x = x, last_y = y;
    }
}

char *metrics_roc_svg(const metrics_data *d, const metrics_report *rep,
                      const char *const *names)
{
    size_t K = d->classes;
    // Wide enough for the longest legend line, at about 7.5 pixels a
    // character of 13-pixel DejaVu Sans.
    size_t longest = 0;
    for (size_t k = 0; k < K; k++) {
        size_t chars = strlen(names[k]) + (rep->auc[k].defined ? 12 : 28);
        longest = chars > longest ? chars : longest;
    }
    size_t width = LEGEND_X + 40 + longest * 15 / 2;
    width = width > SVG_W ? width : SVG_W;
    text_buf b = {.text = xmalloc(4096), .len = 0, .cap = 4096};
    appendf(&b,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%zu\" height=\"%d\" "
            "font-family=\"DejaVu Sans, sans-serif\" font-size=\"13\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, SVG_H);
    // Grid, ticks and the chance diagonal.
    for (int t = 0; t <= 5; t++) {
        double v = t / 5.0, x = PLOT_X + v * PLOT_SIZE, y = PLOT_Y + (1 - v) * PLOT_SIZE;
        appendf(&b,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e0e0e0\"/>\n"
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.1f</text>\n"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                x, PLOT_Y, x, PLOT_Y + PLOT_SIZE, PLOT_X, y, PLOT_X + PLOT_SIZE, y,
                x, PLOT_Y + PLOT_SIZE + 18, v, PLOT_X - 6, y + 4, v);
    }
    appendf(&b,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"4,4\"/>\n"
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">False positive rate</text>\n"
            "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">True positive rate</text>\n",
            PLOT_X, PLOT_Y + PLOT_SIZE, PLOT_X + PLOT_SIZE, PLOT_Y, PLOT_X, PLOT_Y, PLOT_SIZE,
            PLOT_SIZE, PLOT_X + PLOT_SIZE / 2, PLOT_Y + PLOT_SIZE + 40, 22,
            PLOT_Y + PLOT_SIZE / 2);

    double *fpr = xmalloc((d->rows + 1) * sizeof *fpr);
    double *tpr = xmalloc((d->rows + 1) * sizeof *tpr);
    double line_height = K > 0 && PLOT_SIZE / (double)K < 18 ? PLOT_SIZE / (double)K : 18;
    for (size_t k = 0; k < K; k++) {
        const char *colour = palette[k % 10], *dash = dashes[(k / 10) % 3];
        double ly = PLOT_Y + 10 + (double)k * line_height;
        if (rep->auc[k].defined) {
            metrics_ranking r;
            metrics_rank(&r, d->score + k, K, d->rows);
            size_t npoints = metrics_roc(&r, d->positive + k, K, fpr, tpr);
            metrics_ranking_free(&r);
            appendf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                        "stroke-dasharray=\"%s\" points=\"", colour, dash);
            append_curve(&b, fpr, tpr, npoints);
            appendf(&b, "\"/>\n<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
                        "stroke-width=\"2\" stroke-dasharray=\"%s\"/>\n",
                    LEGEND_X, ly - 4, LEGEND_X + 24, ly - 4, colour, dash);
        }
        appendf(&b, "<text x=\"%d\" y=\"%.1f\">", LEGEND_X + 30, ly);
        append_xml_escaped(&b, names[k]);
        if (rep->auc[k].defined)
            appendf(&b, " (AUC %.3f)</text>\n", rep->auc[k].value);
        else
            appendf(&b, " (undefined: no %s)</text>\n",
                    rep->counts[k].positives ? "negatives" : "positives");
    }
    free(fpr);
    free(tpr);
    appendf(&b, "</svg>\n");
    return b.text;
}
