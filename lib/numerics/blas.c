#include "blas.h"

// blis.h is not clean under -Wextra (unused parameters and static inline
// helpers); it is a system library's header, so its warnings are not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <blis.h>
#pragma GCC diagnostic pop
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MEDSSL_X86 1
#endif

#include "cpu.h"
#include "util.h"

// One kernel set: its name (as MEDSSL_BLIS_ARCH spells it and as BLIS
// reports it), its arch_t id, the instruction level it needs, and whether
// this CPU has that level.
typedef struct {
    const char *name;
    arch_t id;
    const char *level;
    bool (*cpu_runs)(void);
} arch_entry;

#ifdef MEDSSL_X86
// __builtin_cpu_supports also checks that the OS saves the vector state
// (XGETBV), so a "yes" here means the instructions are usable.
static bool cpu_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
static bool cpu_avx512_knl(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512pf") &&
           __builtin_cpu_supports("avx512er");
}
static bool cpu_avx2_fma(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static bool cpu_avx_fma(void)
{
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
}
static bool cpu_avx_fma4(void)
{
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma4");
}
static bool cpu_avx(void) { return __builtin_cpu_supports("avx"); }
static bool cpu_ssse3(void) { return __builtin_cpu_supports("ssse3"); }
#endif
static bool cpu_any(void) { return true; }

// The kernel sets this BLIS was configured with: blis.h defines
// BLIS_CONFIG_<NAME> for each.  Naming a set that was not built (KNC in
// Debian's build) makes BLIS jump into missing kernels, so only these are
// ever requested.
static const arch_entry arch_table[] = {
#ifdef MEDSSL_X86
#ifdef BLIS_CONFIG_SKX
    {"skx", BLIS_ARCH_SKX, "avx512", cpu_avx512},
#endif
#ifdef BLIS_CONFIG_KNL
    {"knl", BLIS_ARCH_KNL, "avx512 (knl)", cpu_avx512_knl},
#endif
#ifdef BLIS_CONFIG_HASWELL
    {"haswell", BLIS_ARCH_HASWELL, "avx2", cpu_avx2_fma},
#endif
#ifdef BLIS_CONFIG_SANDYBRIDGE
    {"sandybridge", BLIS_ARCH_SANDYBRIDGE, "avx", cpu_avx},
#endif
#ifdef BLIS_CONFIG_PENRYN
    {"penryn", BLIS_ARCH_PENRYN, "ssse3", cpu_ssse3},
#endif
#ifdef BLIS_CONFIG_ZEN3
    {"zen3", BLIS_ARCH_ZEN3, "avx2", cpu_avx2_fma},
#endif
#ifdef BLIS_CONFIG_ZEN2
    {"zen2", BLIS_ARCH_ZEN2, "avx2", cpu_avx2_fma},
#endif
#ifdef BLIS_CONFIG_ZEN
    {"zen", BLIS_ARCH_ZEN, "avx2", cpu_avx2_fma},
#endif
#ifdef BLIS_CONFIG_EXCAVATOR
    {"excavator", BLIS_ARCH_EXCAVATOR, "avx2", cpu_avx2_fma},
#endif
#ifdef BLIS_CONFIG_STEAMROLLER
    {"steamroller", BLIS_ARCH_STEAMROLLER, "avx+fma", cpu_avx_fma},
#endif
#ifdef BLIS_CONFIG_PILEDRIVER
    {"piledriver", BLIS_ARCH_PILEDRIVER, "avx+fma", cpu_avx_fma},
#endif
#ifdef BLIS_CONFIG_BULLDOZER
    {"bulldozer", BLIS_ARCH_BULLDOZER, "avx+fma4", cpu_avx_fma4},
#endif
#endif // MEDSSL_X86
#ifdef BLIS_CONFIG_GENERIC
    {"generic", BLIS_ARCH_GENERIC, "baseline", cpu_any},
#endif
};
enum { arch_table_len = sizeof arch_table / sizeof arch_table[0] };

static const arch_entry *arch_by_id(arch_t id)
{
    for (int i = 0; i < arch_table_len; i++)
        if (arch_table[i].id == id)
            return &arch_table[i];
    return NULL;
}

static const arch_entry *arch_by_name(const char *name)
{
    for (int i = 0; i < arch_table_len; i++)
        if (strcmp(arch_table[i].name, name) == 0)
            return &arch_table[i];
    return NULL;
}

const char *blas_available_archs(void)
{
    static char names[256];
    if (!names[0]) {
        size_t len = 0;
        for (int i = 0; i < arch_table_len; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s",
                                    i ? " " : "", arch_table[i].name);
    }
    return names;
}

// The best kernel set for this CPU, or NULL when there is nothing better to
// do than BLIS's own choice (no x86, or nothing usable built).
static const arch_entry *auto_choice(void)
{
    // Candidates in order of preference; the first that this BLIS has and
    // this CPU runs wins.  AVX-512 gets skx, but on Zen 4 (cpu.h), where
    // zen3's AVX2 kernels are faster.  With AVX2, AMD parts get the zen set
    // of their generation (BLIS's own table would send an unknown family to
    // 'generic'), Intel parts get haswell.
    arch_t order[8];
    int n = 0;
#ifdef MEDSSL_X86
    if (!cpu_avx512_halved())
        order[n++] = BLIS_ARCH_SKX;
    unsigned eax, ebx, ecx, edx;
    if (__builtin_cpu_is("amd") && __get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        unsigned family = ((eax >> 8) & 0xf) + ((eax >> 20) & 0xff);
        unsigned model = ((eax >> 4) & 0xf) | ((eax >> 12) & 0xf0);
        if (family >= 0x19)
            order[n++] = BLIS_ARCH_ZEN3;
        if (family >= 0x19 || (family == 0x17 && model >= 0x30))
            order[n++] = BLIS_ARCH_ZEN2;
        if (family >= 0x17)
            order[n++] = BLIS_ARCH_ZEN;
    }
    order[n++] = BLIS_ARCH_HASWELL;
    order[n++] = BLIS_ARCH_SANDYBRIDGE;
    order[n++] = BLIS_ARCH_GENERIC;
#endif
    for (int i = 0; i < n; i++) {
        const arch_entry *e = arch_by_id(order[i]);
        if (e && e->cpu_runs())
            return e;
    }
    return NULL;
}

static bool initialised;
static int thread_count = 1;
static char choice_reason[96];

// Makes BLIS initialise with kernel set `e`.  BLIS 0.9.0 reads the numeric
// id from BLIS_ARCH_TYPE during its initialisation, but checks it against a
// context table it has not filled in yet and aborts ("Accessed
// uninitialized context in gks") unless error checking is off; the id is
// valid (it is in arch_table), so checking is switched off for that moment.
static void init_blis_with(const arch_entry *e)
{
    char id[16];
    snprintf(id, sizeof id, "%d", (int)e->id);
    const char *old = getenv("BLIS_ARCH_TYPE");
    char *saved = old ? xstrdup(old) : NULL;

    errlev_t level = bli_error_checking_level();
    bli_error_checking_level_set(BLIS_NO_ERROR_CHECKING);
    setenv("BLIS_ARCH_TYPE", id, 1);
    bli_init();
    bli_error_checking_level_set(level);

    // Child processes (a benchmark comparing with BLIS's default) must not
    // inherit our choice.
    if (saved) {
        setenv("BLIS_ARCH_TYPE", saved, 1);
        free(saved);
    } else {
        unsetenv("BLIS_ARCH_TYPE");
    }
    if (bli_arch_query_id() != e->id)
        warnf("blas", "asked BLIS for kernels '%s', it runs '%s'", e->name,
              bli_arch_string(bli_arch_query_id()));
}

void blas_init(int threads)
{
    if (!initialised) {
        const char *want = getenv("MEDSSL_BLIS_ARCH");
        if (!want || !*want)
            want = "auto";
        const arch_entry *e = NULL;
        if (strcmp(want, "default") == 0) {
            snprintf(choice_reason, sizeof choice_reason, "BLIS default");
        } else if (strcmp(want, "auto") == 0) {
            e = auto_choice();
            if (e)
                snprintf(choice_reason, sizeof choice_reason, "auto: %s", e->level);
            else
                snprintf(choice_reason, sizeof choice_reason, "auto: BLIS default");
        } else {
            e = arch_by_name(want);
            if (!e)
                die("blas", "MEDSSL_BLIS_ARCH=%s: no such kernel set in this BLIS; "
                    "available: %s (or auto, default)", want, blas_available_archs());
            if (!e->cpu_runs())
                die("blas", "MEDSSL_BLIS_ARCH=%s: kernels need %s, which this CPU "
                    "lacks; available: %s (or auto, default)", want, e->level,
                    blas_available_archs());
            snprintf(choice_reason, sizeof choice_reason, "MEDSSL_BLIS_ARCH=%s", want);
        }
        if (e)
            init_blis_with(e);
        else
            bli_init();
        initialised = true;
        blas_set_threads(threads > 0 ? threads : default_threads());
    } else if (threads > 0) {
        blas_set_threads(threads);
    }
}

void blas_set_threads(int n)
{
    if (n < 1)
        die("blas", "thread count %d: must be >= 1", n);
    if (!initialised)
        blas_init(n);
    thread_count = n;
    bli_thread_set_num_threads(1);   // gemm_f32 runs the threads
    omp_set_num_threads(n);
}

int blas_threads(void)
{
    blas_init(0);
    return thread_count;
}

const char *blas_arch_name(void)
{
    blas_init(0);
    return bli_arch_string(bli_arch_query_id());
}

const char *blas_description(void)
{
    static char line[192];
    blas_init(0);
    snprintf(line, sizeof line, "BLIS %s, kernels %s (%s), %d thread%s",
             bli_info_get_version_str(), blas_arch_name(), choice_reason,
             thread_count, thread_count == 1 ? "" : "s");
    return line;
}

// One single-threaded BLIS call on a block of C.
static void gemm_block(bool transA, bool transB, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    // BLIS takes op(A)'s dimensions and the strides of A as stored, so a
    // row-major matrix is (row stride ld, column stride 1) either way.  It
    // does not write A or B; its prototype just lacks the const.
    // One thread, and never BLIS's small-matrix ("sup") path: the AVX2 and
    // Zen kernel sets take it when a dimension is under about 200 to 500,
    // and it sums over K in another order, so a block of a split would not
    // get the bytes the whole matrix gets.
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    bli_sgemm_ex(transA ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, transB ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, M,
                 N, K, &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, &rntm);
}

void gemm_f32(bool transA, bool transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc)
{
    if (!initialised)
        blas_init(0);
    // Threads split C into blocks of whole micro-tiles, each computed by
    // single-threaded BLIS, rather than BLIS threading one call: BLIS's
    // threads meet at a spinning barrier inside every GEMM, which ignores
    // OMP_WAIT_POLICY and, when a pipeline's other stages or other jobs want
    // the cores, spins away the time slices its descheduled partner needs.
    // OpenMP's barrier at the end of this region sleeps when asked to.  Every
    // element of C is computed by the same micro-kernel calls over K whatever
    // the split, so the bytes do not depend on the thread count.
    int threads = omp_in_parallel() ? 1 : thread_count;
    bool by_columns = N >= M;
    int extent = by_columns ? N : M;
    const int tile = 96;  // a multiple of every kernel set's MR and NR
    int tiles = (extent + tile - 1) / tile;
    if (threads > tiles)
        threads = tiles;
    if (threads <= 1) {
        gemm_block(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int lo = (int)((long)tiles * t / nt) * tile, hi = (int)((long)tiles * (t + 1) / nt) * tile;
        if (hi > extent)
            hi = extent;
        if (lo < hi) {
            if (by_columns)
                gemm_block(transA, transB, M, hi - lo, K, alpha, A, lda,
                           transB ? B + (size_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
            else
                gemm_block(transA, transB, hi - lo, N, K, alpha, transA ? A + lo : A + (size_t)lo * lda,
                           lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
        }
    }
}
