#include "dist.h"

// llrint then compiles to one instruction (cvtsd2si: the current rounding
// mode, to nearest even by default) instead of a libm call that may set
// errno: the conversions are most of an exact sum's time.
#pragma GCC optimize("no-math-errno")

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// mk/flags.mk defines it: 1 when Open MPI was found.
#ifndef MEDSSL_MPI
#define MEDSSL_MPI 0
#endif
#if MEDSSL_MPI
#include <mpi.h>
#endif

#include "util.h"

static int rank_, size_ = 1;
static bool active;
static char description[200];
static double mpi_seconds, convert_seconds, gather_seconds, f64_seconds, f32_seconds;
static long long mpi_calls, mpi_bytes;

// mpirun (Open MPI's, or a PMIx or PMI launcher) marks the processes it starts.
static bool launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

#if MEDSSL_MPI
static void check(int rc, const char *what)
{
    if (rc != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, msg, &len);
        die("mpi", "rank %d: %s: %s", rank_, what, msg);
    }
}
#endif

void dist_init(int *argc, char ***argv)
{
    snprintf(description, sizeof description, "1 process%s", MEDSSL_MPI ? "" : " (built without MPI)");
    if (!launched_by_mpirun())
        return;
#if MEDSSL_MPI
    // Only the main thread calls MPI; the OpenMP threads compute between calls.
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die("mpi", "MPI_Init failed");
    if (provided < MPI_THREAD_FUNNELED)
        die("mpi", "this MPI cannot run beside OpenMP threads (MPI_THREAD_FUNNELED)");
    // A failed call reports here, with the rank, and exits: mpirun then
    // stops the other ranks.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    active = true;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, ",\n")] = 0;
    snprintf(description, sizeof description, "MPI (%.120s), rank %d of %d", lib, rank_, size_);
#else
    (void)argc, (void)argv;
    die("mpi", "launched by mpirun, but this build has no MPI: install libopenmpi-dev and rebuild (make clean all)");
#endif
}

void dist_finalize(void)
{
#if MEDSSL_MPI
    if (active)
        MPI_Finalize();
#endif
    active = false;
}

bool dist_active(void) { return active; }
int dist_rank(void) { return rank_; }
int dist_size(void) { return size_; }
const char *dist_description(void) { return description; }

void dist_allgather(const void *mine, size_t bytes, void *all)
{
#if MEDSSL_MPI
    if (active) {
        if (bytes > INT_MAX)
            die("mpi", "all-gather of %zu bytes: above MPI's int count", bytes);
        double t0 = now_seconds();
        check(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD), "all-gather");
        mpi_calls++, mpi_bytes += (long long)bytes;
        mpi_seconds += now_seconds() - t0;
        gather_seconds += now_seconds() - t0;
        return;
    }
#endif
    if (all != mine)
        memcpy(all, mine, bytes);
}

void dist_max_int(int *v, int n)
{
#if MEDSSL_MPI
    if (active) {
        double t0 = now_seconds();
        check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "all-reduce (max)");
        mpi_calls++, mpi_bytes += (long long)n * (long long)sizeof(int);
        mpi_seconds += now_seconds() - t0;
    }
#else
    (void)v, (void)n;
#endif
}

void dist_sum_i64(int64_t *v, size_t n)
{
#if MEDSSL_MPI
    // In pieces of at most 2^30 values (MPI counts are ints).
    double t0 = now_seconds();
    for (size_t lo = 0; active && lo < n; lo += (size_t)1 << 30) {
        size_t k = n - lo < ((size_t)1 << 30) ? n - lo : (size_t)1 << 30;
        check(MPI_Allreduce(MPI_IN_PLACE, v + lo, (int)k, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), "all-reduce (sum)");
        mpi_calls++, mpi_bytes += (long long)(k * sizeof(int64_t));
    }
    if (active)
        mpi_seconds += now_seconds() - t0;
#else
    (void)v, (void)n;
#endif
}

// ---- exact sums --------------------------------------------------------------------

// A group's exponent e: |v| < 2^e for all its values, from the largest
// |v|.  All zero gives EXP_ZERO, below any real exponent; NaN or infinity
// EXP_NONFINITE, above.
enum { EXP_ZERO = INT_MIN / 2, EXP_NONFINITE = INT_MAX / 2 };

static int exponent_of(double max_abs, bool nonfinite)
{
    if (nonfinite)
        return EXP_NONFINITE;
    if (max_abs == 0)
        return EXP_ZERO;
    int e;
    frexp(max_abs, &e);   // max_abs = m 2^e with 0.5 <= m < 1
    return e;
}

// v 2^s: one multiplication when 2^s is a normal double (exact, or rounded
// once where the product is subnormal, as ldexp would).
static inline double times_pow2(double v, double scale, int s)
{
    return scale != 0 ? v * scale : ldexp(v, s);
}

static double pow2_or_zero(int s) { return s >= -1022 && s <= 1023 ? ldexp(1.0, s) : 0; }

// Scratch reused from call to call: exponents, their powers of two and
// integer sums.
static int *exps;
static double *scales;
static int64_t *acc;
static size_t exps_cap, acc_cap;

static void reserve(size_t ngroups, size_t n)
{
    if (ngroups > exps_cap) {
        free(exps);
        free(scales);
        exps = xmalloc(ngroups * sizeof *exps);
        scales = xmalloc(ngroups * sizeof *scales);
        exps_cap = ngroups;
    }
    if (n > acc_cap) {
        free(acc);
        acc = xmalloc(n * sizeof *acc);
        acc_cap = n;
    }
}

// Bits of headroom for a sum of `count` integers: ceil(log2(count)).
static int headroom(long long count)
{
    int b = 0;
    while ((1LL << b) < count)
        b++;
    return b;
}

// A value v of a group with exponent e becomes llrint(v 2^s), s = 62 - hb
// - e with hb the headroom for every rank's partials: |v 2^s| < 2^(62 -
// hb), so they all sum below 2^62, and every step (the scaling, rounding to
// nearest even, integer addition, the conversion back) is the same on every
// rank.
void dist_sum_f64(const double *parts, int nparts, size_t n, size_t group, double *out)
{
    if (group == 0 || n % group)
        die("dist", "a sum of %zu values in groups of %zu", n, group);
    if (n == 0)
        return;
    const double t0 = now_seconds(), mpi0 = mpi_seconds;
    const size_t ngroups = n / group;
    if (ngroups > INT_MAX)
        die("dist", "%zu groups: above MPI's int count", ngroups);
    reserve(ngroups, n);
    if (ngroups == 1) {
        double mx = 0;
        int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(| : bad)
        for (size_t i = 0; i < n; i++)
            for (int p = 0; p < nparts; p++) {
                double v = parts[(size_t)p * n + i], a = fabs(v);
                bad |= !isfinite(v);
                mx = a > mx ? a : mx;
            }
        exps[0] = exponent_of(mx, bad);
    } else {
#pragma omp parallel for schedule(static)
        for (size_t g = 0; g < ngroups; g++) {
            double mx = 0;
            bool bad = false;
            for (int p = 0; p < nparts; p++)
                for (size_t i = g * group; i < (g + 1) * group; i++) {
                    double v = parts[(size_t)p * n + i], a = fabs(v);
                    bad |= !isfinite(v);
                    mx = a > mx ? a : mx;
                }
            exps[g] = exponent_of(mx, bad);
        }
    }
    dist_max_int(exps, (int)ngroups);
    const int hb = headroom((long long)nparts * size_);
    for (size_t g = 0; g < ngroups; g++)
        scales[g] = pow2_or_zero(62 - hb - exps[g]);
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t g = 0; g < ngroups; g++)
        for (size_t j = 0; j < group; j++) {
            const size_t i = g * group + j;
            const int e = exps[g], s = 62 - hb - e;
            int64_t q = 0;
            for (int p = 0; e != EXP_ZERO && e != EXP_NONFINITE && p < nparts; p++)
                q += llrint(times_pow2(parts[(size_t)p * n + i], scales[g], s));
            acc[i] = q;
        }
    dist_sum_i64(acc, n);
    for (size_t g = 0; g < ngroups; g++)
        scales[g] = pow2_or_zero(exps[g] + hb - 62);
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t g = 0; g < ngroups; g++)
        for (size_t j = 0; j < group; j++) {
            const size_t i = g * group + j;
            const int e = exps[g];
            double v = e == EXP_NONFINITE ? NAN : e == EXP_ZERO ? 0 : times_pow2((double)acc[i], scales[g], e + hb - 62);
            out[i] = v;
        }
    convert_seconds += now_seconds() - t0 - (mpi_seconds - mpi0);
    f64_seconds += mpi_seconds - mpi0;
}

void dist_times(double *mpi, double *convert)
{
    *mpi = mpi_seconds;
    *convert = convert_seconds;
}

dist_mpi_split dist_mpi_times(void)
{
    return (dist_mpi_split){.gather = gather_seconds, .sum_f64 = f64_seconds, .sum_f32 = f32_seconds,
                            .other = mpi_seconds - gather_seconds - f64_seconds - f32_seconds,
                            .calls = mpi_calls, .bytes = mpi_bytes};
}

// The same for one float tensor, in straight loops (a model's weight
// gradients: most of the values summed).  A float's exponent is in [-148,
// 128], so 2^s and 2^-s are normal doubles and the scaling one exact
// multiplication.
void dist_sum_f32_add(const float *parts, int nparts, size_t n, float *out)
{
    if (n == 0)
        return;
    const double t0 = now_seconds(), mpi0 = mpi_seconds;
    const size_t total = mul_size(n, (size_t)nparts, "dist");
    float mx = 0;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(| : bad)
    for (size_t k = 0; k < total; k++) {
        float a = fabsf(parts[k]);
        bad |= !(a <= FLT_MAX);
        mx = a > mx ? a : mx;
    }
    int e = exponent_of(mx, bad);
    dist_max_int(&e, 1);
    if (e == EXP_ZERO || e == EXP_NONFINITE) {
        for (size_t i = 0; i < n; i++)
            out[i] += e == EXP_ZERO ? 0 : NAN;
        convert_seconds += now_seconds() - t0 - (mpi_seconds - mpi0);
        f32_seconds += mpi_seconds - mpi0;
        return;
    }
    reserve(1, n);
    const int hb = headroom((long long)nparts * size_), s = 62 - hb - e;
    const double scale = ldexp(1.0, s), unscale = ldexp(1.0, -s);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        int64_t q = 0;
        for (int p = 0; p < nparts; p++)
            q += llrint((double)parts[(size_t)p * n + i] * scale);
        acc[i] = q;
    }
    dist_sum_i64(acc, n);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] += (float)((double)acc[i] * unscale);
    convert_seconds += now_seconds() - t0 - (mpi_seconds - mpi0);
    f32_seconds += mpi_seconds - mpi0;
}

uint64_t dist_hash(uint64_t h, const void *bytes, size_t len)
{
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
