// Tests of lib/training/metrics: AUC on hand cases (ties, perfect, reversed, the two
// zeros), against the O(n^2) pair count on random data, weights as repeated
// rows, ROC points and area, top-k credit with ties, quantiles, the bootstrap
// (independent of the thread count) and the per-case mean.
#include "metrics.h"

#include <string.h>

#include "../check.h"
#include "rng.h"
#include "util.h"

static double auc_of(const double *score, const uint8_t *positive, size_t n)
{
    metrics_auc_result a = metrics_auc(score, positive, n);
    return metrics_auc_defined(&a) ? a.auc : -1;
}

TEST(auc_hand_cases)
{
    const uint8_t y4[4] = {0, 0, 1, 1};
    const double ties[4] = {0.3, 0.3, 0.3, 0.3};
    const double perfect[4] = {0.1, 0.2, 0.8, 0.9};
    const double reversed[4] = {0.9, 0.8, 0.2, 0.1};
    const double sklearn_example[4] = {0.1, 0.4, 0.35, 0.8};  // roc_auc_score's docstring: 0.75
    EXPECT(auc_of(ties, y4, 4) == 0.5);
    EXPECT(auc_of(perfect, y4, 4) == 1.0);
    EXPECT(auc_of(reversed, y4, 4) == 0.0);
    EXPECT(auc_of(sklearn_example, y4, 4) == 0.75);
    // One positive ties a negative (1/2), one beats it (1): 1.5 / 2.
    const uint8_t y3[3] = {0, 1, 1};
    const double partial[3] = {0.5, 0.5, 0.7};
    EXPECT(auc_of(partial, y3, 3) == 0.75);
    // -0.0 and +0.0 are one score (a tie, 1/2); tiny negatives sort below them.
    const uint8_t y2[4] = {0, 1, 0, 1};
    const double zeros[4] = {-0.0, 0.0, -3.5, -1e-300};
    EXPECT(auc_of(zeros, y2, 4) == 0.625);  // 0.75 if the zeros did not tie
}

TEST(auc_undefined_without_positives_or_negatives)
{
    const double s[3] = {0.1, 0.5, 0.9};
    const uint8_t none[3] = {0, 0, 0}, all[3] = {1, 1, 1};
    metrics_auc_result a = metrics_auc(s, none, 3), b = metrics_auc(s, all, 3);
    EXPECT(!metrics_auc_defined(&a) && a.positives == 0 && a.negatives == 3);
    EXPECT(!metrics_auc_defined(&b) && b.positives == 3 && b.negatives == 0);
    EXPECT(a.auc == 0 && b.auc == 0); // never NaN
}

// The definition itself: count pairs.
static double auc_by_pairs(const double *score, const uint8_t *positive, size_t n)
{
    double good = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (positive[i] && !positive[j]) {
                pairs++;
                good += score[i] > score[j] ? 1 : score[i] == score[j] ? 0.5 : 0;
            }
    return good / pairs;
}

TEST(auc_equals_pair_count_on_random_data)
{
    rng_t r = rng_make(5, 0, 0, 0);
    enum { N = 3000 };
    static double score[N];
    static uint8_t positive[N];
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N; i++) {
            positive[i] = rng_uniform(&r) < 0.3;
            double v = rng_normal(&r) + positive[i];
            // round 0: full doubles of both signs; 1: floats; 2: a coarse grid (ties)
            score[i] = round == 0 ? v * 1e-3 : round == 1 ? (float)v : (double)(int)(v * 4);
        }
        EXPECT_CLOSE(auc_of(score, positive, N), auc_by_pairs(score, positive, N), 1e-15, 0);
    }
}

TEST(ranking_is_sorted_with_tie_groups)
{
    rng_t r = rng_make(6, 0, 0, 0);
    enum { N = 50000 };
    static double score[2 * N];
    for (size_t i = 0; i < N; i++) {
        score[2 * i] = (double)(int)(rng_normal(&r) * 100) / 7;  // many ties
        score[2 * i + 1] = 0;
    }
    metrics_ranking k;
    metrics_rank(&k, score, 2, N);
    size_t bad = 0, g = 0;
    for (size_t j = 1; j < N; j++) {
        double a = score[2 * k.order[j - 1]], b = score[2 * k.order[j]];
        bad += a > b;
        if (j == k.group_end[g])
            bad += a == b, g++;
        else
            bad += a != b;
    }
    EXPECT(bad == 0);
    EXPECT(k.group_end[k.ngroups - 1] == N && g == k.ngroups - 1);
    metrics_ranking_free(&k);
}

TEST(weights_count_rows_again)
{
    const double s[5] = {0.2, 0.4, 0.4, 0.7, 0.1};
    const uint8_t y[5] = {0, 1, 0, 1, 1};
    const uint32_t w[5] = {2, 0, 1, 3, 1};
    // The same data with every row written out weight times.
    const double rs[7] = {0.2, 0.2, 0.4, 0.7, 0.7, 0.7, 0.1};
    const uint8_t ry[7] = {0, 0, 0, 1, 1, 1, 1};
    metrics_ranking k;
    metrics_rank(&k, s, 1, 5);
    metrics_auc_result a = metrics_auc_ranked(&k, y, 1, w);
    metrics_ranking_free(&k);
    EXPECT(a.positives == 4 && a.negatives == 3);
    EXPECT(a.auc == auc_of(rs, ry, 7));
}

TEST(roc_points_and_area)
{
    const double s[4] = {0.1, 0.4, 0.35, 0.8};
    const uint8_t y[4] = {0, 0, 1, 1};
    double fpr[5], tpr[5];
    metrics_ranking k;
    metrics_rank(&k, s, 1, 4);
    size_t n = metrics_roc(&k, y, 1, fpr, tpr);
    metrics_ranking_free(&k);
    // sklearn's roc_curve(drop_intermediate=False) on the same data.
    const double want_fpr[5] = {0, 0, 0.5, 0.5, 1}, want_tpr[5] = {0, 0.5, 0.5, 1, 1};
    EXPECT(n == 5);
    for (size_t i = 0; i < n; i++)
        EXPECT(fpr[i] == want_fpr[i] && tpr[i] == want_tpr[i]);

    // With ties the curve runs diagonally across a tie group; its trapezoid
    // area is the AUC.
    rng_t r = rng_make(7, 0, 0, 0);
    enum { N = 500 };
    static double score[N], rf[N + 1], rt[N + 1];
    static uint8_t positive[N];
    for (size_t i = 0; i < N; i++) {
        positive[i] = rng_uniform(&r) < 0.4;
        score[i] = (int)(rng_uniform(&r) * 8 + positive[i] * 2);
    }
    metrics_rank(&k, score, 1, N);
    n = metrics_roc(&k, positive, 1, rf, rt);
    double area = 0;
    for (size_t i = 1; i < n; i++)
        area += (rf[i] - rf[i - 1]) * (rt[i] + rt[i - 1]) / 2;
    EXPECT(n == k.ngroups + 1 && rf[n - 1] == 1 && rt[n - 1] == 1);
    EXPECT_CLOSE(area, metrics_auc_ranked(&k, positive, 1, NULL).auc, 1e-12, 0);
    metrics_ranking_free(&k);
}

TEST(topk_credit_shares_ties)
{
    const double s[4] = {0.1, 0.5, 0.5, 0.2};
    EXPECT(metrics_topk_credit(s, 4, 1, 1) == 0.5);  // tied for first with class 2
    EXPECT(metrics_topk_credit(s, 4, 2, 1) == 0.5);
    EXPECT(metrics_topk_credit(s, 4, 1, 2) == 1);
    EXPECT(metrics_topk_credit(s, 4, 3, 3) == 1);    // third
    EXPECT(metrics_topk_credit(s, 4, 3, 2) == 0);
    EXPECT(metrics_topk_credit(s, 4, 0, 3) == 0);    // last of four
    const double three_way[4] = {0.3, 0.3, 0.3, 0.1};
    EXPECT_CLOSE(metrics_topk_credit(three_way, 4, 0, 2), 2.0 / 3, 1e-15, 0);
    EXPECT_CLOSE(metrics_topk_credit(three_way, 4, 2, 1), 1.0 / 3, 1e-15, 0);
}

TEST(quantiles_as_numpy)
{
    const double v[5] = {1, 2, 3, 4, 10};
    EXPECT(metrics_quantile(v, 5, 0) == 1);
    EXPECT(metrics_quantile(v, 5, 1) == 10);
    EXPECT(metrics_quantile(v, 5, 0.5) == 3);
    EXPECT_CLOSE(metrics_quantile(v, 5, 0.025), 1.1, 1e-12, 0);  // np.percentile(v, 2.5)
    EXPECT_CLOSE(metrics_quantile(v, 5, 0.975), 9.4, 1e-12, 0);  // np.percentile(v, 97.5)
    EXPECT(metrics_quantile(v, 1, 0.975) == 1);
}

// A small multi-class set: rows in `cases` clusters of 1 to 3 rows.
static metrics_data make_data(size_t rows, size_t classes, uint64_t seed)
{
    rng_t r = rng_make(seed, 0, 0, 0);
    metrics_data d = {.task = METRICS_MULTICLASS, .rows = rows, .classes = classes};
    d.score = xmalloc(rows * classes * sizeof *d.score);
    d.positive = xcalloc(rows * classes, 1);
    d.label = xmalloc(rows * sizeof *d.label);
    d.cluster = xmalloc(rows * sizeof *d.cluster);
    for (size_t i = 0; i < rows; i++) {
        if (i == 0 || rng_below(&r, 3) == 0) {
            d.label[i] = rng_below(&r, (uint32_t)classes);
            d.cluster[i] = (uint32_t)d.nclusters++;
        } else {
            d.label[i] = d.label[i - 1];
            d.cluster[i] = d.cluster[i - 1];
        }
        d.positive[i * classes + d.label[i]] = 1;
        for (size_t k = 0; k < classes; k++)
            d.score[i * classes + k] = (int)(rng_uniform(&r) * 10) + 3 * (k == d.label[i]);
    }
    return d;
}

static void free_data(metrics_data *d)
{
    free(d->score);
    free(d->positive);
    free(d->label);
    free(d->cluster);
}

TEST(bootstrap_same_numbers_for_any_thread_count)
{
    metrics_data d = make_data(400, 4, 8);
    metrics_report one, two;
    metrics_evaluate(&d, &one);
    metrics_evaluate(&d, &two);
    metrics_bootstrap_opts o = {.resamples = 200, .seed = 3, .level = 0.9, .threads = 1};
    metrics_bootstrap(&d, &o, &one);
    o.threads = 2;
    metrics_bootstrap(&d, &o, &two);
    for (size_t k = 0; k < 4; k++) {
        EXPECT(one.auc[k].ci_resamples == 200);
        EXPECT(one.auc[k].ci_low == two.auc[k].ci_low && one.auc[k].ci_high == two.auc[k].ci_high);
        EXPECT(one.auc[k].ci_low < one.auc[k].value && one.auc[k].value < one.auc[k].ci_high);
    }
    EXPECT(one.mean_auc.ci_low == two.mean_auc.ci_low && one.top3.ci_high == two.top3.ci_high);
    EXPECT(one.top1.ci_low < one.top1.value && one.top1.value < one.top1.ci_high);
    metrics_report_free(&one);
    metrics_report_free(&two);
    free_data(&d);
}

TEST(bootstrap_skips_resamples_without_a_class)
{
    // 30 cases, one of them the only positive of class 2: about
    // (29/30)^30 = 36% of the resamples miss it.
    metrics_data d = make_data(30, 3, 9);
    for (size_t i = 0; i < 30; i++) {
        d.cluster[i] = (uint32_t)i;
        uint32_t label = i == 7 ? 2 : i % 2;
        memset(d.positive + 3 * i, 0, 3);
        d.positive[3 * i + label] = 1;
        d.label[i] = label;
    }
    d.nclusters = 30;
    metrics_report rep;
    metrics_evaluate(&d, &rep);
    metrics_bootstrap_opts o = {.resamples = 1000, .seed = 1, .level = 0.95, .threads = 1};
    metrics_bootstrap(&d, &o, &rep);
    EXPECT(rep.auc[0].ci_resamples == 1000);
    EXPECT_MSG(rep.auc[2].ci_resamples > 550 && rep.auc[2].ci_resamples < 720,
               "%zu usable resamples for the rare class", rep.auc[2].ci_resamples);
    EXPECT(rep.mean_auc.ci_resamples == rep.auc[2].ci_resamples);
    metrics_report_free(&rep);
    free_data(&d);
}

TEST(mean_per_cluster)
{
    metrics_data d = {.task = METRICS_MULTICLASS, .rows = 4, .classes = 2, .nclusters = 2};
    double score[8] = {0.2, 0.8, 0.6, 0.4, 0.4, 0.6, 0.9, 0.1};
    uint8_t positive[8] = {0, 1, 1, 0, 0, 1, 1, 0};
    uint32_t label[4] = {1, 0, 1, 0}, cluster[4] = {1, 0, 1, 0};
    d.score = xmalloc(sizeof score), memcpy(d.score, score, sizeof score);
    d.positive = xmalloc(sizeof positive), memcpy(d.positive, positive, sizeof positive);
    d.label = xmalloc(sizeof label), memcpy(d.label, label, sizeof label);
    d.cluster = xmalloc(sizeof cluster), memcpy(d.cluster, cluster, sizeof cluster);
    metrics_mean_per_cluster(&d);
    EXPECT(d.rows == 2 && d.cluster[0] == 0 && d.cluster[1] == 1);
    EXPECT_CLOSE(d.score[0], 0.75, 1e-15, 0);  // cluster 0: rows 1 and 3
    EXPECT_CLOSE(d.score[2], 0.3, 1e-15, 0);   // cluster 1: rows 0 and 2
    EXPECT(d.label[0] == 0 && d.label[1] == 1 && d.positive[0] == 1 && d.positive[3] == 1);
    free_data(&d);
}

int main(void)
{
    util_init("test_metrics");
    RUN(auc_hand_cases);
    RUN(auc_undefined_without_positives_or_negatives);
    RUN(auc_equals_pair_count_on_random_data);
    RUN(ranking_is_sorted_with_tie_groups);
    RUN(weights_count_rows_again);
    RUN(roc_points_and_area);
    RUN(topk_credit_shares_ties);
    RUN(quantiles_as_numpy);
    RUN(bootstrap_same_numbers_for_any_thread_count);
    RUN(bootstrap_skips_resamples_without_a_class);
    RUN(mean_per_cluster);
    return CHECK_DONE();
}
