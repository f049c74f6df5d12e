// metrics: the evaluation numbers of auc(1): ROC AUC per class as the
// Mann-Whitney statistic, top-k accuracy, percentile bootstrap intervals over
// cases, ROC curves drawn as SVG.
//
// AUC is computed exactly: the scores of a class are sorted once (an LSD
// radix sort on order-preserving 64-bit keys of the doubles), rows with equal
// scores form tie groups, and
//     AUC = sum over groups g of pos(g) * (neg(below g) + neg(g) / 2) / (P * N),
// i.e. every (positive, negative) pair counts 1 when the positive scores
// higher, 1/2 on a tie.  The sums are kept in 64-bit integers (doubled, so that
// the halves stay integral) and divided once, so the result is the correctly
// rounded exact value as long as 2 * P * N < 2^53.  This equals the
// trapezoidal area under the ROC curve that sklearn's roc_auc_score computes.
// A bootstrap resample only changes how often each row counts (its weight), so
// its AUC reuses the sorted order: one pass per class and resample.
//
// Scores must not be NaN (the caller checks and reports where).  -0.0 and
// +0.0 are the same score.
#ifndef MEDSSL_METRICS_H
#define MEDSSL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ---- AUC of one column of scores ----------------------------------------------

typedef struct {
    uint64_t positives, negatives;  // rows (or summed weights) of each kind
    double auc;                     // meaningful only when both counts are > 0
} metrics_auc_result;

static inline bool metrics_auc_defined(const metrics_auc_result *a)
{
    return a->positives > 0 && a->negatives > 0;
}

// One column of scores sorted once: rows order[group_end[g-1] .. group_end[g])
// (group_end[-1] taken as 0) all have the same score, groups ascending.
typedef struct {
    size_t n, ngroups;
    uint32_t *order;
    uint32_t *group_end;
} metrics_ranking;

// Ranks score[i * stride] for i < n (n < 2^32).
void metrics_rank(metrics_ranking *r, const double *score, size_t stride, size_t n);
void metrics_ranking_free(metrics_ranking *r);

// AUC of a ranked column; row i is positive when positive[i * stride] != 0.
// weight NULL: every row counts once; otherwise row i counts weight[i] times
// (0 leaves it out).
metrics_auc_result metrics_auc_ranked(const metrics_ranking *r, const uint8_t *positive,
                                      size_t stride, const uint32_t *weight);

// Ranks and computes in one call (contiguous columns).
metrics_auc_result metrics_auc(const double *score, const uint8_t *positive, size_t n);

// ROC curve of a ranked column, from (0, 0) to (1, 1): one point per tie group
// (thresholds from the highest score down), ngroups + 1 points written into
// fpr and tpr.  Only meaningful when both classes are present.
size_t metrics_roc(const metrics_ranking *r, const uint8_t *positive, size_t stride,
                   double *fpr, double *tpr);

// ---- top-k accuracy -------------------------------------------------------------

// The credit (0 to 1) one row earns for top-k accuracy: with g classes scoring
// strictly higher than the true class and t others tied with it, the true
// class takes one of the places g .. g + t with equal chance under a random
// tie break, so the credit is the chance that this place is below k:
// clamp((k - g) / (t + 1), 0, 1).  Without ties this is 1 or 0, as usual.
double metrics_topk_credit(const double *scores, size_t classes, size_t label, size_t k);

// ---- a data set and its report ------------------------------------------------

typedef enum { METRICS_MULTICLASS, METRICS_MULTILABEL } metrics_task;

typedef struct {
    metrics_task task;
    size_t rows, classes;
    double *score;      // rows x classes
    uint8_t *positive;  // rows x classes: 1 when the row is of the class / has the label
    uint32_t *label;    // multi-class: the class of each row (NULL for multi-label)
    uint32_t *cluster;  // the case of each row, 0 .. nclusters-1: the bootstrap unit
    size_t nclusters;
} metrics_data;

typedef struct {
    bool defined;
    double value;
    // Bootstrap interval, set when ci_resamples > 0: the number of resamples
    // in which the statistic was defined (and so could be used).
    double ci_low, ci_high;
    size_t ci_resamples;
} metrics_estimate;

typedef struct {
    size_t classes;
    metrics_auc_result *counts;  // per class (positives, negatives; auc as in `auc`)
    metrics_estimate *auc;       // per class
    metrics_estimate mean_auc;   // over the classes whose AUC is defined
    size_t mean_classes;         // how many those are
    metrics_estimate top1, top3; // multi-class only (undefined for multi-label)
} metrics_report;

// Point estimates: AUC per class, their mean, top-1 and top-3 accuracy.
void metrics_evaluate(const metrics_data *d, metrics_report *rep);
void metrics_report_free(metrics_report *rep);

typedef struct {
    size_t resamples;   // number of bootstrap resamples (< 2^32)
    uint64_t seed;
    double level;       // e.g. 0.95
    int threads;        // OpenMP threads (the numbers do not depend on it)
    // Called now and then from one thread with the resamples done so far
    // (may be NULL).
    void (*progress)(size_t done, size_t total, void *ctx);
    void *ctx;
} metrics_bootstrap_opts;

// Percentile bootstrap intervals for every estimate of a report made by
// metrics_evaluate.  Resample b draws d->nclusters cases with replacement from
// the Philox stream (seed, b, 0, 0); a row counts as often as its case was
// drawn.  A resample in which a class has no positives or no negatives is
// skipped for that class; the mean AUC of a resample is used only when every
// class defined in the full data is defined in it (so that it averages the
// same classes as the point estimate).
void metrics_bootstrap(const metrics_data *d, const metrics_bootstrap_opts *o,
                       metrics_report *rep);

// The p-quantile (0 <= p <= 1) of n >= 1 sorted values, interpolating
// linearly between order statistics (numpy's default, Hyndman-Fan type 7).
double metrics_quantile(const double *sorted, size_t n, double p);

// ---- averaging the rows of a case ----------------------------------------------

// Replaces the rows of every cluster by one row holding their mean scores
// (summed in row order, then divided), with the cluster's first row's labels;
// rows come out in cluster order, and cluster[i] = i.  The caller has checked
// that the rows of a cluster agree on their labels.
void metrics_mean_per_cluster(metrics_data *d);

// ---- drawing -------------------------------------------------------------------

// An SVG document (malloc'd, NUL-terminated) with the ROC curve of every class
// whose AUC is defined and a legend "name (AUC 0.xxx)"; names[k] names class k.
char *metrics_roc_svg(const metrics_data *d, const metrics_report *rep,
                      const char *const *names);

#endif
