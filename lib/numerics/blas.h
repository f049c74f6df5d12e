// blas: BLIS set-up (kernel choice, threads) and the GEMM wrapper every layer
// uses.
//
// Debian 12's BLIS 0.9.0 picks its kernels from a CPU table that predates
// many current CPUs: it runs 'haswell' kernels on AVX-512 Intel parts and
// falls back to 'generic' on AMD family 0x1A, at a quarter (or less) of the
// speed of the 'skx' kernels the same library contains.  blas_init() picks
// the kernel set from the CPU's features instead, among the sets this BLIS
// was built with, before BLIS initialises itself.
//
// Environment:
//   MEDSSL_BLIS_ARCH  auto (the default): choose from CPU features;
//                     default: leave the choice to BLIS;
//                     a kernel set name (skx, haswell, zen3, ..., generic).
//   MEDSSL_THREADS    thread count when the caller passes threads <= 0;
//                     otherwise every core this process may use.
//
// The thread count applies to the library's OpenMP loops, GEMMs included:
// gemm_f32 splits C into blocks across OpenMP threads, each block a call to
// single-threaded BLIS (BLIS's own threads wait at a spinning barrier that
// ignores OMP_WAIT_POLICY: 7x slower beside one busy process, against 2x
// this way).  Results never depend on it: a block of C gets the same
// micro-kernel calls over K as the whole, and the layers reduce in a fixed
// order.
#ifndef MEDSSL_BLAS_H
#define MEDSSL_BLAS_H

#include <stdbool.h>

// Chooses the kernel set (once per process: BLIS reads it at its own
// initialisation) and sets the thread count.  threads <= 0 means the default
// (MEDSSL_THREADS, else all cores).  Later calls only change the thread count
// (when threads > 0).  Dies with the list of available names when
// MEDSSL_BLIS_ARCH names a set this BLIS lacks or this CPU cannot run.
void blas_init(int threads);

// Sets the number of threads of the OpenMP loops and GEMMs (n >= 1).
void blas_set_threads(int n);
int blas_threads(void);

// Name of the kernel set BLIS runs ("skx", "haswell", ...).
const char *blas_arch_name(void);

// One line for --version, e.g. "BLIS 0.9.0, kernels skx (auto: avx512), 2 threads".
const char *blas_description(void);

// Names of the kernel sets this BLIS has, space-separated ("skx knl haswell ...").
const char *blas_available_archs(void);

// Row-major C = alpha * op(A) op(B) + beta * C, with op(A) M x K and op(B)
// K x N.  A is stored M x K (K x M when transA), row stride lda; likewise
// B is K x N (N x K when transB), row stride ldb; C is M x N, row stride
// ldc.  Initialises BLIS with the defaults if blas_init was not called.
void gemm_f32(bool transA, bool transB, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc);

#endif
