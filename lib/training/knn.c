#include "knn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "util.h"

void knn_normalize(float *x, size_t n, int dim)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * (size_t)dim;
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)row[j] * row[j];
        if (ss == 0)
            continue;
        float inv = (float)(1.0 / sqrt(ss));
        for (int j = 0; j < dim; j++)
            row[j] *= inv;
    }
}

// The k nearest of one query from its row of similarities sim (nb): kept
// sorted by similarity descending, then index ascending.  Rows come in
// index order, so a row that only ties the k-th nearest never displaces it.
static void nearest(const float *sim, size_t nb, int k, float *top_sim, int *top_idx)
{
    int count = 0;
    for (size_t j = 0; j < nb; j++) {
        float s = sim[j];
        if (count == k && !(s > top_sim[k - 1]))
            continue;
        int pos = count < k ? count++ : k - 1;
        while (pos > 0 && s > top_sim[pos - 1]) {
            top_sim[pos] = top_sim[pos - 1];
            top_idx[pos] = top_idx[pos - 1];
            pos--;
        }
        top_sim[pos] = s;
        top_idx[pos] = (int)j;
    }
}

void knn_classify(const knn_config *c, const float *bank, const int *bank_label, size_t nb,
                  const float *query, size_t nq, int dim, int *pred, double *score)
{
    if (nb < 1 || c->k < 1 || c->classes < 1 || !(c->temperature > 0))
        die("knn", "bad arguments (bank %zu rows, k %d, %d classes, T %g)", nb, c->k, c->classes,
            c->temperature);
    if (nq == 0)
        return;
    const int k = (size_t)c->k < nb ? c->k : (int)nb, K = c->classes;
    // Similarities for a block of queries at a time: (bq, nb), at most 16 MiB
    // (or one row).
    size_t bq = ((size_t)1 << 22) / nb;
    bq = bq < 1 ? 1 : bq > nq ? nq : bq;
    float *sim = xaligned_alloc(bq * nb * sizeof(float));
    for (size_t q0 = 0; q0 < nq; q0 += bq) {
        size_t m = nq - q0 < bq ? nq - q0 : bq;
        gemm_f32(false, true, (int)m, (int)nb, dim, 1.0f, query + q0 * dim, dim, bank, dim, 0.0f, sim, (int)nb);
#pragma omp parallel
        {
            float *top_sim = xmalloc((size_t)k * sizeof(float));
            int *top_idx = xmalloc((size_t)k * sizeof(int));
            double *own = score ? NULL : xmalloc((size_t)K * sizeof(double));
#pragma omp for schedule(static)
            for (size_t i = 0; i < m; i++) {
                nearest(sim + i * nb, nb, k, top_sim, top_idx);
                double *s = score ? score + (q0 + i) * K : own;
                memset(s, 0, (size_t)K * sizeof(double));
                for (int r = 0; r < k; r++)
                    s[bank_label[top_idx[r]]] += exp((double)top_sim[r] / c->temperature);
                int best = 0;
                for (int j = 1; j < K; j++)
                    best = s[j] > s[best] ? j : best;
                pred[q0 + i] = best;
            }
            free(top_sim);
            free(top_idx);
            free(own);
        }
    }
    free(sim);
}
