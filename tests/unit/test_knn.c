// Tests of lib/training/knn: hand cases (the temperature-weighted vote against a
// plain majority, ties of similarity broken by bank index, ties of score by
// class index, a bank smaller than k), normalisation, and against a brute
// force reference (double similarities, a full sort, votes summed anew) on
// random features: exactly on features whose similarities are exact in
// float (many ties), and where the reference's margins allow on Gaussian
// ones, with a bank large enough for two blocks of queries; the same bytes
// on 1 and 2 threads.
#include "knn.h"

#include <math.h>
#include <string.h>

#include "../check.h"
#include "blas.h"
#include "rng.h"
#include "util.h"

TEST(normalize_rows)
{
    float x[3 * 2] = {3, 4, 0, 0, -2, 0};
    knn_normalize(x, 3, 2);
    EXPECT_CLOSE(x[0], 0.6, 1e-7, 0);
    EXPECT_CLOSE(x[1], 0.8, 1e-7, 0);
    EXPECT(x[2] == 0 && x[3] == 0);  // a zero row stays zero
    EXPECT(x[4] == -1 && x[5] == 0);
}

// Bank: e1 (class 0), e2 (class 1), (e1 + e2)/sqrt 2 (class 1); query e1,
// T = 0.5.  Similarities 1, 0, 0.7071.
TEST(hand_case_weighted_vote)
{
    float bank[3 * 2] = {5, 0, 0, 2, 1, 1}, query[2] = {7, 0};
    int label[3] = {0, 1, 1}, pred = -1;
    double score[2];
    knn_normalize(bank, 3, 2);
    knn_normalize(query, 1, 2);
    knn_config c = {.k = 2, .temperature = 0.5, .classes = 2};
    // k = 2: rows 0 and 2 vote, e^2 for class 0 and e^(2 * 0.7071) for 1.
    knn_classify(&c, bank, label, 3, query, 1, 2, &pred, score);
    EXPECT(pred == 0);
    EXPECT_CLOSE(score[0], exp(2.0), 0, 1e-6);
    EXPECT_CLOSE(score[1], exp(2 * M_SQRT1_2), 0, 1e-6);
    // k = 3: two votes for class 1 against one for class 0, but the
    // weights still choose class 0: 7.39 against 4.11 + e^0.
    c.k = 3;
    knn_classify(&c, bank, label, 3, query, 1, 2, &pred, score);
    EXPECT(pred == 0);
    EXPECT_CLOSE(score[1], exp(2 * M_SQRT1_2) + 1, 0, 1e-6);
    // A bank smaller than k votes with all its rows: the same scores.
    c.k = 20;
    knn_classify(&c, bank, label, 3, query, 1, 2, &pred, score);
    EXPECT_CLOSE(score[0], exp(2.0), 0, 1e-6);
    EXPECT_CLOSE(score[1], exp(2 * M_SQRT1_2) + 1, 0, 1e-6);
    // A high temperature flattens the weights into a majority vote.
    c.k = 3;
    c.temperature = 100;
    knn_classify(&c, bank, label, 3, query, 1, 2, &pred, score);
    EXPECT(pred == 1);
}

TEST(ties_go_to_the_lower_index)
{
    // Four copies of one vector: the 2 nearest are rows 0 and 1 (class 2),
    // never rows 2 and 3 (class 0).
    float bank[4 * 2] = {1, 1, 1, 1, 1, 1, 1, 1}, query[2] = {1, 1};
    int label[4] = {2, 2, 0, 0}, pred = -1;
    double score[3];
    knn_normalize(bank, 4, 2);
    knn_normalize(query, 1, 2);
    knn_config c = {.k = 2, .temperature = 0.07, .classes = 3};
    knn_classify(&c, bank, label, 4, query, 1, 2, &pred, score);
    EXPECT(pred == 2);
    EXPECT(score[0] == 0 && score[1] == 0);
    EXPECT_CLOSE(score[2], 2 * exp(1 / 0.07), 0, 1e-6);
    // Rows 1 and 2 tie as nearest (classes 2 and 0) and row 0 is farther:
    // equal scores go to the lower class.
    float bank2[3 * 2] = {1, 0, 0, 1, 0, 1};
    int label2[3] = {1, 2, 0};
    float q2[2] = {0, 1};
    c.k = 2;
    knn_classify(&c, bank2, label2, 3, q2, 1, 2, &pred, score);
    EXPECT(pred == 0);
    EXPECT(score[0] == score[2] && score[0] > 0 && score[1] == 0);
}

// ---- the brute-force reference ----------------------------------------------

typedef struct {
    double sim;
    int idx;
} ranked;

static int by_sim_then_index(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->sim != y->sim)
        return x->sim < y->sim ? 1 : -1;
    return x->idx - y->idx;
}

// For each query: the prediction, the class scores, and two margins, the
// gap between the k-th and (k+1)-th similarity and the relative gap between
// the two best scores (where a float computation could disagree).
static void reference(const float *bank, const int *label, int nb, const float *query, int nq, int dim, int k,
                      double T, int K, int *pred, double *score, double *sim_gap, double *score_gap)
{
    double *nbank = xmalloc((size_t)nb * dim * sizeof(double)), *nquery = xmalloc((size_t)dim * sizeof(double));
    for (int j = 0; j < nb; j++) {
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)bank[j * dim + d] * bank[j * dim + d];
        for (int d = 0; d < dim; d++)
            nbank[j * dim + d] = bank[j * dim + d] / sqrt(ss);
    }
    ranked *r = xmalloc((size_t)nb * sizeof *r);
    for (int i = 0; i < nq; i++) {
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)query[i * dim + d] * query[i * dim + d];
        for (int d = 0; d < dim; d++)
            nquery[d] = query[i * dim + d] / sqrt(ss);
        for (int j = 0; j < nb; j++) {
            double s = 0;
            for (int d = 0; d < dim; d++)
                s += nquery[d] * nbank[j * dim + d];
            r[j] = (ranked){s, j};
        }
        qsort(r, (size_t)nb, sizeof *r, by_sim_then_index);
        double *s = score + (size_t)i * K;
        for (int c = 0; c < K; c++)
            s[c] = 0;
        for (int n = 0; n < k; n++)
            s[label[r[n].idx]] += exp(r[n].sim / T);
        int best = 0, second = -1;
        for (int c = 1; c < K; c++)
            if (s[c] > s[best])
                best = c;
        for (int c = 0; c < K; c++)
            if (c != best && (second < 0 || s[c] > s[second]))
                second = c;
        pred[i] = best;
        sim_gap[i] = k < nb ? r[k - 1].sim - r[k].sim : INFINITY;
        score_gap[i] = (s[best] - s[second]) / s[best];
    }
    free(r);
    free(nbank);
    free(nquery);
}

// Features of K classes: a class mean plus noise, or their signs (+-1 in
// dim 16, whose normalised dot products are exact in float).
static void make_features(float *x, int *label, int n, int dim, int K, bool signs, rng_t *r, const float *means)
{
    for (int i = 0; i < n; i++) {
        label[i] = (int)(rng_uniform(r) * K) % K;
        for (int d = 0; d < dim; d++) {
            float v = means[label[i] * dim + d] + (float)rng_normal(r);
            x[i * dim + d] = signs ? (v < 0 ? -1.0f : 1.0f) : v;
        }
    }
}

static void compare_with_reference(bool signs, int nb, int nq, int dim, int K, int k, double T)
{
    rng_t r = rng_make(11, signs, 0, 0);
    float *means = xmalloc((size_t)K * dim * sizeof(float));
    for (int i = 0; i < K * dim; i++)
        means[i] = (float)rng_normal(&r);
    float *bank = xmalloc((size_t)nb * dim * sizeof(float)), *query = xmalloc((size_t)nq * dim * sizeof(float));
    int *bl = xmalloc((size_t)nb * sizeof(int)), *ql = xmalloc((size_t)nq * sizeof(int));
    make_features(bank, bl, nb, dim, K, signs, &r, means);
    make_features(query, ql, nq, dim, K, signs, &r, means);
    int *ref_pred = xmalloc((size_t)nq * sizeof(int)), *pred = xmalloc((size_t)nq * sizeof(int));
    double *ref_score = xmalloc((size_t)nq * K * sizeof(double)), *score = xmalloc((size_t)nq * K * sizeof(double));
    double *sim_gap = xmalloc((size_t)nq * sizeof(double)), *score_gap = xmalloc((size_t)nq * sizeof(double));
    reference(bank, bl, nb, query, nq, dim, k, T, K, ref_pred, ref_score, sim_gap, score_gap);

    knn_normalize(bank, (size_t)nb, dim);
    knn_normalize(query, (size_t)nq, dim);
    knn_config c = {.k = k, .temperature = T, .classes = K};
    knn_classify(&c, bank, bl, (size_t)nb, query, (size_t)nq, dim, pred, score);
    int compared = 0, agree = 0, correct = 0, ties = 0;
    for (int i = 0; i < nq; i++) {
        correct += ref_pred[i] == ql[i];
        ties += sim_gap[i] == 0;
        if (!signs && (sim_gap[i] < 1e-5 || score_gap[i] < 1e-4))
            continue;  // float and double may rank these differently
        compared++;
        agree += pred[i] == ref_pred[i];
        for (int j = 0; j < K; j++) {
            if (signs)
                EXPECT_MSG(score[i * K + j] == ref_score[i * K + j], "query %d class %d: %.17g, reference %.17g", i,
                           j, score[i * K + j], ref_score[i * K + j]);
            else
                EXPECT_CLOSE(score[i * K + j], ref_score[i * K + j], 1e-12, 1e-4);
        }
    }
    EXPECT_MSG(agree == compared, "%d of %d predictions agree with the reference", agree, compared);
    EXPECT_MSG(compared >= nq * 95 / 100, "only %d of %d queries clear of float's margins", compared, nq);
    // The data must be worth the test: well above chance, and for the signs,
    // with ties at the k-th neighbour.
    EXPECT_MSG(correct > nq / 2, "reference accuracy %d / %d", correct, nq);
    if (signs)
        EXPECT_MSG(ties > nq / 4, "only %d queries with a tie at the k-th neighbour", ties);

    // The same bytes on 1 and 2 threads.
    int threads = blas_threads();
    int *pred1 = xmalloc((size_t)nq * sizeof(int));
    double *score1 = xmalloc((size_t)nq * K * sizeof(double));
    blas_set_threads(threads == 1 ? 2 : 1);
    knn_classify(&c, bank, bl, (size_t)nb, query, (size_t)nq, dim, pred1, score1);
    blas_set_threads(threads);
    EXPECT(memcmp(pred, pred1, (size_t)nq * sizeof(int)) == 0);
    EXPECT(memcmp(score, score1, (size_t)nq * K * sizeof(double)) == 0);
    free(pred1), free(score1), free(means), free(bank), free(query), free(bl), free(ql);
    free(ref_pred), free(pred), free(ref_score), free(score), free(sim_gap), free(score_gap);
}

TEST(exact_features_match_the_reference_with_ties)
{
    compare_with_reference(true, 500, 120, 16, 3, 20, 0.07);
}

// 30000 bank rows: queries go through knn_classify's similarity matrix in
// two blocks (at most 2^22 entries each).
TEST(gaussian_features_match_the_reference)
{
    compare_with_reference(false, 30000, 160, 12, 5, KNN_DEFAULT_K, KNN_DEFAULT_T);
}

int main(void)
{
    blas_init(2);
    RUN(normalize_rows);
    RUN(hand_case_weighted_vote);
    RUN(ties_go_to_the_lower_index);
    RUN(exact_features_match_the_reference_with_ties);
    RUN(gaussian_features_match_the_reference);
    return CHECK_DONE();
}
