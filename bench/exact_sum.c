// exact_sum: what the exact sums of data-parallel training cost against a
// plain float all-reduce, per gradient of N floats (default 11,689,512: a
// ResNet-18's parameters), on every rank of an mpirun job:
//
//   mpirun -np K exact_sum [N [PARTS]]
//
// Times, median of 5 after one warm-up, on rank 0:
//   float   MPI_Allreduce of N floats (MPI_SUM: the order is MPI's)
//   exact   dist_sum_f32_add of PARTS partials of N floats (an MPI_MAX of
//           one exponent, the conversion, MPI_SUM of N int64, the way back)
// and the part of "exact" spent converting.  Prints one line per method.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if MEDSSL_MPI
#include <mpi.h>
#endif

#include "dist.h"
#include "rng.h"
#include "util.h"

enum { ROUNDS = 5 };

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t)
{
    qsort(t, ROUNDS, sizeof *t, by_value);
    return t[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    dist_init(&argc, &argv);
    if (!dist_active())
        die_usage("run it under mpirun (a build with Open MPI): mpirun -np K exact_sum [N [PARTS]]");
    size_t n = argc > 1 ? (size_t)atoll(argv[1]) : 11689512;
    int parts = argc > 2 ? atoi(argv[2]) : 1;
    if (n < 1 || parts < 1)
        die_usage("exact_sum [N [PARTS]]: N and PARTS must be positive");
    float *g = xaligned_alloc(mul_size(n, (size_t)parts, "exact_sum") * sizeof(float));
    float *out = xaligned_alloc(n * sizeof(float));
    rng_t r = rng_make(1, (uint64_t)dist_rank(), 0, 0);
    for (size_t i = 0; i < n * parts; i++)
        g[i] = 1e-3f * rng_normal(&r);
    double t_float[ROUNDS], t_exact[ROUNDS], t_convert[ROUNDS];
    for (int round = -1; round < ROUNDS; round++) {
#if MEDSSL_MPI
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_seconds();
        memcpy(out, g, n * sizeof(float));
        MPI_Allreduce(MPI_IN_PLACE, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double t1 = now_seconds();
        MPI_Barrier(MPI_COMM_WORLD);
#else
        double t0 = 0, t1 = 0;
#endif
        double mpi0, conv0, mpi1, conv1;
        dist_times(&mpi0, &conv0);
        double t2 = now_seconds();
        memset(out, 0, n * sizeof(float));
        dist_sum_f32_add(g, parts, n, out);
        double t3 = now_seconds();
        dist_times(&mpi1, &conv1);
        if (round >= 0) {
            t_float[round] = t1 - t0;
            t_exact[round] = t3 - t2;
            t_convert[round] = conv1 - conv0;
        }
    }
    if (dist_rank() == 0) {
        double f = median(t_float), e = median(t_exact), c = median(t_convert);
        printf("float   %d ranks, %zu floats: %.4f s\n", dist_size(), n, f);
        printf("exact   %d ranks, %d partials of %zu floats: %.4f s (%.4f s converting), %.2fx the float all-reduce\n",
               dist_size(), parts, n, e, c, e / f);
    }
    free(g);
    free(out);
    dist_finalize();
    return 0;
}
