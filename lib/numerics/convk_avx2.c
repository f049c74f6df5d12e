// convk_avx2: the micro-kernels for AVX2 with FMA (8 floats per vector).
// A tile is 4 output channels by 24 positions: 12 accumulators, 3 loads
// and 4 broadcasts for 12 FMAs per tap, within the 16 registers.
// A gather tile is 6 rows by 16 channels (12 accumulators, 2 loads, 6
// broadcasts), the shape of BLIS's haswell kernel.
#ifdef __x86_64__
#include <immintrin.h>

// The kernels alone are built for the level (clang has no #pragma GCC
// target); the rest of the program runs on any x86-64.
#define TARGET __attribute__((target("avx2,fma")))
#define VEC __m256
#define VL 8
#define LOAD(p) _mm256_loadu_ps(p)
#define STORE(p, v) _mm256_storeu_ps((p), (v))
#define BCAST(p) _mm256_broadcast_ss(p)
#define FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define ZERO() _mm256_setzero_ps()
#define MR 4
#define NV 3
#define WR 4
#define GMR 6
#define GNV 2
#define KSET convk_avx2
#define KSET_NAME "avx2"
#include "convk_impl.h"
#else
#include "convk.h"
const convk convk_avx2 = {.name = "avx2"};   // no tile: never runs off x86-64
#endif
