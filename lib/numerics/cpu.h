// cpu: what the CPU is, beyond the feature flags __builtin_cpu_supports
// reads: the facts the kernel choices of blas.c and convk.c depend on.
#ifndef MEDSSL_CPU_H
#define MEDSSL_CPU_H

#include <stdbool.h>

// True on AMD's family 19h (Zen 3 and Zen 4): Zen 4 runs AVX-512 as two
// 256-bit halves, and there the AVX2 kernels measured faster than the
// AVX-512 ones (BLIS's zen3 against skx, 2048^3 SGEMM on 2 threads: 199-211
// against 193 GFLOP/s; our convolution kernels: steps 4-10% faster;
// 2026-12-04, EPYC family 25 model 17).  Zen 5 (family 1Ah), with full
// 512-bit units, is not included (unmeasured).
bool cpu_avx512_halved(void);

#endif
