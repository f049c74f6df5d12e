// BLIS set-up and the GEMM wrapper.  The kernel set can be chosen only once
// per process, so the environment-variable cases run in forked children,
// before this process touches BLIS.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "blas.h"
#include "cpu.h"
#include "util.h"

// Runs blas_init in a child with `name`=`value` set; returns its exit
// status and what it printed (its description line, or its error).
static int child_blas_init(const char *name, const char *value, char *out, size_t size)
{
    int fd[2];
    if (pipe(fd) != 0)
        die("test", "pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("test", "fork failed");
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        setenv(name, value, 1);
        blas_init(0);
        printf("%s\n", blas_description());
        fflush(stdout);
        _exit(0);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t got;
    while (len + 1 < size && (got = read(fd[0], out + len, size - 1 - len)) > 0)
        len += (size_t)got;
    out[len] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST(arch_override_by_name)
{
    char out[512];
    EXPECT(child_blas_init("MEDSSL_BLIS_ARCH", "generic", out, sizeof out) == 0);
    EXPECT_MSG(strstr(out, "kernels generic (MEDSSL_BLIS_ARCH=generic)"), "got: %s", out);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        EXPECT(child_blas_init("MEDSSL_BLIS_ARCH", "haswell", out, sizeof out) == 0);
        EXPECT_MSG(strstr(out, "kernels haswell"), "got: %s", out);
    }
}

TEST(arch_unknown_name_is_refused)
{
    char out[512];
    // KNC is an arch_t id Debian's BLIS has no kernels for.
    const char *bad[] = {"knc", "nonsense", "SKX"};
    for (int i = 0; i < 3; i++) {
        EXPECT(child_blas_init("MEDSSL_BLIS_ARCH", bad[i], out, sizeof out) == 1);
        EXPECT_MSG(strstr(out, "available: ") && strstr(out, "generic"), "got: %s", out);
    }
}

TEST(arch_default_and_auto)
{
    char out[512];
    EXPECT(child_blas_init("MEDSSL_BLIS_ARCH", "default", out, sizeof out) == 0);
    EXPECT_MSG(strstr(out, "(BLIS default)"), "got: %s", out);
    EXPECT(child_blas_init("MEDSSL_BLIS_ARCH", "auto", out, sizeof out) == 0);
    EXPECT_MSG(strstr(out, "(auto: "), "got: %s", out);
}

TEST(threads_from_environment)
{
    char out[512];
    EXPECT(child_blas_init("MEDSSL_THREADS", "3", out, sizeof out) == 0);
    EXPECT_MSG(strstr(out, ", 3 threads"), "got: %s", out);
    EXPECT(child_blas_init("MEDSSL_THREADS", "two", out, sizeof out) == 1);
}

// On an AVX-512 machine the automatic choice must be skx: that is the
// whole point (BLIS itself picks haswell or generic there); but zen3 on
// Zen 4, whose AVX-512 is two 256-bit halves (cpu.h).
TEST(auto_choice_fits_cpu)
{
    const char *name = blas_arch_name();
    const char *avail = blas_available_archs();
    const char *asked = getenv("MEDSSL_BLIS_ARCH");
    bool automatic = !asked || !*asked || strcmp(asked, "auto") == 0;
    EXPECT_MSG(strstr(avail, name), "%s not among %s", name, avail);
    if (automatic && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        strstr(avail, "skx") && strstr(avail, "zen3")) {
        const char *want = cpu_avx512_halved() ? "zen3" : "skx";
        EXPECT_MSG(strcmp(name, want) == 0, "chose %s on an AVX-512 CPU (want %s)", name, want);
    }
    EXPECT(strncmp(blas_description(), "BLIS ", 5) == 0);
}

// Row-major GEMM against a double reference, every transposition, leading
// dimensions larger than the rows (a wrong stride shows), alpha and beta.
TEST(gemm_transpositions)
{
    const int M = 37, N = 29, K = 41, pad = 3;
    uint64_t seed = 1;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
        int lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
        float *A = xmalloc((size_t)a_rows * lda * 4), *B = xmalloc((size_t)b_rows * ldb * 4);
        float *C = xmalloc((size_t)M * ldc * 4);
        float *all[3] = {A, B, C};
        size_t len[3] = {(size_t)a_rows * lda, (size_t)b_rows * ldb, (size_t)M * ldc};
        for (int m = 0; m < 3; m++)
            for (size_t i = 0; i < len[m]; i++) {
                seed = seed * 6364136223846793005u + 1442695040888963407u;
                all[m][i] = (float)((double)(seed >> 40) / (1 << 24) - 0.5);
            }
        float *C0 = xmalloc(len[2] * 4);
        memcpy(C0, C, len[2] * 4);
        gemm_f32(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, -0.5f, C, ldc);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                if (j >= N) {  // padding columns are never written
                    EXPECT(C[i * ldc + j] == C0[i * ldc + j]);
                    continue;
                }
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                         (tb ? B[j * ldb + k] : B[k * ldb + j]);
                double want = 0.75 * s - 0.5 * C0[i * ldc + j];
                EXPECT_MSG(fabs(C[i * ldc + j] - want) < 1e-5,
                           "trans %d%d C[%d][%d] = %g, expected %g", ta, tb, i, j,
                           C[i * ldc + j], want);
            }
        free(A), free(B), free(C), free(C0);
    }
}

// gemm_f32 splits C across threads by columns (N >= M) or rows: with 1, 2
// and 3 threads, every transposition, shapes from ResNets' convolutions and
// small ones around BLIS's small-matrix thresholds, C must have the same
// bytes, and a split product must match a double reference.
// gemm_f32 on 1, 2 and 3 threads gives the same bytes, and the right values,
// with the kernels this process has.  {256, 512, 512} on 3 threads and
// {512, 392, 2304} on 2 split into blocks under the AVX2 kernels' small-matrix
// threshold.
static void check_same_bytes(void)
{
    static const int shapes[][3] = {{64, 300, 147}, {300, 64, 576}, {256, 1568, 64}, {512, 49, 1152},
                                    {130, 190, 150}, {10, 700, 33}, {700, 10, 33}, {97, 193, 201},
                                    {256, 512, 512}, {512, 392, 2304}};
    uint64_t seed = 7;
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            int M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
            size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
            float *A = xmalloc(na * 4), *B = xmalloc(nb * 4), *C0 = xmalloc(nc * 4), *C[3];
            for (size_t i = 0; i < na + nb + nc; i++) {
                seed = seed * 6364136223846793005u + 1442695040888963407u;
                float v = (float)((double)(seed >> 40) / (1 << 24) - 0.5);
                if (i < na)
                    A[i] = v;
                else if (i < na + nb)
                    B[i - na] = v;
                else
                    C0[i - na - nb] = v;
            }
            for (int threads = 1; threads <= 3; threads++) {
                blas_set_threads(threads);
                C[threads - 1] = xmalloc(nc * 4);
                memcpy(C[threads - 1], C0, nc * 4);
                gemm_f32(ta, tb, M, N, K, 1.25f, A, ta ? M : K, B, tb ? K : N, 0.5f, C[threads - 1], N);
            }
            EXPECT_MSG(memcmp(C[0], C[1], nc * 4) == 0 && memcmp(C[0], C[2], nc * 4) == 0,
                       "%dx%dx%d trans %d%d: the bytes depend on the thread count", M, N, K, ta, tb);
            for (int probe = 0; probe < 64; probe++) {
                int i = (int)((size_t)probe * 7919 % (size_t)M), j = (int)((size_t)probe * 104729 % (size_t)N);
                double sum = 0;
                for (int k = 0; k < K; k++)
                    sum += (double)(ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k]) *
                           (tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j]);
                double want = 1.25 * sum + 0.5 * C0[(size_t)i * N + j];
                EXPECT_MSG(fabs(C[1][(size_t)i * N + j] - want) < 1e-4, "%dx%dx%d trans %d%d C[%d][%d] = %g, expected %g",
                           M, N, K, ta, tb, i, j, C[1][(size_t)i * N + j], want);
            }
            free(A), free(B), free(C0), free(C[0]), free(C[1]), free(C[2]);
        }
    blas_set_threads(1);
}

TEST(gemm_same_bytes_whatever_the_threads) { check_same_bytes(); }

// The same with the AVX2 kernel sets (haswell, zen3), whose small-matrix
// path sums in another order.  The kernels are chosen once per process, and
// this one has chosen already: each set runs in a fresh copy of this program
// (`test_blas --same-bytes`, see main).
TEST(gemm_same_bytes_on_avx2_kernels)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("skip - gemm_same_bytes_on_avx2_kernels: no AVX2 and FMA\n");
        return;
    }
    static const char *const sets[] = {"haswell", "zen3"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("test", "fork failed");
        if (pid == 0) {
            setenv("MEDSSL_BLIS_ARCH", sets[i], 1);
            execl("/proc/self/exe", "test_blas", "--same-bytes", (char *)NULL);
            _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "%s kernels: the bytes depend on the thread count (or the child failed)", sets[i]);
    }
}

int main(int argc, char **argv)
{
    util_init(argv[0]);
    if (argc == 2 && strcmp(argv[1], "--same-bytes") == 0) {
        check_same_bytes();
        return check_current_failures ? 1 : 0;
    }
    RUN(arch_override_by_name);
    RUN(arch_unknown_name_is_refused);
    RUN(arch_default_and_auto);
    RUN(threads_from_environment);
    RUN(auto_choice_fits_cpu);
    RUN(gemm_same_bytes_on_avx2_kernels);
    RUN(gemm_transpositions);
    RUN(gemm_same_bytes_whatever_the_threads);
    return CHECK_DONE();
}
