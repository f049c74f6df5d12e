// metrics_auc: times metrics_auc on scores already in memory (what sklearn's
// roc_auc_score is timed on in bench/auc.sh), best of 3.
//
//   metrics_auc FILE N     FILE: N float32 scores, then N bytes of 0/1 labels
// prints "SECONDS AUC".
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "util.h"

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc != 3)
        die_usage("metrics_auc FILE N");
    size_t n = (size_t)atoll(argv[2]);
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        die(argv[1], "cannot open");
    float *raw = xmalloc(n * sizeof *raw);
    uint8_t *positive = xmalloc(n);
    if (fread(raw, sizeof *raw, n, f) != n || fread(positive, 1, n, f) != n)
        die(argv[1], "shorter than %zu scores and labels", n);
    fclose(f);
    // sklearn is handed float64 arrays too.
    double *score = xmalloc(n * sizeof *score);
    for (size_t i = 0; i < n; i++)
        score[i] = raw[i];
    double best = 1e30;
    metrics_auc_result a = {0};
    for (int round = 0; round < 3; round++) {
        double t0 = now_seconds();
        a = metrics_auc(score, positive, n);
        double t = now_seconds() - t0;
        best = t < best ? t : best;
    }
    printf("%.6f %.17g\n", best, a.auc);
    free(raw);
    free(positive);
    free(score);
    return 0;
}
